"""Numba kernels of the triplet seed finder: doublets, triplets and the seed filter.

The algorithm is ACTS' grid triplet seeding (``Core/src/Seeding2/DoubletSeedFinder.cpp``,
``TripletSeedFinder.cpp``, ``BroadTripletSeedFilter.cpp``) and traccc's port of it
(``core/include/traccc/seeding``), rewritten for numba. Space points arrive sorted by phi bin and,
within a bin, by z (see ``triplets.py``): the grid's z axis is continuous, so the search of
neighbouring z bins becomes a binary search for the z window a doublet can occupy.

The kernels are serial on purpose: numba's default threading layer aborts when two threads
launch parallel kernels at once, and the service runs stages from concurrent request threads;
throughput comes from events in parallel, not from threads inside one event.
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
    (phi(r) = phi0 + asin(r / 2R) + asin(d0 / r)), widened by 10% and the space point error.
    The doublet cuts below are the real selection; this only bounds the bins scanned."""
    bend = abs(np.arcsin(min(1.0, r_o * inv_min_diam)) - np.arcsin(min(1.0, r_m * inv_min_diam)))
    shift = abs(np.arcsin(min(1.0, impact_max / r_o)) - np.arcsin(min(1.0, impact_max / r_m)))
    return 1.1 * (bend + shift) + 0.5 / min(r_o, r_m)


@njit(cache=True)
def _find_doublets(m: int, top: bool, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                   r: np.ndarray, bin_start: np.ndarray, n_phi: int, band_edges: np.ndarray,
                   dr_min: float, dr_max: float, r_min: float, r_max: float, c_min: float,
                   c_max: float, cot_max: float, var_r: float, var_z: float, ip_cut: bool,
                   impact_max: float, min_helix_diam2: float, o_idx: np.ndarray,
                   o_cot: np.ndarray, o_u: np.ndarray, o_v: np.ndarray, o_er: np.ndarray,
                   o_idr: np.ndarray) -> int:
    """Fill the o_* arrays with the doublets (middle m, partner) passing ACTS' doublet cuts.

    Cuts (DoubletSeedFinder): delta r range, |cot(theta)| <= cot_max, line's origin z within
    the collision region and, with ``ip_cut``, a circle through the pair and the beam line
    (within impact_max) no tighter than a min_pt helix. Each doublet is stored in the middle
    space point's conformal frame: (x', y') rotated so that the middle lies on the x axis,
    then u = x'/d^2, v = y'/d^2, where circles through the middle become straight lines
    v = A u + B (conformal mapping).

    The grid is (r band, phi bin), z-sorted within a cell. Per r band the z window and the
    phi window are evaluated for that band's radii only: a partner close in r to the middle
    can only be close in phi too, so the candidates scanned stay near the ones that pass
    rather than growing with the full +-max deflection (the density-driven cost).
    """
    r_m = r[m]
    z_m = z[m]
    if top:
        r_lo = r_m + dr_min
        r_hi = min(r_m + dr_max, r_max)
    else:
        r_lo = max(r_m - dr_max, r_min)
        r_hi = r_m - dr_min
    if r_lo > r_hi:
        return 0
    cos_m = x[m] / r_m
    sin_m = y[m] / r_m
    phi_m = np.arctan2(y[m], x[m])
    bin_w = 2.0 * np.pi / n_phi
    inv_min_diam = 1.0 / np.sqrt(min_helix_diam2)
    n = 0
    for band in range(len(band_edges) - 1):
        ra = max(band_edges[band], r_lo)
        rb = min(band_edges[band + 1], r_hi)
        if ra > rb:
            continue
        z_lo, z_hi = _z_window(r_m, z_m, ra, rb, c_min, c_max, cot_max)
        if z_lo > z_hi:
            continue
        w = _phi_window(r_m, rb if top else ra, impact_max, inv_min_diam)
        b0 = int(np.floor((phi_m - w + np.pi) / bin_w))
        b1 = int(np.floor((phi_m + w + np.pi) / bin_w))
        if b1 - b0 + 1 >= n_phi:
            b0 = 0
            b1 = n_phi - 1
        cell0 = band * n_phi
        n = _scan_bins(m, top, x, y, z, r, bin_start, cell0, n_phi, b0, b1, z_lo, z_hi, r_lo,
                       r_hi, r_m, z_m, cos_m, sin_m, c_min, c_max, cot_max, var_r, var_z,
                       ip_cut, impact_max, min_helix_diam2, o_idx, o_cot, o_u, o_v, o_er,
                       o_idr, n)
    return n


@njit(cache=True)
def _scan_bins(m: int, top: bool, x: np.ndarray, y: np.ndarray, z: np.ndarray,
               r: np.ndarray, bin_start: np.ndarray, cell0: int, n_phi: int, b0: int, b1: int,
               z_lo: float, z_hi: float, r_lo: float, r_hi: float, r_m: float, z_m: float,
               cos_m: float, sin_m: float, c_min: float, c_max: float, cot_max: float,
               var_r: float, var_z: float, ip_cut: bool, impact_max: float,
               min_helix_diam2: float, o_idx: np.ndarray, o_cot: np.ndarray, o_u: np.ndarray,
               o_v: np.ndarray, o_er: np.ndarray, o_idr: np.ndarray, n: int) -> int:
    """Doublet cuts on the z window of phi bins b0..b1 (wrapping) of one r band; appends
    from position n and returns the new count."""
    for bb_ in range(b0, b1 + 1):
        b = cell0 + bb_ % n_phi
        s = bin_start[b]
        e = bin_start[b + 1]
        if s == e:
            continue
        j0 = s + np.searchsorted(z[s:e], z_lo, side="left")
        j1 = s + np.searchsorted(z[s:e], z_hi, side="right")
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
            xp = dx * cos_m + dy * sin_m
            yp = dy * cos_m - dx * sin_m
            d2 = xp * xp + yp * yp
            if d2 <= 0.0:
                continue
            i_d2 = 1.0 / d2
            u_o = xp * i_d2
            v_o = yp * i_d2
            if ip_cut and abs(r_m * yp) > impact_max * abs(xp):
                # ACTS interactionPointCut: the straight line misses the d0 window, so the
                # doublet must bend; the least bent circle through it and a point of the beam
                # line window, (x', y') = (-r_m, +-impact_max) i.e. (u, v) = (-1/r_m,
                # +-impact_max/r_m^2), must not be tighter than a min_pt helix
                u_ip = -1.0 / r_m
                least = np.inf
                for sign in (-1.0, 1.0):
                    v_ip = sign * impact_max * u_ip * u_ip
                    a = (v_o - v_ip) / (u_o - u_ip)
                    bb = v_ip - a * u_ip
                    least = min(least, bb * bb / (1.0 + a * a))
                if least * min_helix_diam2 > 1.0:
                    continue
            i_d = np.sqrt(i_d2)
            # cot(theta) over the transverse chord, as ACTS' linCircle
            cot = delta_z * i_d
            o_idx[n] = j
            o_cot[n] = cot
            o_u[n] = u_o
            o_v[n] = v_o
            o_er[n] = (2.0 * var_z + cot * cot * 2.0 * var_r) * i_d2
            o_idr[n] = i_d
            n += 1
    return n


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
def find_triplets(x: np.ndarray, y: np.ndarray, z: np.ndarray, r: np.ndarray,
                  bin_start: np.ndarray, n_phi: int, band_edges: np.ndarray,
                  f: np.ndarray, i_par: np.ndarray, counters: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds (bottom, middle, top indices into the sorted arrays), weights and z at r = 0.

    ``f`` holds the float cuts and ``i_par`` the integer ones, in the order
    ``triplets._kernel_params`` writes them.
    """
    r_min, r_max, r_mid_min, r_mid_max = f[0], f[1], f[2], f[3]
    drb_min, drb_max, drt_min, drt_max = f[4], f[5], f[6], f[7]
    cot_max, c_min, c_max = f[8], f[9], f[10]
    min_helix_diam2, pt_per_radius = f[11], f[12]
    ms2_min_pt, sigma_ms2_per_invdiam2, max_pt_scattering = f[13], f[14], f[15]
    impact_max, var_r, var_z = f[16], f[17], f[18]
    delta_curv, comp_seed_w, comp_dr_min, impact_w = f[19], f[20], f[21], f[22]
    slope_w = f[23]
    comp_limit, min_comp, max_seeds = i_par[0], i_par[1], i_par[2]
    ip_cut = i_par[3] != 0
    inv_diam_max_pt = pt_per_radius / (2.0 * max_pt_scattering)  # 1/(2R) at that pT

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
    out_b = np.empty(n * max_seeds, np.int64)
    out_m = np.empty(n * max_seeds, np.int64)
    out_t = np.empty(n * max_seeds, np.int64)
    out_w = np.empty(n * max_seeds, np.float32)
    out_z = np.empty(n * max_seeds, np.float32)
    n_out = 0

    for m in range(n):
        r_m = r[m]
        if r_m < r_mid_min or r_m > r_mid_max:
            continue
        # tops first: fewer than bottoms, and a middle without tops needs no bottoms
        nt = _find_doublets(m, True, x, y, z, r, bin_start, n_phi, band_edges, drt_min,
                            drt_max, r_min, r_max, c_min, c_max, cot_max, var_r, var_z, ip_cut,
                            impact_max, min_helix_diam2, t_idx, t_cot, t_u, t_v, t_er, t_idr)
        if nt == 0:
            continue
        t_order = np.argsort(t_cot[:nt], kind="mergesort")
        t_cot_sorted = t_cot[:nt][t_order]
        er_t_max = t_er[:nt].max()
        idr_t_max = t_idr[:nt].max()
        cot_t_abs_max = max(abs(t_cot_sorted[0]), abs(t_cot_sorted[nt - 1]))
        nb = _find_doublets(m, False, x, y, z, r, bin_start, n_phi, band_edges, drb_min,
                            drb_max, r_min, r_max, c_min, c_max, cot_max, var_r, var_z, ip_cut,
                            impact_max, min_helix_diam2, b_idx, b_cot, b_u, b_v, b_er, b_idr)
        if nb == 0:
            continue
        counters[0] += 1
        counters[1] += nb
        counters[2] += nt
        # tops sorted by cot(theta): each bottom then scans only the slope window its
        # scattering and error allowance admits (ACTS' sortedByCotTheta, with a binary search)
        n_cand = 0
        for ib in range(nb):
            cot_b = b_cot[ib]
            u_b = b_u[ib]
            v_b = b_v[ib]
            # 1 + cot^2 = 1/sin^2: converts the pT-based scattering angle to the change of
            # cot(theta) (ACTS TripletSeedFinder, "scatteringInRegion2")
            i_sin2 = 1.0 + cot_b * cot_b
            ms2_region = ms2_min_pt * i_sin2
            error2_bound = (er_t_max + b_er[ib] + 2.0 * (abs(cot_b) * cot_t_abs_max * var_r
                                                        + var_z) * b_idr[ib] * idr_t_max)
            d_cot_max = np.sqrt(error2_bound + ms2_region)
            k0 = np.searchsorted(t_cot_sorted, cot_b - d_cot_max, side="left")
            k1 = np.searchsorted(t_cot_sorted, cot_b + d_cot_max, side="right")
            ntc = 0
            counters[3] += k1 - k0
            for kt in range(k0, k1):
                it = t_order[kt]
                cot_t = t_cot[it]
                error2 = (t_er[it] + b_er[ib]
                          + 2.0 * (cot_b * cot_t * var_r + var_z) * b_idr[ib] * t_idr[it])
                d_cot = cot_b - cot_t
                d_cot2 = d_cot * d_cot
                # r-z slopes compatible within errors and scattering of a min_pt track
                if d_cot2 > error2 + ms2_region:
                    continue
                du = t_u[it] - u_b
                if du == 0.0:
                    continue
                # the circle through bottom, middle, top is the line v = A u + B
                a = (t_v[it] - v_b) / du
                s2 = 1.0 + a * a
                bb = v_b - a * u_b
                b2 = bb * bb
                # B / sqrt(1 + A^2) = 1 / (2 R): the helix must not be tighter than min_pt's
                if s2 < b2 * min_helix_diam2:
                    continue
                inv_diam2 = b2 / s2
                # refine the slope cut with the scattering expected at this triplet's pT,
                # floored at max_pt_scattering
                inv_diam2 = max(inv_diam2, inv_diam_max_pt * inv_diam_max_pt)
                allow2 = error2 + inv_diam2 * sigma_ms2_per_invdiam2 * i_sin2
                if d_cot2 > allow2:
                    continue
                # transverse impact parameter, linear in the conformal plane
                imp = abs((a - bb * r_m) * r_m)
                if imp > impact_max:
                    continue
                c_top[ntc] = t_idx[it]
                c_curv[ntc] = bb / np.sqrt(s2)
                c_imp[ntc] = imp
                c_r[ntc] = r[t_idx[it]]
                c_cot[ntc] = cot_t
                c_tol[ntc] = np.sqrt(allow2)
                c_chi2[ntc] = d_cot2 / allow2 if allow2 > 0.0 else 0.0
                ntc += 1
            counters[4] += ntc
            if ntc == 0:
                continue
            # the compatible-top search only matters when it weighs or confirms
            use_comp = comp_limit > 0 and (comp_seed_w != 0.0 or min_comp > 0)
            order = np.empty(0, np.int64)
            curv_sorted = np.empty(0)
            if use_comp:
                order = np.argsort(c_curv[:ntc], kind="mergesort")
                curv_sorted = c_curv[:ntc][order]
            z_origin = z[m] - r_m * cot_b
            for i in range(ntc):
                w = 0.0
                if use_comp:
                    w, n_comp = _compat_weight(i, order, curv_sorted, c_curv[:ntc],
                                               c_r[:ntc], c_cot[:ntc], c_tol[:ntc],
                                               delta_curv, comp_dr_min, comp_seed_w,
                                               comp_limit, comp_r)
                    if n_comp < min_comp:
                        continue
                w -= impact_w * c_imp[i] + slope_w * c_chi2[i]
                # keep the best max_seeds candidates of this middle space point
                if n_cand < max_seeds:
                    slot = n_cand
                    n_cand += 1
                else:
                    slot = 0
                    for q in range(1, max_seeds):
                        if cand_w[q] < cand_w[slot]:
                            slot = q
                    if w <= cand_w[slot]:
                        continue
                cand_b[slot] = b_idx[ib]
                cand_t[slot] = c_top[i]
                cand_w[slot] = w
                cand_z[slot] = z_origin
        for q in range(n_cand):
            out_b[n_out] = cand_b[q]
            out_m[n_out] = m
            out_t[n_out] = cand_t[q]
            out_w[n_out] = cand_w[q]
            out_z[n_out] = cand_z[q]
            n_out += 1
    return (out_b[:n_out].copy(), out_m[:n_out].copy(), out_t[:n_out].copy(),
            out_w[:n_out].copy(), out_z[:n_out].copy())
