"""Layer navigation for the combinatorial Kalman filter: which modules does a track cross next?

The CKF advances many candidates together (the traccc GPU CKF style: one "step" moves every
active candidate to its next layer). Each step needs, per candidate, the next layer along the
helix and the modules there that the track may cross. ACTS answers this with its tracking
geometry (volumes -> layers -> surface grids, ``Navigator``); traccc with detray's accelerator
grids. This module builds the same structure from the flat module table, once per detector:

* **layers**: modules grouped by (volume_id, layer_id). A layer whose module normals are
  mostly radial is a *barrel* layer, approximated by a cylinder at the mean module radius with
  the modules' z range; one whose normals lie along z is an *endcap* disk at the mean module z
  with the modules' r range. Each layer also knows its *envelope half-thickness* (how far its
  modules' surfaces stray from the reference cylinder / disk: staggered and tilted modules).
* **grids**: per layer a 2D bin grid (barrel: phi x z, endcap: phi x r) whose bins list every
  module overlapping them (extent from points sampled on the module's trapezoid, plus a margin),
  stored as one CSR table for all layers.

Queries are vectorised (numba) over candidates:

* ``Navigation.next_layer``: the path length to every layer's reference surface, analytically
  (barrel: circle-circle intersection in the transverse plane, 3D path = turning angle / rate;
  endcap: s = (Z - z) / Tz), keeping the smallest one beyond ``s_min`` that falls inside the
  layer's extent;
* ``Navigation.candidate_modules``: the modules in the bins of a window around the reference
  crossing wide enough to hold the crossing with every module plane of the layer (the track can
  cross a module anywhere within the layer's envelope). The caller intersects each candidate
  module exactly (``propagation.propagate``) and checks its bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from taas.detector.detector import Detector
from taas.tracking import helix
from taas.tracking.batched.flavours import NUMBA as _formulas

BARREL, ENDCAP = 0, 1
_TWO_PI = 2.0 * np.pi


@dataclass(frozen=True)
class Navigation:
    """Layers of a detector and their module grids (build with ``build_navigation``).

    Per-layer arrays have one entry per layer; ``module_layer`` one per detector module row.
    The grid of layer l has ``n_phi[l] x n_2[l]`` bins, the second coordinate (z for barrels,
    r for endcaps) binned over [``lo2[l]``, ``hi2[l]``]; bin b of layer l lists modules
    ``bin_modules[bin_offsets[first_bin[l] + b] : bin_offsets[first_bin[l] + b + 1]]``.
    """

    module_layer: np.ndarray  #: (n_modules,) layer index of every module row
    volume_id: np.ndarray  #: (L,)
    layer_id: np.ndarray  #: (L,)
    kind: np.ndarray  #: (L,) BARREL or ENDCAP
    ref: np.ndarray  #: (L,) reference radius (barrel) or z (endcap), mm
    lo: np.ndarray  #: (L,) z range (barrel) or r range (endcap) of the modules, mm
    hi: np.ndarray  #: (L,)
    half_thickness: np.ndarray  #: (L,) max distance of module points from the reference, mm
    n_phi: np.ndarray  #: (L,) grid bins in phi
    n_2: np.ndarray  #: (L,) grid bins in z (barrel) / r (endcap)
    lo2: np.ndarray  #: (L,) grid range in the second coordinate
    hi2: np.ndarray  #: (L,)
    first_bin: np.ndarray  #: (L + 1,) offset of each layer's bins in ``bin_offsets``
    bin_offsets: np.ndarray  #: (n_bins + 1,) CSR offsets
    bin_modules: np.ndarray  #: module rows
    margin: float  #: mm added to module extents in the grid and to layer extents
    world_r: float  #: radius of the cylinder enclosing every module (+ margin), mm
    world_z: float  #: half length of that cylinder, mm

    @property
    def n_layers(self) -> int:
        return len(self.kind)

    def layer_modules(self, layer: int) -> np.ndarray:
        """Module rows of one layer."""
        return np.flatnonzero(self.module_layer == layer)

    def next_layer(self, free: np.ndarray, s_min: np.ndarray, exclude: np.ndarray,
                   bz: float | np.ndarray, s_max: np.ndarray | float = np.inf,
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest layer crossed beyond path ``s_min`` (mm) by each free state (n, 8).

        ``exclude`` (n,) is a layer index per candidate never to return (the layer it sits
        on; -1 for none); ``s_max`` an optional path limit. Returns ``(layer, s)``: layer -1
        where the helix leaves the detector (or reaches ``s_max``) without crossing another
        layer; s is the path length to the layer's reference surface.
        """
        free = np.ascontiguousarray(free, dtype=np.float64)
        n = len(free)
        layer, s = np.full(n, -1, np.int64), np.full(n, np.inf)
        if n:
            _next_layer(free, helix.turning_rate(free[:, helix.QOP], bz),
                        np.broadcast_to(np.asarray(s_min, float), (n,)).copy(),
                        np.broadcast_to(np.asarray(s_max, float), (n,)).copy(),
                        np.broadcast_to(np.asarray(exclude, np.int64), (n,)).copy(),
                        self.kind, self.ref, self.lo, self.hi, self.half_thickness,
                        self.margin, self.world_r, self.world_z, layer, s)
        return layer, s

    def candidate_modules(self, layer: np.ndarray, xyz: np.ndarray, direction: np.ndarray,
                          tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Modules of ``layer`` that a track at reference crossing ``xyz`` may cross.

        ``direction`` (n, 3) is the unit direction there; the search window grows with the
        layer's envelope half-thickness over the track's incidence, plus ``tolerance`` (mm).
        Returns a CSR list ``(offsets (n + 1,), module rows)``, each list free of repeats.
        """
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        direction = np.ascontiguousarray(direction, dtype=np.float64)
        layer = np.ascontiguousarray(layer, dtype=np.int64)
        counts = np.zeros(len(xyz), np.int64)
        stamp = np.full(len(self.module_layer), -1, np.int64)
        _lookup(layer, xyz, direction, float(tolerance), self.kind, self.half_thickness,
                self.n_phi, self.n_2, self.lo2, self.hi2, self.first_bin, self.bin_offsets,
                self.bin_modules, stamp, counts, np.empty(0, np.int64), np.zeros(1, np.int64),
                False)
        offsets = np.zeros(len(xyz) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = np.empty(offsets[-1], np.int64)
        stamp[:] = -1
        _lookup(layer, xyz, direction, float(tolerance), self.kind, self.half_thickness,
                self.n_phi, self.n_2, self.lo2, self.hi2, self.first_bin, self.bin_offsets,
                self.bin_modules, stamp, counts, rows, offsets, True)
        return offsets, rows


# --- building ---------------------------------------------------------------------------------
def _module_samples(detector: Detector, n: int = 5) -> np.ndarray:
    """(n_modules, n*n, 3) global points on each module's trapezoid (corners included)."""
    m = detector.modules
    t = np.linspace(-1.0, 1.0, n)
    grid_v, grid_u = np.meshgrid(t, t, indexing="ij")
    tv, tu = grid_v.ravel(), grid_u.ravel()
    hv = m["hv"][:, None]
    half_u = m["min_hu"][:, None] + (m["max_hu"] - m["min_hu"])[:, None] * (tv + 1) / 2
    u, v = tu * half_u, tv * hv
    local = np.stack([u, v, np.zeros_like(u)], axis=-1)
    return detector.center[:, None, :] + np.einsum("nij,nkj->nki", detector.rotation, local)


def build_navigation(detector: Detector, *, margin: float = 2.0,
                     bin_scale: float = 1.0) -> Navigation:
    """Layers and module grids of ``detector`` (once per process; a few ms for 18k modules).

    ``margin`` (mm) widens every module's extent in the grid and every layer's extent in the
    layer search. ``bin_scale`` sets bins per typical module extent (1: about one bin per
    module in each direction).
    """
    m = detector.modules
    n_mod = len(detector)
    pairs = np.stack([m["volume_id"].astype(np.int64), m["layer_id"].astype(np.int64)], axis=1)
    uniq, module_layer = np.unique(pairs, axis=0, return_inverse=True)
    module_layer = module_layer.ravel().astype(np.int64)
    n_layers = len(uniq)
    pts = _module_samples(detector)
    r_pts = np.hypot(pts[..., 0], pts[..., 1])
    z_pts = pts[..., 2]
    phi_c = np.arctan2(detector.center[:, 1], detector.center[:, 0])
    dphi = (np.arctan2(pts[..., 1], pts[..., 0]) - phi_c[:, None] + np.pi) % _TWO_PI - np.pi
    phi_lo, phi_hi = dphi.min(axis=1), dphi.max(axis=1)
    normal_z = np.abs(detector.rotation[:, 2, 2])

    kind = np.empty(n_layers, np.int64)
    ref, lo, hi, half = (np.empty(n_layers) for _ in range(4))
    n_phi, n_2 = np.empty(n_layers, np.int64), np.empty(n_layers, np.int64)
    lo2, hi2 = np.empty(n_layers), np.empty(n_layers)
    first_bin = np.zeros(n_layers + 1, np.int64)
    bins_of_layer: list[np.ndarray] = []
    mods_of_layer: list[np.ndarray] = []
    for layer in range(n_layers):
        rows = np.flatnonzero(module_layer == layer)
        endcap = np.median(normal_z[rows]) > 0.5
        kind[layer] = ENDCAP if endcap else BARREL
        radial, along = (z_pts[rows], r_pts[rows]) if endcap else (r_pts[rows], z_pts[rows])
        ref[layer] = (detector.center[rows, 2] if endcap
                      else np.hypot(detector.center[rows, 0], detector.center[rows, 1])).mean()
        half[layer] = np.abs(radial - ref[layer]).max()
        c2_lo, c2_hi = along.min(axis=1) - margin, along.max(axis=1) + margin
        lo[layer], hi[layer] = along.min(), along.max()
        lo2[layer], hi2[layer] = c2_lo.min(), c2_hi.max()
        # about one bin per module extent: modules then overlap a handful of bins each
        dist = np.maximum(r_pts[rows].mean(axis=1), 1.0)
        ang_margin = margin / dist
        p_lo = phi_c[rows] + phi_lo[rows] - ang_margin
        p_hi = phi_c[rows] + phi_hi[rows] + ang_margin
        width_phi = np.median(phi_hi[rows] - phi_lo[rows])
        width_2 = np.median(along.max(axis=1) - along.min(axis=1))
        n_phi[layer] = int(np.clip(round(bin_scale * _TWO_PI / max(width_phi, 1e-3)), 1, 4096))
        n_2[layer] = int(np.clip(round(bin_scale * (hi2[layer] - lo2[layer])
                                       / max(width_2, 1e-3)), 1, 4096))
        bins, mods = _module_bins(rows, p_lo, p_hi, c2_lo, c2_hi, int(n_phi[layer]),
                                  int(n_2[layer]), lo2[layer], hi2[layer])
        first_bin[layer + 1] = first_bin[layer] + n_phi[layer] * n_2[layer]
        bins_of_layer.append(bins + first_bin[layer])
        mods_of_layer.append(mods)
    all_bins = np.concatenate(bins_of_layer) if bins_of_layer else np.zeros(0, np.int64)
    all_mods = np.concatenate(mods_of_layer) if mods_of_layer else np.zeros(0, np.int64)
    order = np.lexsort((all_mods, all_bins))
    bin_offsets = np.zeros(first_bin[-1] + 1, np.int64)
    np.cumsum(np.bincount(all_bins, minlength=first_bin[-1]), out=bin_offsets[1:])
    assert n_mod == len(module_layer)
    return Navigation(module_layer=module_layer, volume_id=uniq[:, 0].copy(),
                      layer_id=uniq[:, 1].copy(), kind=kind, ref=ref, lo=lo, hi=hi,
                      half_thickness=half, n_phi=n_phi, n_2=n_2, lo2=lo2, hi2=hi2,
                      first_bin=first_bin, bin_offsets=bin_offsets,
                      bin_modules=all_mods[order].astype(np.int64), margin=float(margin),
                      world_r=float(r_pts.max() + margin),
                      world_z=float(np.abs(z_pts).max() + margin))


def _module_bins(rows: np.ndarray, p_lo: np.ndarray, p_hi: np.ndarray, c_lo: np.ndarray,
                 c_hi: np.ndarray, n_phi: int, n_2: int, lo2: float,
                 hi2: float) -> tuple[np.ndarray, np.ndarray]:
    """(bin, module row) pairs of every bin each module's extent overlaps (phi wraps)."""
    bw_phi = _TWO_PI / n_phi
    bw_2 = (hi2 - lo2) / n_2
    i_lo = np.floor((p_lo + np.pi) / bw_phi).astype(np.int64)
    i_hi = np.floor((p_hi + np.pi) / bw_phi).astype(np.int64)
    j_lo = np.clip(np.floor((c_lo - lo2) / bw_2).astype(np.int64), 0, n_2 - 1)
    j_hi = np.clip(np.floor((c_hi - lo2) / bw_2).astype(np.int64), 0, n_2 - 1)
    n_i = np.minimum(i_hi - i_lo + 1, n_phi)
    n_j = j_hi - j_lo + 1
    per = n_i * n_j
    owner = np.repeat(np.arange(len(rows)), per)
    k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    ii = (i_lo[owner] + k // n_j[owner]) % n_phi
    jj = j_lo[owner] + k % n_j[owner]
    return ii * n_2 + jj, rows[owner]


# --- numba kernels ----------------------------------------------------------------------------
@numba.njit(cache=True)
def _next_layer(free: np.ndarray, h: np.ndarray, s_min: np.ndarray, s_max: np.ndarray,
                exclude: np.ndarray,
                kind: np.ndarray, ref: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                half: np.ndarray, margin: float, world_r: float, world_z: float,
                out_layer: np.ndarray, out_s: np.ndarray) -> None:
    """Nearest layer per state, searched only up to where the helix leaves the world.

    Only the first crossing of each layer within the world counts: a track that leaves the
    enclosing cylinder (or would only come back to a layer after looping) is finished. A
    barrel layer is solved for only when it could beat the nearest layer found so far: the
    helix covers st per unit path across the beam, so reaching radius R from r0 takes a path
    of at least |R - r0| / st; an endcap layer only when its disc lies between ``s_min`` and
    that path. Ties go to the lower layer index (as ``torch.min`` does).
    """
    for i in range(len(free)):
        x0, y0, z0 = free[i, 0], free[i, 1], free[i, 2]
        tx, ty, tz = free[i, 4], free[i, 5], free[i, 6]
        st = np.sqrt(tx * tx + ty * ty)
        r0 = np.hypot(x0, y0)
        best = _formulas.world_path(x0, y0, z0, tx, ty, tz, h[i], world_r, world_z, s_max[i])
        best_l = -1
        for lay in range(len(kind)):
            if lay == exclude[i]:
                continue
            if kind[lay] == BARREL:
                if abs(ref[lay] - r0) * (1.0 - 1e-9) - 1e-9 >= best * st:
                    continue
                s = _formulas.barrel_crossing(x0, y0, z0, tx, ty, tz, h[i], s_min[i], ref[lay],
                                              lo[lay], hi[lay], half[lay], margin)
            else:
                # the disc's path is one division: skip the point on the helix behind it
                # where it cannot beat the nearest layer so far
                if abs(tz) < 1e-12 or not s_min[i] < (ref[lay] - z0) / tz < best:
                    continue
                s = _formulas.endcap_crossing(x0, y0, z0, tx, ty, tz, h[i], s_min[i], ref[lay],
                                              lo[lay], hi[lay], half[lay], margin)
            if s < best:
                best, best_l = s, lay
        out_layer[i] = best_l
        out_s[i] = best if best_l >= 0 else np.inf


@numba.njit(cache=True)
def _lookup(layer: np.ndarray, xyz: np.ndarray, direction: np.ndarray, tolerance: float,
            kind: np.ndarray, half: np.ndarray, n_phi: np.ndarray, n_2: np.ndarray,
            lo2: np.ndarray, hi2: np.ndarray, first_bin: np.ndarray, bin_offsets: np.ndarray,
            bin_modules: np.ndarray, stamp: np.ndarray, counts: np.ndarray, out: np.ndarray,
            offsets: np.ndarray, fill: bool) -> None:
    """Count (fill=False) or write (fill=True) the modules in each query's bin window, each
    module once, in the order the window's bins (phi-major) list them."""
    for i in range(len(layer)):
        lay = layer[i]
        i_lo, i_hi, j_lo, j_hi = _formulas.module_window(
            xyz[i, 0], xyz[i, 1], xyz[i, 2], direction[i, 0], direction[i, 1], direction[i, 2],
            kind[lay] == ENDCAP, half[lay], tolerance, float(n_phi[lay]), float(n_2[lay]),
            lo2[lay], hi2[lay])
        k = offsets[i] if fill else 0
        for ii in range(int(i_lo), int(i_hi) + 1):
            ip = ii % n_phi[lay]
            for jj in range(int(j_lo), int(j_hi) + 1):
                b = first_bin[lay] + ip * n_2[lay] + jj
                for q in range(bin_offsets[b], bin_offsets[b + 1]):
                    mod = bin_modules[q]
                    if stamp[mod] == i:
                        continue
                    stamp[mod] = i
                    if fill:
                        out[k] = mod
                    k += 1
        if not fill:
            counts[i] = k


def group_by_module(module_rows: np.ndarray, n_modules: int) -> tuple[np.ndarray, np.ndarray]:
    """Measurements grouped by module row: ``(offsets (n_modules + 1,), measurement indices)``.

    Measurements of module m are ``indices[offsets[m]:offsets[m + 1]]`` (built per event).
    """
    module_rows = np.asarray(module_rows, np.int64)
    order = np.argsort(module_rows, kind="stable")
    offsets = np.zeros(n_modules + 1, np.int64)
    np.cumsum(np.bincount(module_rows, minlength=n_modules), out=offsets[1:])
    return offsets, order
