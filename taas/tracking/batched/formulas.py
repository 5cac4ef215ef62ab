"""The track math, written once: helix, plane intersection, transport Jacobian, material,
gain-matrix update and RTS smoother step.

This file is never imported directly. ``taas.tracking.batched.flavours`` executes it once per
*flavour*, each time with a different ``ops`` module (``numba_ops``, ``torch_ops``) supplying
the elementary operations and the decorator every function carries:

* numba flavour: ``ops.kernel`` is ``numba.njit``; an argument is one track's scalar or small
  array (``cov`` is (6, 6)). The CPU chain's row loops (``taas.tracking.propagation``,
  ``kalman``, ``material``, ``helix``, ``parameters``) call these functions per row.
* torch flavour: ``ops.kernel`` is the identity; an argument carries every track at once with
  the track axis *last* (``cov`` is (6, 6, N), ``cov[i, j]`` a vector over tracks), so the same
  statements run once for the whole batch, on the CPU device or on CUDA.

The rules that make one text valid in both: no branch on data (``ops.select`` evaluates both
sides, so denominators are made safe before dividing), logical operators ``&``, ``|`` and
``ops.logical_not`` only, entries addressed as ``a[i, j]`` and written in place into buffers the
caller allocates, and dense linear algebra through ``ops`` primitives (``matmul_into``,
``solve_into``, ...), which are row loops in numba and batched ``einsum`` / ``linalg`` calls in
torch. Those primitives are generic linear algebra, the only code that exists once per flavour,
and ``tests/tracking/test_batched_formulas.py`` checks them against each other.
"""

from __future__ import annotations

import math

from taas.tracking.batched.constants import (
    BETHE_K,
    C_MM_PER_NS,
    ELECTRON_MASS,
    FREE_QOP,
    FREE_TIME,
    HIGHLAND_GEV,
    LOC0,
    LOC1,
    PHI,
    PLANE_MAX_ITER,
    PLANE_TOL,
    PLASMA_GEV,
    QOP,
    SERIES_LIMIT,
    THETA,
    TIME,
)
from taas.tracking.batched.flavours import ops_being_loaded

ops = ops_being_loaded()

NAN = math.nan
INF = math.inf
TWO_PI = 2.0 * math.pi


# --- helix -----------------------------------------------------------------------------------
@ops.kernel
def wrap_phi(phi):
    """Angle mapped to [-pi, pi)."""
    return (phi + math.pi) % TWO_PI - math.pi


@ops.kernel
def sinc_terms(a):
    """S = sin(a)/a and C = (1 - cos a)/a, stable through a = 0 (sinc forms)."""
    return ops.sinc(a / math.pi), ops.sin(a / 2) * ops.sinc(a / 2 / math.pi)


@ops.kernel
def sinc_derivatives(a):
    """d/da of sin(a)/a and of (1 - cos a)/a, by their series below |a| = SERIES_LIMIT."""
    small = ops.abs(a) < SERIES_LIMIT
    safe = ops.select(small, 1.0, a)
    a2 = a * a
    d_s = ops.select(small, -a / 3 + a * a2 / 30,
                     (safe * ops.cos(safe) - ops.sin(safe)) / (safe * safe))
    d_c = ops.select(small, 0.5 - a2 / 8 + a2 * a2 / 144,
                     (safe * ops.sin(safe) - (1 - ops.cos(safe))) / (safe * safe))
    return d_s, d_c


@ops.kernel
def point_on_helix(x, y, z, tx, ty, tz, h, s):
    """Position and transverse direction after path ``s`` from (x, y, z) along the unit
    direction (tx, ty, tz) turning at ``h`` rad/mm (``taas.tracking.helix``'s sinc form)."""
    a = h * s
    sa, ca = sinc_terms(a)
    cos_a, sin_a = ops.cos(a), ops.sin(a)
    return (x + s * (sa * tx - ca * ty), y + s * (ca * tx + sa * ty), z + s * tz,
            cos_a * tx - sin_a * ty, sin_a * tx + cos_a * ty)


@ops.kernel
def plane_path(x, y, z, tx, ty, tz, h, cx, cy, cz, nx, ny, nz, tol, max_iter):
    """Path (s, ok) from (x, y, z) with direction T to the plane through c with unit normal n.

    Newton on f(s) = n . (x(s) - c), f' = n . T(s), from the straight-line intersection (the
    crossing nearest along the tangent; later crossings of a looper are never returned). Not
    ok where the track runs parallel to the plane or Newton did not converge (relative step
    ``tol`` within ``max_iter`` iterations)."""
    dist = nx * (cx - x) + ny * (cy - y) + nz * (cz - z)
    cos_inc = nx * tx + ny * ty + nz * tz
    usable = ops.abs(cos_inc) > 1e-12
    s = ops.select(usable, dist / ops.select(usable, cos_inc, 1.0), NAN)
    ok = ops.isfinite(s)
    s = ops.select(ok, s, 0.0)
    converged = ops.logical_not(ok)
    for _ in range(max_iter):
        if ops.all_true(converged):
            break
        px, py, pz, dx, dy = point_on_helix(x, y, z, tx, ty, tz, h, s)
        f = nx * (px - cx) + ny * (py - cy) + nz * (pz - cz)
        df = nx * dx + ny * dy + nz * tz
        good = ops.isfinite(f) & ops.isfinite(df) & (ops.abs(df) > 1e-300)
        step = ops.select(good & ops.logical_not(converged), f / ops.select(good, df, 1.0), 0.0)
        s = s - step
        ok = ok & (good | converged)
        converged = (converged | ops.logical_not(good)
                     | (ops.abs(step) <= tol * ops.max_scalar(ops.abs(s), 1.0)))
    return s, ok & converged & ops.isfinite(s)


@ops.kernel
def cylinder_path(x0, y0, tx, ty, h, radius, s_min):
    """Smallest path s > s_min where the helix reaches transverse radius ``radius`` (inf: none).

    The transverse projection is a circle of centre c = (x0 - ty/h, y0 + tx/h); its crossings
    with the circle r = radius follow from circle-circle intersection, and the path to each is
    the turning angle from the start, taken in the direction of motion, over the rate h. Nearly
    straight tracks (|h| (radius + r0) < 1e-9) intersect as a line."""
    st2 = tx * tx + ty * ty
    moving = st2 >= 1e-24
    st2 = ops.select(moving, st2, 1.0)
    straight = ops.abs(h) * (radius + ops.hypot(x0, y0)) < 1e-9
    # straight line: s^2 + 2 b s + c = 0
    b = (x0 * tx + y0 * ty) / st2
    c = (x0 * x0 + y0 * y0 - radius * radius) / st2
    disc = b * b - c
    root = ops.sqrt(ops.max_scalar(disc, 0.0))
    line = INF
    for s in (-b - root, -b + root):
        line = ops.select((s > s_min) & (s < line), s, line)
    line = ops.select(disc < 0, INF, line)
    # circle
    h = ops.select(straight, 1.0, h)
    cx, cy = x0 - ty / h, y0 + tx / h
    d = ops.hypot(cx, cy)
    centred = d < 1e-12
    d = ops.select(centred, 1.0, d)
    rho = ops.sqrt(st2) / ops.abs(h)
    a_ = (radius * radius - rho * rho + d * d) / (2.0 * d)
    hh = radius * radius - a_ * a_
    root = ops.sqrt(ops.max_scalar(hh, 0.0))
    ux, uy = cx / d, cy / d
    w0x, w0y = x0 - cx, y0 - cy
    circle = INF
    for sign in (-1.0, 1.0):
        px = a_ * ux - sign * root * uy - cx
        py = a_ * uy + sign * root * ux - cy
        ang = ops.atan2(w0x * py - w0y * px, w0x * px + w0y * py)
        ang = ops.select(ang * h < 0, ang + ops.select(h > 0, TWO_PI, -TWO_PI), ang)
        s = ang / h
        circle = ops.select((s > s_min) & (s < circle), s, circle)
    circle = ops.select(centred | (hh < 0), INF, circle)
    return ops.select(moving, ops.select(straight, line, circle), INF)


@ops.kernel
def free_state_at(free, s, h_per_qop, mass, out):
    """Free vector (8,) after path ``s`` (mm, may be negative) along the helix, into ``out``."""
    qop = free[FREE_QOP]
    x, y, z, tx, ty = point_on_helix(free[0], free[1], free[2], free[4], free[5], free[6],
                                     h_per_qop * qop, s)
    out[0], out[1], out[2] = x, y, z
    out[FREE_TIME] = free[FREE_TIME] + s * ops.sqrt(1.0 + (mass * qop) ** 2) / C_MM_PER_NS
    out[4], out[5], out[6] = tx, ty, free[6]
    out[FREE_QOP] = qop


@ops.kernel
def transverse_radius_at(x, y, z, tx, ty, tz, h, s):
    """Distance from the beam line after path ``s`` along the helix."""
    px, py, _pz, _dx, _dy = point_on_helix(x, y, z, tx, ty, tz, h, s)
    return ops.hypot(px, py)


@ops.kernel
def disc_path(z, tz, s_end, disc_z):
    """(s, inside): path to the plane z = disc_z, and whether it lies within the segment's
    path range (0, s_end) (or (s_end, 0) backwards). Whether the point is on the disc (its
    radius) is the caller's second, dearer test (``transverse_radius_at``)."""
    moving = tz != 0.0
    s = ops.select(moving, (disc_z - z) / ops.select(moving, tz, 1.0), NAN)
    inside = (ops.isfinite(s) & (ops.min_scalar(s_end, 0.0) < s)
              & (s < ops.max_scalar(s_end, 0.0)))
    return ops.select(inside, s, 0.0), inside


@ops.kernel
def radius_between(start_r, end_r, radius):
    """Whether a segment from transverse radius ``start_r`` to ``end_r`` crosses ``radius``
    (the cheap test before ``cylinder_segment_path``)."""
    return (ops.minimum(start_r, end_r) < radius) & (radius < ops.maximum(start_r, end_r))


@ops.kernel
def cylinder_segment_path(x, y, tx, ty, h, s_end, radius):
    """(s, found): path to the first crossing of r = ``radius`` by the segment over (0, s_end)
    (negative: backwards, as a forward path along the reversed helix: direction and turning
    rate negated); not found when it lies beyond ``s_end``. Cylinders are assumed crossed at
    most once per segment (true for tracks not turning back in r)."""
    sign = ops.select(s_end >= 0.0, 1.0, -1.0)
    s = sign * cylinder_path(x, y, sign * tx, sign * ty, sign * h, radius, 0.0)
    found = ops.isfinite(s) & (ops.abs(s) <= ops.abs(s_end))
    return ops.select(found, s, 0.0), found


# --- navigation (taas.tracking.navigation) ---------------------------------------------------
@ops.kernel
def barrel_crossing(x0, y0, z0, tx, ty, tz, h, s_min, radius, z_lo, z_hi, half, margin):
    """Path beyond ``s_min`` to a barrel layer's reference cylinder ``radius``; inf where there
    is none or its z lies outside the layer's modules [z_lo, z_hi], widened by ``margin`` and
    by the z the track covers while crossing the layer's envelope (half-thickness ``half``)."""
    s = cylinder_path(x0, y0, tx, ty, h, radius, s_min)
    z = z0 + s * tz
    slack = margin + half * ops.abs(tz) / ops.max_scalar(ops.sqrt(tx * tx + ty * ty), 1e-6)
    return ops.select((z >= z_lo - slack) & (z <= z_hi + slack), s, INF)


@ops.kernel
def endcap_crossing(x0, y0, z0, tx, ty, tz, h, s_min, disc_z, r_lo, r_hi, half, margin):
    """Path beyond ``s_min`` to an endcap layer's reference disc at ``disc_z``; inf where the
    track never gets there or crosses outside the modules' radii [r_lo, r_hi] (widened by
    ``margin`` and by the radius covered while crossing the envelope ``half``)."""
    moving = ops.abs(tz) >= 1e-12
    abs_tz = ops.select(moving, ops.abs(tz), 1.0)
    s = (disc_z - z0) / ops.select(moving, tz, 1.0)
    x, y, _z, _tx, _ty = point_on_helix(x0, y0, z0, tx, ty, tz, h, s)
    r = ops.hypot(x, y)
    slack = margin + half * ops.sqrt(tx * tx + ty * ty) / abs_tz
    return ops.select(moving & (s > s_min) & (r >= r_lo - slack) & (r <= r_hi + slack), s, INF)


@ops.kernel
def world_path(x0, y0, z0, tx, ty, tz, h, world_r, world_z, s_max):
    """Path after which a track has left the cylinder (``world_r``, +-``world_z``) enclosing
    every module, reached ``s_max``, or turned half a circle (a looper): nothing beyond it is
    navigated to."""
    s = ops.minimum(cylinder_path(x0, y0, tx, ty, h, world_r, 0.0), s_max)
    moving = ops.abs(tz) > 1e-12
    end = (ops.select(tz > 0, world_z, -world_z) - z0) / ops.select(moving, tz, 1.0)
    s = ops.select(moving, ops.minimum(s, end), s)
    turning = ops.abs(h) > 0
    return ops.select(turning, ops.minimum(s, math.pi / ops.select(turning, ops.abs(h), 1.0)), s)


@ops.kernel
def module_window(x, y, z, tx, ty, tz, endcap, half, tolerance, n_phi, n_2, lo2, hi2):
    """Grid bins (phi bins i_lo..i_hi, wrapping; second-coordinate bins j_lo..j_hi, clipped to
    the grid) around a layer's reference crossing at (x, y, z) with direction T: wide enough
    to hold the crossing with every module plane within the layer's envelope ``half``, plus
    ``tolerance`` (mm). Floats holding whole numbers."""
    r = ops.max_scalar(ops.hypot(x, y), 1e-6)
    st = ops.max_scalar(ops.sqrt(tx * tx + ty * ty), 1e-6)
    # barrel: the transverse direction's angle to the radial one; endcap: the incidence on z
    cos_a = ops.max_scalar(ops.abs(x * tx + y * ty) / (r * st), 0.2)
    d_trans = ops.select(endcap, half * st / ops.max_scalar(ops.abs(tz), 1e-6), half / cos_a)
    d2 = ops.select(endcap, d_trans, half * ops.abs(tz) / st) + tolerance
    c2 = ops.select(endcap, r, z)
    dphi = ops.min_scalar((d_trans + tolerance) / r, math.pi)
    phi = ops.atan2(y, x)
    bw_phi = TWO_PI / n_phi
    bw_2 = (hi2 - lo2) / n_2
    i_lo = ops.floor((phi - dphi + math.pi) / bw_phi)
    i_hi = ops.minimum(ops.floor((phi + dphi + math.pi) / bw_phi), i_lo + n_phi - 1)
    j_lo = ops.max_scalar(ops.floor((c2 - d2 - lo2) / bw_2), 0.0)
    j_hi = ops.minimum(ops.floor((c2 + d2 - lo2) / bw_2), n_2 - 1.0)
    return i_lo, i_hi, j_lo, j_hi


@ops.kernel
def line_crossing(x, y, z, tx, ty, tz, qop, center, rot, h_per_qop):
    """Where the straight line along a state (position, direction T, q/p) meets a module's
    plane (``center`` (3,), ``rot`` (3, 3), local w along the third column): the local (u, v)
    there, how far the helix can stray from the line by then (at most |h| d^2 / 2 across the
    track at path d, taken twice, plus 0.05 mm) magnified by the incidence, and whether the
    line meets the plane steeply enough (|cos incidence| > 0.1) to judge at all. ``h_per_qop``
    bounds the turning rate per unit q/p (the field's largest value)."""
    along = rot[0, 2] * tx + rot[1, 2] * ty + rot[2, 2] * tz
    steep = ops.abs(along) > 0.1
    scale = ops.select(steep, along, 1.0)
    ox, oy, oz = center[0] - x, center[1] - y, center[2] - z
    d = (rot[0, 2] * ox + rot[1, 2] * oy + rot[2, 2] * oz) / scale
    hx, hy, hz = d * tx - ox, d * ty - oy, d * tz - oz
    u = rot[0, 0] * hx + rot[1, 0] * hy + rot[2, 0] * hz
    v = rot[0, 1] * hx + rot[1, 1] * hy + rot[2, 1] * hz
    margin = (ops.abs(h_per_qop * qop) * d * d + 0.05) / ops.abs(scale)
    return u, v, margin, steep


@ops.kernel
def transport_matrix(jac, tangent, tx, ty, tz, qop, s, h_per_qop, mass):
    """Fill ``jac`` (8, 8) = d(free at s)/d(free at 0) and ``tangent`` (8,) = d(free)/ds for a
    unit direction (tx, ty, tz): x = x0 + s M(a) T0 and T = Rz(a) T0 with a = h s, h = h_per_qop
    q/p; time runs at sqrt(1 + m^2 (q/p)^2) / c per mm."""
    h = h_per_qop * qop
    a = h * s
    sa, ca = sinc_terms(a)
    dsa, dca = sinc_derivatives(a)
    cos_a, sin_a = ops.cos(a), ops.sin(a)
    dadq = h_per_qop * s  # d a / d(q/p)
    tx_end = cos_a * tx - sin_a * ty
    ty_end = sin_a * tx + cos_a * ty
    root = ops.sqrt(1.0 + (mass * qop) ** 2)
    jac[:, :] = 0.0
    for k in (0, 1, 2, FREE_TIME, 6, FREE_QOP):
        jac[k, k] = 1.0
    # position w.r.t. the initial direction and, through a, q/p
    jac[0, 4], jac[0, 5] = s * sa, -s * ca
    jac[1, 4], jac[1, 5] = s * ca, s * sa
    jac[2, 6] = s
    jac[0, FREE_QOP] = s * (dsa * tx - dca * ty) * dadq
    jac[1, FREE_QOP] = s * (dca * tx + dsa * ty) * dadq
    # direction: T = Rz(a) T0
    jac[4, 4], jac[4, 5] = cos_a, -sin_a
    jac[5, 4], jac[5, 5] = sin_a, cos_a
    jac[4, FREE_QOP] = -ty_end * dadq
    jac[5, FREE_QOP] = tx_end * dadq
    # time
    jac[FREE_TIME, FREE_QOP] = s * mass * mass * qop / (C_MM_PER_NS * root)
    tangent[0], tangent[1], tangent[2] = tx_end, ty_end, tz
    tangent[FREE_TIME] = root / C_MM_PER_NS
    tangent[4], tangent[5] = -h * ty_end, h * tx_end
    tangent[6] = 0.0
    tangent[FREE_QOP] = 0.0


# --- bound <-> free ----------------------------------------------------------------------------
@ops.kernel
def bound_to_free_matrix(jac, rotation, phi, theta):
    """Fill ``jac`` (8, 6) with d(free)/d(bound) on the plane of ``rotation`` (3, 3)."""
    sp, cp, st, ct = ops.sin(phi), ops.cos(phi), ops.sin(theta), ops.cos(theta)
    jac[:, :] = 0.0
    for k in range(3):
        jac[k, LOC0] = rotation[k, 0]
        jac[k, LOC1] = rotation[k, 1]
    jac[FREE_TIME, TIME] = 1.0
    jac[4, PHI], jac[5, PHI] = -st * sp, st * cp
    jac[4, THETA], jac[5, THETA], jac[6, THETA] = ct * cp, ct * sp, -st
    jac[FREE_QOP, QOP] = 1.0


@ops.kernel
def free_to_bound_matrix(jac, rotation, phi, theta):
    """Fill ``jac`` (6, 8) with d(bound)/d(free) on the plane of ``rotation``, for a unit
    direction of angles (phi, theta)."""
    sp, cp, st, ct = ops.sin(phi), ops.cos(phi), ops.sin(theta), ops.cos(theta)
    jac[:, :] = 0.0
    for k in range(3):
        jac[LOC0, k] = rotation[k, 0]
        jac[LOC1, k] = rotation[k, 1]
    jac[PHI, 4], jac[PHI, 5] = -sp / st, cp / st
    jac[THETA, 4], jac[THETA, 5], jac[THETA, 6] = cp * ct, sp * ct, -st
    jac[QOP, FREE_QOP] = 1.0
    jac[TIME, FREE_TIME] = 1.0


@ops.kernel
def chain_jacobian(out, f2b, t_mat, b2f, tangent, nx, ny, nz, cos_inc, m1, proj):
    """out = f2b (1 - tangent n^T / cos_inc) t_mat b2f (ACTS' ``boundToBoundJacobian``): the
    middle factor moves a varied end point back onto the destination plane along the track."""
    ops.matmul_into(m1, t_mat, b2f, 8, 8, 6)
    safe_cos = ops.select(ops.abs(cos_inc) > 1e-12, cos_inc, 1.0)
    for c in range(6):
        proj[c] = (nx * m1[0, c] + ny * m1[1, c] + nz * m1[2, c]) / safe_cos
    ops.sub_outer_into(m1, tangent, proj, 8, 6)
    ops.matmul_into(out, f2b, m1, 6, 8, 6)


@ops.kernel
def propagate_state(params, src_center, src_rot, dst_center, dst_rot, h_per_qop, mass,
                    want_jac, out, jac, work8, tangent, b2f, f2b, m1, proj):
    """Bound parameters ``params`` on plane A (centre, rotation) to plane B, into ``out`` (6,);
    with ``want_jac`` the transport Jacobian into ``jac`` (6, 6). Returns (path, cos incidence
    at B, ok); where not ok (no intersection) ``out`` and ``jac`` are NaN. ``work8`` (8, 8),
    ``tangent`` (8,), ``b2f`` / ``m1`` (8, 6), ``f2b`` (6, 8), ``proj`` (6,) are scratch."""
    phi, theta, qop = params[PHI], params[THETA], params[QOP]
    x0 = src_center[0] + src_rot[0, 0] * params[LOC0] + src_rot[0, 1] * params[LOC1]
    y0 = src_center[1] + src_rot[1, 0] * params[LOC0] + src_rot[1, 1] * params[LOC1]
    z0 = src_center[2] + src_rot[2, 0] * params[LOC0] + src_rot[2, 1] * params[LOC1]
    sp, cp, st, ct = ops.sin(phi), ops.cos(phi), ops.sin(theta), ops.cos(theta)
    tx, ty, tz = cp * st, sp * st, ct
    h = h_per_qop * qop
    nx, ny, nz = dst_rot[0, 2], dst_rot[1, 2], dst_rot[2, 2]
    s, ok = plane_path(x0, y0, z0, tx, ty, tz, h, dst_center[0], dst_center[1], dst_center[2],
                       nx, ny, nz, PLANE_TOL, PLANE_MAX_ITER)
    s = ops.select(ok, s, 0.0)
    x, y, z, tx1, ty1 = point_on_helix(x0, y0, z0, tx, ty, tz, h, s)
    root = ops.sqrt(1.0 + (mass * qop) ** 2)
    dx, dy, dz = x - dst_center[0], y - dst_center[1], z - dst_center[2]
    phi1 = ops.atan2(ty1, tx1)
    theta1 = ops.atan2(ops.hypot(tx1, ty1), tz)
    out[LOC0] = ops.select(ok, dst_rot[0, 0] * dx + dst_rot[1, 0] * dy + dst_rot[2, 0] * dz, NAN)
    out[LOC1] = ops.select(ok, dst_rot[0, 1] * dx + dst_rot[1, 1] * dy + dst_rot[2, 1] * dz, NAN)
    out[PHI] = ops.select(ok, phi1, NAN)
    out[THETA] = ops.select(ok, theta1, NAN)
    out[QOP] = ops.select(ok, qop, NAN)
    out[TIME] = ops.select(ok, params[TIME] + s * root / C_MM_PER_NS, NAN)
    cos_inc = nx * tx1 + ny * ty1 + nz * tz
    if want_jac:
        transport_matrix(work8, tangent, tx, ty, tz, qop, s, h_per_qop, mass)
        bound_to_free_matrix(b2f, src_rot, phi, theta)
        free_to_bound_matrix(f2b, dst_rot, phi1, theta1)
        chain_jacobian(jac, f2b, work8, b2f, tangent, nx, ny, nz, cos_inc, m1, proj)
        ops.invalidate(jac, ok)
    return s, cos_inc, ok


# --- material --------------------------------------------------------------------------------
@ops.kernel
def highland_theta0(qop, x_over_x0, mass):
    """Projected r.m.s. scattering angle (rad) of a unit-charge particle crossing ``x_over_x0``
    radiation lengths (PDG RPP 2024 eq. 34.16, with beta); 0 where x is not > 0."""
    positive = x_over_x0 > 0
    xx0 = ops.select(positive, x_over_x0, 1.0)
    aq = ops.abs(qop)
    beta2 = 1.0 / (1.0 + (mass * aq) ** 2)  # beta^2 = p^2 / (p^2 + m^2)
    log_term = ops.max_scalar(1.0 + 0.038 * ops.log(xx0 / beta2), 0.0)
    return ops.select(positive, HIGHLAND_GEV * aq / ops.sqrt(beta2) * ops.sqrt(xx0) * log_term,
                      0.0)


@ops.kernel
def energy_loss(qop, path, molar_e_rho, excitation, mass):
    """Mean energy loss (GeV) and q/p straggling sigma along ``path`` mm: Bethe with the density
    effect (PDG eqs. 34.5-34.6, as ACTS ``computeEnergyLossBethe``) and the Landau FWHM 4 xi as
    a Gaussian sigma (ACTS ``computeEnergyLossLandauSigma``). Zero where the path is not > 0 or
    q/p not finite and non-zero."""
    aq = ops.abs(qop)
    valid = (path > 0) & (aq > 0) & ops.isfinite(aq)
    aq = ops.select(valid, aq, 1.0)
    bg = 1.0 / aq / mass
    gamma = ops.sqrt(1.0 + bg * bg)
    beta2 = bg * bg / (1.0 + bg * bg)
    xi = 0.5 * BETHE_K * molar_e_rho * path / beta2
    ratio = ELECTRON_MASS / mass
    wmax = 2 * ELECTRON_MASS * bg * bg / (1.0 + 2 * gamma * ratio + ratio * ratio)
    plasma = PLASMA_GEV * ops.sqrt(1000.0 * molar_e_rho)  # ne * 1000: mol/cm^3 = rho Z/A
    delta_half = ops.max_scalar(ops.log(plasma / excitation) + ops.log(bg) - 0.5, 0.0)
    running = ops.log(2 * ELECTRON_MASS * bg * bg * wmax / (excitation * excitation))
    mean = 2 * xi * (0.5 * running - beta2 - delta_half)
    good = valid & ops.isfinite(mean) & (mean > 0)
    sigma_e = 4 * xi / (2 * math.sqrt(2 * math.log(2)))
    return (ops.select(good, mean, 0.0),
            ops.select(good, sigma_e * aq * aq / ops.sqrt(beta2), 0.0))


@ops.kernel
def apply_energy_loss(qop, de, mass, sign):
    """q/p after losing (``sign`` = 1) or, backwards, regaining (-1) energy ``de`` (GeV); q/p
    unchanged where ``de`` is not > 0."""
    lost = de > 0
    p = 1.0 / ops.abs(ops.select(lost, qop, 1.0))
    energy = ops.sqrt(p * p + mass * mass) - sign * de
    p_new = ops.sqrt(ops.max_scalar(energy * energy - mass * mass, 1e-12))
    return ops.select(lost, ops.sign(qop) / p_new, qop)


@ops.kernel
def scattering_variances(qop, theta, x_over_x0, mass):
    """Variances added to (phi, theta) by a Highland kink: theta0^2 / sin^2(theta), theta0^2
    (a kink of angle a perpendicular to T in the transverse direction turns phi by a / sin)."""
    theta0 = highland_theta0(qop, x_over_x0, mass)
    st = ops.sin(theta)
    var = theta0 * theta0
    return var / (st * st), var


@ops.kernel
def slab_effects(qop, theta, cos_incidence, thickness, x0, molar_e_rho, excitation, mass):
    """(var phi, var theta, var q/p, mean energy loss) of a track crossing a slab of
    ``thickness`` mm at incidence cosine ``cos_incidence``: Highland scattering (the kink
    projected on theta and, / sin theta, on phi) and Bethe energy loss with its straggling."""
    path = thickness / ops.max_scalar(ops.abs(cos_incidence), 1e-6)
    var_phi, var_theta = scattering_variances(qop, theta, path / x0, mass)
    de, sigma_qop = energy_loss(qop, path, molar_e_rho, excitation, mass)
    return var_phi, var_theta, sigma_qop * sigma_qop, de


@ops.kernel
def tangent_frame_into(rot, nx, ny, nz):
    """A rotation (3, 3) with the unit normal n as third column (u = h x n / |h x n| with h the
    z axis, or x for normals near z; v = n x u)."""
    along_z = ops.abs(nz) >= 0.9
    hx = ops.select(along_z, 1.0, 0.0)
    hz = ops.select(along_z, 0.0, 1.0)
    ux, uy, uz = -hz * ny, hz * nx - hx * nz, hx * ny
    norm = ops.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / norm, uy / norm, uz / norm
    rot[0, 0], rot[1, 0], rot[2, 0] = ux, uy, uz
    rot[0, 1], rot[1, 1], rot[2, 1] = ny * uz - nz * uy, nz * ux - nx * uz, nx * uy - ny * ux
    rot[0, 2], rot[1, 2], rot[2, 2] = nx, ny, nz


@ops.kernel
def passive_noise(free_at, nx, ny, nz, slab, dst_center, dst_rot, h_per_qop, mass, noise,
                  rot, center, params, out, jac, work8, tangent, b2f, f2b, m1, proj, q, jq):
    """Noise (6, 6) on the destination plane, into ``noise``, and mean energy loss (returned) of
    one crossing of a passive slab: its scattering and straggling in the bound frame of the
    plane tangent to the surface at the crossing (free state ``free_at`` (8,), unit normal n),
    transported to the destination plane with the propagation Jacobian, J Q J^T. ``slab`` is
    (thickness, x0, molar_e_rho, excitation). Where that propagation fails the noise is zero
    (the energy loss still counts); non-finite Jacobian entries count as zero. The arguments
    after ``noise`` are scratch (``q``, ``jq`` (6, 6); the others as in ``propagate_state``)."""
    tangent_frame_into(rot, nx, ny, nz)
    center[0], center[1], center[2] = free_at[0], free_at[1], free_at[2]
    tx, ty, tz = free_at[4], free_at[5], free_at[6]
    theta = ops.atan2(ops.hypot(tx, ty), tz)
    params[LOC0] = 0.0
    params[LOC1] = 0.0
    params[PHI] = ops.atan2(ty, tx)
    params[THETA] = theta
    params[QOP] = free_at[FREE_QOP]
    params[TIME] = free_at[FREE_TIME]
    var_phi, var_theta, var_qop, de = slab_effects(
        free_at[FREE_QOP], theta, nx * tx + ny * ty + nz * tz, slab[0], slab[1], slab[2], slab[3],
        mass)
    _, _, ok = propagate_state(params, center, rot, dst_center, dst_rot, h_per_qop, mass, True,
                               out, jac, work8, tangent, b2f, f2b, m1, proj)
    ops.zero_nonfinite(jac, 6, 6)
    q[:, :] = 0.0
    q[PHI, PHI] = var_phi
    q[THETA, THETA] = var_theta
    q[QOP, QOP] = var_qop
    ops.matmul_into(jq, jac, q, 6, 6, 6)
    ops.matmul_nt_into(noise, jq, jac, 6, 6, 6)
    ops.zero_unless(noise, ok)
    return de


# --- Kalman filter ---------------------------------------------------------------------------
@ops.kernel
def predicted_chi2(params, cov, meas_u, meas_v, var_u, var_v):
    """Chi2 of a 2D measurement against a predicted state on its module, r^T S^-1 r with
    S = H C H^T + V: the compatibility test of the combinatorial Kalman filter."""
    r0 = meas_u - params[LOC0]
    r1 = meas_v - params[LOC1]
    s00 = cov[0, 0] + var_u
    s11 = cov[1, 1] + var_v
    s01 = cov[0, 1]
    return (r0 * r0 * s11 - 2 * r0 * r1 * s01 + r1 * r1 * s00) / (s00 * s11 - s01 * s01)


@ops.kernel
def gain_update(params, cov, meas_u, meas_v, var_u, var_v, gain, gain_v, work, out_params,
                out_cov):
    """Gain-matrix update with a 2D measurement (loc0, loc1) of variances (var_u, var_v).

    K = C H^T S^-1 with S = H C H^T + V (H picks loc0, loc1); covariance in Joseph form
    (I - K H) C (I - K H)^T + K V K^T, symmetrised (positive definite even for very loose
    priors). Writes the filtered state into ``out_params`` (6,) / ``out_cov`` (6, 6) and returns
    the chi2 increment r^T S^-1 r (the predicted one, equal to the filtered one). ``gain``,
    ``gain_v`` (6, 2) and ``work`` (6, 6) are scratch; ``out_*`` must not alias the inputs."""
    r0 = meas_u - params[LOC0]
    r1 = meas_v - params[LOC1]
    s00 = cov[0, 0] + var_u
    s01 = cov[0, 1]
    s10 = cov[1, 0]
    s11 = cov[1, 1] + var_v
    det = s00 * s11 - s01 * s10
    i00, i01, i10, i11 = s11 / det, -s01 / det, -s10 / det, s00 / det
    for i in range(6):
        gain[i, 0] = cov[i, 0] * i00 + cov[i, 1] * i10
        gain[i, 1] = cov[i, 0] * i01 + cov[i, 1] * i11
        out_params[i] = params[i] + (gain[i, 0] * r0 + gain[i, 1] * r1)
    out_params[PHI] = wrap_phi(out_params[PHI])
    ops.matmul_into(work, gain, cov, 6, 2, 6)  # K H C
    ops.lincomb_into(work, cov, 1.0, work, -1.0, 6, 6)  # (I - K H) C
    ops.matmul_nt_into(out_cov, work, gain, 6, 2, 6)  # ... H^T K^T
    ops.lincomb_into(out_cov, work, 1.0, out_cov, -1.0, 6, 6)  # (I - K H) C (I - K H)^T
    for i in range(6):
        gain_v[i, 0] = gain[i, 0] * var_u
        gain_v[i, 1] = gain[i, 1] * var_v
    ops.matmul_nt_into(work, gain_v, gain, 6, 2, 6)  # K V K^T
    ops.lincomb_into(out_cov, out_cov, 1.0, work, 1.0, 6, 6)
    ops.symmetrize(out_cov, 6)
    return r0 * (i00 * r0 + i01 * r1) + r1 * (i10 * r0 + i11 * r1)


@ops.kernel
def rts_step(filt, filt_cov, next_smooth, next_smooth_cov, next_pred, next_pred_cov, jac_next,
             out, out_cov, work, lu, gain, diff):
    """One Rauch-Tung-Striebel step: the smoothed state on module k from the filtered one there
    and module k+1's smoothed and predicted states (``jac_next`` transports k to k+1).

    The gain A = C_f F^T P^-1 comes from P A^T = F C_f (P symmetric), solved by LU
    (``ops.solve_into``); x_k = x_f + A (x_k+1 - p_k+1) and C_k = C_f + A (C_k+1 - P_k+1) A^T,
    symmetrised. Returns ok; where P is singular or not finite the outputs are NaN. ``out`` /
    ``out_cov`` may be the filtered arrays themselves (updated in place); ``work``, ``lu``,
    ``gain`` (6, 6) and ``diff`` (6,) are scratch."""
    ops.matmul_into(work, jac_next, filt_cov, 6, 6, 6)  # F C_f
    ops.copy_into(lu, next_pred_cov, 6, 6)
    ok = ops.solve_into(lu, work, 6, 6)  # work = P^-1 F C_f = A^T
    ops.transpose_into(gain, work, 6, 6)
    for i in range(6):
        diff[i] = next_smooth[i] - next_pred[i]
    diff[PHI] = wrap_phi(diff[PHI])
    for i in range(6):
        acc = gain[i, 0] * diff[0]
        for j in range(1, 6):
            acc = acc + gain[i, j] * diff[j]
        out[i] = filt[i] + acc
    out[PHI] = wrap_phi(out[PHI])
    ops.lincomb_into(lu, next_smooth_cov, 1.0, next_pred_cov, -1.0, 6, 6)  # C_k+1 - P_k+1
    ops.matmul_into(work, gain, lu, 6, 6, 6)
    ops.matmul_nt_into(lu, work, gain, 6, 6, 6)
    ops.lincomb_into(out_cov, filt_cov, 1.0, lu, 1.0, 6, 6)
    ops.symmetrize(out_cov, 6)
    ops.invalidate(out, ok)
    ops.invalidate(out_cov, ok)
    return ok
