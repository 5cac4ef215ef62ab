"""Numba kernels of the triplet seed finder: doublets, triplets and the seed filter.

The algorithm is ACTS' grid triplet seeding (``Core/src/Seeding2/DoubletSeedFinder.cpp``,
``TripletSeedFinder.cpp``, ``BroadTripletSeedFilter.cpp``) and traccc's port of it
(``core/include/traccc/seeding``), rewritten for numba. Space points arrive sorted by phi bin and,
within a bin, by z (see ``triplets.py``): the grid's z axis is continuous, so the search of
neighbouring z bins becomes a binary search for the z window a doublet can occupy.

The kernels are serial on purpose: numba's default threading layer aborts when two threads
launch parallel kernels at once, and the service runs stages from concurrent request threads;
throughput comes from events in parallel, not from numba threads inside one event. The entry
kernel releases the GIL and takes a range of middle space points instead, so that a caller
with idle cores may share one event's middles among Python threads (``triplets.find_seeds``,
``SeedingConfig.threads``): each middle's seeds depend on no other middle's.
"""

# Numba kernels take flat arrays and scalars (no objects) and keep their hot loops in one
# function so the compiler sees them whole: long argument lists and bodies are by design.
# ruff: noqa: PLR0915

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _z_window(r_m: float, z_m: float, r_lo: float, r_hi: float, c_min: float, c_max: float,
              cot_max: float) -> tuple[float, float]:
    """z range of a partner at r in [r_lo, r_hi] on a line through (r_m, z_m) and a point of
    the collision region; corners suffice because z is linear in r and in the origin z0.
    The |cot(theta)| <= cot_max cone narrows it further."""
    z_lo = np.inf
    z_hi = -np.inf
    for rr in (r_lo, r_hi):
        for z0 in (c_min, c_max):
            zz = z0 + (z_m - z0) * rr / r_m
            z_lo = min(z_lo, zz)
            z_hi = max(z_hi, zz)
    d_lo = abs(r_m - r_lo)
    d_hi = abs(r_m - r_hi)
    reach = cot_max * max(d_lo, d_hi)
    return max(z_lo, z_m - reach), min(z_hi, z_m + reach)


@njit(cache=True)
def _phi_window(r_m: float, r_o: float, impact_max: float, inv_min_diam: float) -> float:
    """Largest |phi(r_o) - phi(r_m)| of a helix no tighter than min_pt with |d0| <= impact_max
    (phi(r) = phi0 + asin(r / 2R) + asin(d0 / r)), plus 0.1 mm of rounding slack. This is the
    acceptance of the doublet cuts below, so no doublet they would keep lies outside it (the
    earlier 10% and 0.5 mm margins widened the scan by a third and changed no doublet on the
    presets' events)."""
    bend = abs(np.arcsin(min(1.0, r_o * inv_min_diam)) - np.arcsin(min(1.0, r_m * inv_min_diam)))
    shift = abs(np.arcsin(min(1.0, impact_max / r_o)) - np.arcsin(min(1.0, impact_max / r_m)))
    return bend + shift + 0.1 / min(r_o, r_m)


@njit(cache=True)
def _slope_window(cot_b: float, er_b: float, idr_b: float, er_t_max: float, idr_t_max: float,
                  cot_t_abs_max: float, var_r: float, var_z: float, ms2_min_pt: float) -> float:
    """Half width of the cot(theta) window of a bottom's tops: its error and the largest top
    error, plus the scattering of a min_pt track. 1 + cot^2 = 1/sin^2 converts the pT-based
    scattering angle to the change of cot(theta) (ACTS TripletSeedFinder,
    "scatteringInRegion2"). Every triplet's own allowance lies within it."""
    error2_bound = (er_t_max + er_b + 2.0 * (abs(cot_b) * cot_t_abs_max * var_r + var_z)
                    * idr_b * idr_t_max)
    return np.sqrt(error2_bound + ms2_min_pt * (1.0 + cot_b * cot_b))


@njit(cache=True)
def _first_at_least(s_cot: np.ndarray, cell_first: np.ndarray, nt: int, cot_lo: float,
                    cell_scale: float, v: float) -> int:
    """First k < nt with s_cot[k] >= v (nt if none): one lookup in the uniform cot(theta)
    index of the sorted tops (``cell_first``) and a short walk."""
    k = 0
    if v > cot_lo:
        k = cell_first[min(int((v - cot_lo) * cell_scale), nt)]
        while k < nt and s_cot[k] < v:
            k += 1
    return k


@njit(cache=True)
def _find_doublets(m: int, top: bool, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                   r: np.ndarray, bin_start: np.ndarray, n_phi: int, band_rlo: np.ndarray,
                   band_rhi: np.ndarray, dr_min: float, dr_max: float, c_min: float,
                   c_max: float, cot_max: float, var_r: float, var_z: float, ip_cut: bool,
                   impact_max: float, min_helix_diam2: float, shape: np.ndarray,
                   shape_tol: tuple[float, float], o_idx: np.ndarray,
                   o_cot: np.ndarray, o_u: np.ndarray, o_v: np.ndarray, o_er: np.ndarray,
                   o_idr: np.ndarray, scanned: np.ndarray) -> int:
    """Fill the o_* arrays with the doublets (middle m, partner) passing ACTS' doublet cuts.

    Cuts (DoubletSeedFinder): delta r range, |cot(theta)| <= cot_max, line's origin z within
    the collision region and, with ``ip_cut``, a circle through the pair and the beam line
    (within impact_max) no tighter than a min_pt helix and, when ``shape`` has rows (the table
    of ``taas.seeding.shapes``), clusters of both space points as long as the doublet's
    direction makes them (``shape_tol``: the excess and deficit allowed, in cells). Each
    doublet is stored in the middle space point's conformal frame: (x', y') rotated so that
    the middle lies on the x axis, then u = x'/d^2, v = y'/d^2, where circles through the
    middle become straight lines v = A u + B (conformal mapping).

    The grid is (r band, phi bin), z-sorted within a cell. Per r band the z window and the
    phi window are evaluated for the radii that band's space points occupy (``band_rlo``,
    ``band_rhi``: a barrel layer fills a few mm of its 20 mm band): a partner close in r to
    the middle can only be close in phi and z too, so the candidates scanned stay near the
    ones that pass rather than growing with the full +-max deflection (the density-driven
    cost).

    The middle's own cluster also narrows the z window: a cluster only so many cells long
    bounds the doublet's |dz| / (transverse chord) (``_shape_slope_bound``), and the chord to a
    partner of the band is at most the law-of-cosines distance across the phi window. This
    drops only candidates the shape cut would reject (the bound is exact, not tuned), so the
    doublets are those of the full window.

    ``scanned[0]`` counts the candidates examined, ``scanned[1]`` those the cluster shapes
    rejected.
    """
    r_m = r[m]
    z_m = z[m]
    if top:
        r_lo = r_m + dr_min
        r_hi = r_m + dr_max
    else:
        r_lo = r_m - dr_max
        r_hi = r_m - dr_min
    cos_m = x[m] / r_m
    sin_m = y[m] / r_m
    phi_m = np.arctan2(y[m], x[m])
    bin_w = 2.0 * np.pi / n_phi
    inv_min_diam = 1.0 / np.sqrt(min_helix_diam2)
    slope_max = _shape_slope_bound(shape, m, shape_tol[1]) if shape.shape[0] > 0 else np.inf
    n = 0
    for band in range(len(band_rlo)):
        ra = max(band_rlo[band], r_lo)
        rb = min(band_rhi[band], r_hi)
        if ra > rb:
            continue
        z_lo, z_hi = _z_window(r_m, z_m, ra, rb, c_min, c_max, cot_max)
        w = _phi_window(r_m, rb if top else ra, impact_max, inv_min_diam)
        if slope_max < np.inf:
            cos_w = np.cos(min(w, np.pi))
            chord2 = max(r_m * r_m + ra * ra - 2.0 * r_m * ra * cos_w,
                         r_m * r_m + rb * rb - 2.0 * r_m * rb * cos_w)
            reach = slope_max * np.sqrt(chord2) * (1.0 + 1e-9) + 1e-9
            z_lo = max(z_lo, z_m - reach)
            z_hi = min(z_hi, z_m + reach)
        if z_lo > z_hi:
            continue
        b0 = int(np.floor((phi_m - w + np.pi) / bin_w))
        b1 = int(np.floor((phi_m + w + np.pi) / bin_w))
        if b1 - b0 + 1 >= n_phi:
            b0 = 0
            b1 = n_phi - 1
        cell0 = band * n_phi
        n = _scan_bins(m, top, x, y, z, r, bin_start, cell0, n_phi, b0, b1, z_lo, z_hi, r_lo,
                       r_hi, r_m, z_m, cos_m, sin_m, c_min, c_max, cot_max, var_r, var_z,
                       ip_cut, impact_max, min_helix_diam2, shape, shape_tol, o_idx, o_cot,
                       o_u, o_v, o_er, o_idr, n, scanned)
    return n


@njit(cache=True)
def _scan_bins(m: int, top: bool, x: np.ndarray, y: np.ndarray, z: np.ndarray,
               r: np.ndarray, bin_start: np.ndarray, cell0: int, n_phi: int, b0: int, b1: int,
               z_lo: float, z_hi: float, r_lo: float, r_hi: float, r_m: float, z_m: float,
               cos_m: float, sin_m: float, c_min: float, c_max: float, cot_max: float,
               var_r: float, var_z: float, ip_cut: bool, impact_max: float,
               min_helix_diam2: float, shape: np.ndarray, shape_tol: tuple[float, float],
               o_idx: np.ndarray, o_cot: np.ndarray,
               o_u: np.ndarray, o_v: np.ndarray, o_er: np.ndarray, o_idr: np.ndarray, n: int,
               scanned: np.ndarray) -> int:
    """Doublet cuts on the z window of phi bins b0..b1 (wrapping) of one r band; appends
    from position n and returns the new count."""
    u_ip = -1.0 / r_m
    v_ip = impact_max * u_ip * u_ip
    use_shape = shape.shape[0] > 0
    for bb_ in range(b0, b1 + 1):
        b = cell0 + bb_ % n_phi
        s = bin_start[b]
        e = bin_start[b + 1]
        if s == e:
            continue
        j0 = s + np.searchsorted(z[s:e], z_lo, side="left")
        j1 = s + np.searchsorted(z[s:e], z_hi, side="right")
        scanned[0] += j1 - j0
        for j in range(j0, j1):
            r_o = r[j]
            if r_o < r_lo or r_o > r_hi:
                continue
            delta_r = r_o - r_m if top else r_m - r_o
            delta_z = z[j] - z_m if top else z_m - z[j]
            if abs(delta_z) > cot_max * delta_r:
                continue
            # origin z times delta r, compared without a division (ACTS zOriginTimesDeltaR)
            z_origin_dr = z_m * delta_r - r_m * delta_z
            if z_origin_dr < c_min * delta_r or z_origin_dr > c_max * delta_r:
                continue
            dx = x[j] - x[m]
            dy = y[j] - y[m]
            if use_shape:
                dz = z[j] - z_m
                if not (_shape_fits(shape, m, dx, dy, dz, shape_tol)
                        and _shape_fits(shape, j, dx, dy, dz, shape_tol)):
                    scanned[1] += 1
                    continue
            xp = dx * cos_m + dy * sin_m
            yp = dy * cos_m - dx * sin_m
            d2 = xp * xp + yp * yp
            if d2 <= 0.0:
                continue
            i_d2 = 1.0 / d2
            i_d = np.sqrt(i_d2)
            # cot(theta) over the transverse chord, as ACTS' linCircle
            cot = delta_z * i_d
            er = (2.0 * var_z + cot * cot * 2.0 * var_r) * i_d2
            u_o = xp * i_d2
            v_o = yp * i_d2
            if ip_cut and abs(r_m * yp) > impact_max * abs(xp):
                # ACTS interactionPointCut: the straight line misses the d0 window, so the
                # doublet must bend; the least bent circle through it and a point of the beam
                # line window, (x', y') = (-r_m, +-impact_max) i.e. (u, v) = (-1/r_m,
                # +-impact_max/r_m^2), must not be tighter than a min_pt helix. The line
                # v = A u + B through both has 1/(2R) = |B| / sqrt(1 + A^2); with
                # du, dv the differences, B du = v_ip du - dv u_ip (no division needed).
                ok = False
                for sign in (-1.0, 1.0):
                    vi = sign * v_ip
                    du = u_o - u_ip
                    dv = v_o - vi
                    num = vi * du - dv * u_ip
                    if num * num * min_helix_diam2 <= du * du + dv * dv:
                        ok = True
                        break
                if not ok:
                    continue
            o_idx[n] = j
            o_cot[n] = cot
            o_u[n] = u_o
            o_v[n] = v_o
            o_er[n] = er
            o_idr[n] = i_d
            n += 1
    return n


@njit(cache=True)
def _shape_fits(shape: np.ndarray, i: int, dx: float, dy: float, dz: float,
                tol: tuple[float, float]) -> bool:
    """Whether cluster i's extents in cells along u and v fit a straight track along
    (dx, dy, dz), allowing ``tol`` = (excess, deficit) cells (see ``taas.seeding.shapes``);
    along an axis where the cluster reaches the module's edge (``open_u``/``open_v``) it may be
    any amount shorter."""
    along_w = abs(dx * shape[i, 0] + dy * shape[i, 1] + dz * shape[i, 2])
    cells_u = abs(dx * shape[i, 3] + dy * shape[i, 4] + dz * shape[i, 5])
    if cells_u < (shape[i, 9] - tol[0]) * along_w:
        return False
    if cells_u > (shape[i, 9] + tol[1]) * along_w and shape[i, 11] == 0.0:
        return False
    cells_v = abs(dx * shape[i, 6] + dy * shape[i, 7] + dz * shape[i, 8])
    if cells_v < (shape[i, 10] - tol[0]) * along_w:
        return False
    return cells_v <= (shape[i, 10] + tol[1]) * along_w or shape[i, 12] != 0.0


@njit(cache=True)
def _shape_slope_bound(shape: np.ndarray, i: int, deficit: float) -> float:
    """Largest |dz| / d_T (d_T: transverse length) of a direction that cluster i's shape
    admits, inf if unbounded. With d = (d_T t, dz), |t| = 1, the deficit side of
    ``_shape_fits`` along an axis a (scaled as there) reads |d.a| <= (size + deficit) |d.w|;
    since |d.a| >= |dz| |a_z| - d_T |a_T| and |d.w| <= d_T |w_T| + |dz| |w_z|, it implies
    |dz| (|a_z| - s |w_z|) <= d_T (|a_T| + s |w_T|) with s = size + deficit: a bound when the
    bracket on the left is positive (an axis along z on a barrel module), for any module
    orientation. An axis along which the cluster reaches the module's edge has no deficit
    side and bounds nothing."""
    w_t = np.hypot(shape[i, 0], shape[i, 1])
    w_z = abs(shape[i, 2])
    bound = np.inf
    for axis, size_col, open_col in ((3, 9, 11), (6, 10, 12)):
        if shape[i, open_col] != 0.0:
            continue
        a_t = np.hypot(shape[i, axis], shape[i, axis + 1])
        a_z = abs(shape[i, axis + 2])
        s = shape[i, size_col] + deficit
        den = a_z - s * w_z
        if den > 0.0:
            bound = min(bound, (a_t + s * w_t) / den)
    return bound


@njit(cache=True)
def _compat_weight(i: int, order: np.ndarray, curv_sorted: np.ndarray, curv: np.ndarray,
                   top_r: np.ndarray, top_cot: np.ndarray, cot_tol: np.ndarray,
                   delta_curv: float, delta_r_min: float, weight_each: float,
                   limit: int, comp_r: np.ndarray) -> tuple[float, int]:
    """ACTS SeedFilter: tops of the same (bottom, middle) whose inverse helix diameters lie
    within delta_curv of top i confirm it, one per distinct radius (other layer), up to
    ``limit``. A confirming top must also continue the seed in r-z: its doublet's cot(theta)
    must agree with top i's within top i's error and scattering allowance (``cot_tol``; ACTS
    only counts compatible seeds whose r-z ranges are compatible too). Without that, in dense
    events random tops of matching curvature give combinatorial fakes the bonus and push true
    seeds out of the best-N-per-middle filter. ``order`` sorts ``curv``, ``curv_sorted`` is
    ``curv[order]``. Returns the added weight and the number of confirmations; ``comp_r`` is
    scratch space of at least ``limit`` entries."""
    c = curv[i]
    n_comp = 0
    for jj in range(np.searchsorted(curv_sorted, c - delta_curv, side="left"), len(order)):
        j = order[jj]
        if j == i:
            continue
        if curv[j] > c + delta_curv:
            break
        if abs(top_r[i] - top_r[j]) < delta_r_min:
            continue
        if abs(top_cot[i] - top_cot[j]) > cot_tol[i]:
            continue
        new = True
        for q in range(n_comp):
            if abs(comp_r[q] - top_r[j]) < delta_r_min:
                new = False
                break
        if new and n_comp < limit:
            comp_r[n_comp] = top_r[j]
            n_comp += 1
        if n_comp >= limit:
            break
    return n_comp * weight_each, n_comp


@njit(cache=True)
def _lowest(w: np.ndarray, n: int) -> int:
    """Index of the smallest of w[:n] (the first one on ties)."""
    k = 0
    for q in range(1, n):
        if w[q] < w[k]:
            k = q
    return k


@njit(cache=True)
def _keep_best(cand_b: np.ndarray, cand_t: np.ndarray, cand_w: np.ndarray,
               cand_z: np.ndarray, n_cand: int, worst: int, bottom: int, top: int, w: float,
               z_origin: float) -> tuple[int, int]:
    """Offer one triplet to a middle space point's best ``len(cand_w)`` candidates (ACTS'
    maxSeedsPerSpM): it takes a free slot, else replaces the lowest weight if it beats it.
    Returns the new candidate count and the slot of the lowest weight once all are filled."""
    max_seeds = len(cand_w)
    if n_cand < max_seeds:
        slot = n_cand
        n_cand += 1
    elif w <= cand_w[worst]:
        return n_cand, worst
    else:
        slot = worst
    cand_b[slot] = bottom
    cand_t[slot] = top
    cand_w[slot] = w
    cand_z[slot] = z_origin
    if n_cand == max_seeds:
        worst = _lowest(cand_w, max_seeds)
    return n_cand, worst


@njit(cache=True, nogil=True)
def find_triplets(x: np.ndarray, y: np.ndarray, z: np.ndarray, r: np.ndarray,
                  bin_start: np.ndarray, n_phi: int, band_rlo: np.ndarray, band_rhi: np.ndarray,
                  shape: np.ndarray, f: np.ndarray, i_par: np.ndarray, counters: np.ndarray,
                  m_start: int, m_stop: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds (bottom, middle, top indices into the sorted arrays), weights and z at r = 0, of
    the middle space points ``m_start`` <= m < ``m_stop``, in middle order.

    ``band_rlo``/``band_rhi`` are the smallest and largest r of each band's space points
    (inf/-inf for an empty band). ``shape``: the cluster-shape table of the space points in
    the same order, or no rows for no shape cut. ``f`` holds the float cuts and ``i_par`` the
    integer ones, in the order ``triplets._kernel_params`` writes them; ``counters`` receives
    the work counters of ``triplets.COUNTER_NAMES``.
    """
    r_mid_min, r_mid_max = f[2], f[3]
    drb_min, drb_max, drt_min, drt_max = f[4], f[5], f[6], f[7]
    cot_max, c_min, c_max = f[8], f[9], f[10]
    min_helix_diam2, pt_per_radius = f[11], f[12]
    ms2_min_pt, sigma_ms2_per_invdiam2, max_pt_scattering = f[13], f[14], f[15]
    impact_max, var_r, var_z = f[16], f[17], f[18]
    delta_curv, comp_seed_w, comp_dr_min, impact_w = f[19], f[20], f[21], f[22]
    slope_w = f[23]
    shape_tol = (f[24], f[25])
    comp_limit, min_comp, max_seeds = i_par[0], i_par[1], i_par[2]
    ip_cut = i_par[3] != 0
    inv_diam_max_pt = pt_per_radius / (2.0 * max_pt_scattering)  # 1/(2R) at that pT
    inv_diam2_floor = inv_diam_max_pt * inv_diam_max_pt
    # the compatible-top search only matters when it weighs or confirms
    use_comp = comp_limit > 0 and (comp_seed_w != 0.0 or min_comp > 0)

    n = len(x)
    b_idx = np.empty(n, np.int64)
    b_cot = np.empty(n)
    b_u = np.empty(n)
    b_v = np.empty(n)
    b_er = np.empty(n)
    b_idr = np.empty(n)
    t_idx = np.empty(n, np.int64)
    t_cot = np.empty(n)
    t_u = np.empty(n)
    t_v = np.empty(n)
    t_er = np.empty(n)
    t_idr = np.empty(n)
    # the tops again, sorted by cot(theta), so that each bottom's slope window is one
    # contiguous run of memory, and a uniform cot(theta) index over them
    s_idx = np.empty(n, np.int64)
    s_cot = np.empty(n)
    s_u = np.empty(n)
    s_v = np.empty(n)
    s_er = np.empty(n)
    s_idr = np.empty(n)
    cell_first = np.empty(n + 1, np.int64)
    c_top = np.empty(n, np.int64)
    c_curv = np.empty(n)
    c_imp = np.empty(n)
    c_r = np.empty(n)
    c_cot = np.empty(n)
    c_tol = np.empty(n)
    c_chi2 = np.empty(n)
    comp_r = np.empty(max(comp_limit, 1))
    cand_b = np.empty(max_seeds, np.int64)
    cand_t = np.empty(max_seeds, np.int64)
    cand_w = np.empty(max_seeds)
    cand_z = np.empty(max_seeds)
    n_mid = max(m_stop - m_start, 0)
    out_b = np.empty(n_mid * max_seeds, np.int64)
    out_m = np.empty(n_mid * max_seeds, np.int64)
    out_t = np.empty(n_mid * max_seeds, np.int64)
    out_w = np.empty(n_mid * max_seeds, np.float32)
    out_z = np.empty(n_mid * max_seeds, np.float32)
    n_out = 0
    scanned = np.zeros(2, np.int64)

    for m in range(m_start, m_stop):
        r_m = r[m]
        if r_m < r_mid_min or r_m > r_mid_max:
            continue
        # tops first: fewer than bottoms, and a middle without tops needs no bottoms
        nt = _find_doublets(m, True, x, y, z, r, bin_start, n_phi, band_rlo, band_rhi,
                            drt_min, drt_max, c_min, c_max, cot_max, var_r, var_z, ip_cut,
                            impact_max, min_helix_diam2, shape, shape_tol, t_idx, t_cot, t_u,
                            t_v, t_er, t_idr, scanned)
        if nt == 0:
            continue
        t_order = np.argsort(t_cot[:nt], kind="mergesort")
        er_t_max = 0.0
        idr_t_max = 0.0
        for k in range(nt):
            it = t_order[k]
            s_idx[k] = t_idx[it]
            s_cot[k] = t_cot[it]
            s_u[k] = t_u[it]
            s_v[k] = t_v[it]
            s_er[k] = t_er[it]
            s_idr[k] = t_idr[it]
            er_t_max = max(er_t_max, t_er[it])
            idr_t_max = max(idr_t_max, t_idr[it])
        cot_lo = s_cot[0]
        cot_t_abs_max = max(abs(cot_lo), abs(s_cot[nt - 1]))
        # about one top per cell of the index: a bottom finds the start of its window by one
        # lookup and a short walk (a binary search per bottom cost as much as its tests)
        cell_scale = nt / (s_cot[nt - 1] - cot_lo) if s_cot[nt - 1] > cot_lo else 0.0
        k = 0
        for c in range(nt + 1):
            while k < nt and min(int((s_cot[k] - cot_lo) * cell_scale), nt) < c:
                k += 1
            cell_first[c] = k
        nb = _find_doublets(m, False, x, y, z, r, bin_start, n_phi, band_rlo, band_rhi,
                            drb_min, drb_max, c_min, c_max, cot_max, var_r, var_z, ip_cut,
                            impact_max, min_helix_diam2, shape, shape_tol, b_idx, b_cot, b_u,
                            b_v, b_er, b_idr, scanned)
        if nb == 0:
            continue
        counters[0] += 1
        counters[1] += nb
        counters[2] += nt
        # tops sorted by cot(theta): each bottom then scans only the slope window its
        # scattering and error allowance admits (ACTS' sortedByCotTheta)
        n_cand = 0
        worst = 0  # slot of the lowest weight once all max_seeds slots are filled
        z_m = z[m]
        n_tests = 0
        n_trip = 0
        for ib in range(nb):
            cot_b = b_cot[ib]
            u_b = b_u[ib]
            v_b = b_v[ib]
            er_b = b_er[ib]
            idr_b = b_idr[ib]
            i_sin2 = 1.0 + cot_b * cot_b
            ms2_region = ms2_min_pt * i_sin2
            d_cot_max = _slope_window(cot_b, er_b, idr_b, er_t_max, idr_t_max, cot_t_abs_max,
                                      var_r, var_z, ms2_min_pt)
            hi = cot_b + d_cot_max
            k0 = _first_at_least(s_cot, cell_first, nt, cot_lo, cell_scale, cot_b - d_cot_max)
            ntc = 0
            z_origin = z_m - r_m * cot_b
            kt = k0
            while kt < nt and s_cot[kt] <= hi:
                cot_t = s_cot[kt]
                kt += 1
                n_tests += 1
                error2 = (s_er[kt - 1] + er_b
                          + 2.0 * (cot_b * cot_t * var_r + var_z) * idr_b * s_idr[kt - 1])
                d_cot = cot_b - cot_t
                d_cot2 = d_cot * d_cot
                # r-z slopes compatible within errors and scattering of a min_pt track
                if d_cot2 > error2 + ms2_region:
                    continue
                du = s_u[kt - 1] - u_b
                if du == 0.0:
                    continue
                # the circle through bottom, middle, top is the line v = A u + B with
                # A = dv / du and B = nb / du; the impact and helix radius cuts are compared
                # multiplied by du (du^2), so most combinations fail without a division
                dv = s_v[kt - 1] - v_b
                nb_ = v_b * du - dv * u_b
                # transverse impact parameter |A - B r_m| r_m, linear in the conformal plane
                imp_du = abs((dv - nb_ * r_m) * r_m)
                if imp_du > impact_max * abs(du):
                    continue
                # B / sqrt(1 + A^2) = 1 / (2 R): the helix must not be tighter than min_pt's
                s2_du2 = du * du + dv * dv
                b2_du2 = nb_ * nb_
                if s2_du2 < b2_du2 * min_helix_diam2:
                    continue
                # refine the slope cut with the scattering expected at this triplet's pT,
                # floored at max_pt_scattering
                inv_diam2 = max(b2_du2 / s2_du2, inv_diam2_floor)
                allow2 = error2 + inv_diam2 * sigma_ms2_per_invdiam2 * i_sin2
                if d_cot2 > allow2:
                    continue
                imp = imp_du / abs(du)
                chi2 = d_cot2 / allow2 if allow2 > 0.0 else 0.0
                if use_comp:
                    c_top[ntc] = s_idx[kt - 1]
                    c_curv[ntc] = np.sign(du) * nb_ / np.sqrt(s2_du2)  # B / sqrt(1+A^2)
                    c_imp[ntc] = imp
                    c_r[ntc] = r[s_idx[kt - 1]]
                    c_cot[ntc] = cot_t
                    c_tol[ntc] = np.sqrt(allow2)
                    c_chi2[ntc] = chi2
                    ntc += 1
                    continue
                # no compatible-top weight: the seed filter needs this triplet alone, so it
                # goes straight into the best max_seeds candidates of this middle
                n_trip += 1
                n_cand, worst = _keep_best(cand_b, cand_t, cand_w, cand_z, n_cand, worst,
                                           b_idx[ib], s_idx[kt - 1],
                                           -(impact_w * imp + slope_w * chi2), z_origin)
            if ntc == 0:
                continue
            n_trip += ntc
            order = np.argsort(c_curv[:ntc], kind="mergesort")
            curv_sorted = c_curv[:ntc][order]
            for i in range(ntc):
                w, n_comp = _compat_weight(i, order, curv_sorted, c_curv[:ntc], c_r[:ntc],
                                           c_cot[:ntc], c_tol[:ntc], delta_curv, comp_dr_min,
                                           comp_seed_w, comp_limit, comp_r)
                if n_comp < min_comp:
                    continue
                w -= impact_w * c_imp[i] + slope_w * c_chi2[i]
                n_cand, worst = _keep_best(cand_b, cand_t, cand_w, cand_z, n_cand, worst,
                                           b_idx[ib], c_top[i], w, z_origin)
        counters[3] += n_tests
        counters[4] += n_trip
        for q in range(n_cand):
            out_b[n_out] = cand_b[q]
            out_m[n_out] = m
            out_t[n_out] = cand_t[q]
            out_w[n_out] = cand_w[q]
            out_z[n_out] = cand_z[q]
            n_out += 1
    counters[5] += scanned[0]
    counters[6] += scanned[1]
    return (out_b[:n_out].copy(), out_m[:n_out].copy(), out_t[:n_out].copy(),
            out_w[:n_out].copy(), out_z[:n_out].copy())
