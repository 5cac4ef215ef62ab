"""Triplet seeding: space points in, (bottom, middle, top) seeds out.

The Python side validates input, selects the seeding space points, sorts them into the phi-z
grid and maps the kernel's seeds back to rows of the caller's space point table. The grid order
depends on positions only, so shuffling the input rows changes no seed (only its row numbers).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from taas.edm.hits import Spacepoints
from taas.edm.tracks import Seeds
from taas.errors import InputError
from taas.seeding.config import PT_PER_TESLA_MM, SeedingConfig
from taas.seeding.kernels import find_triplets
from taas.seeding.shapes import SHAPE_COLUMNS


def _kernel_params(cfg: SeedingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Float and integer cut arrays in the order ``kernels.find_triplets`` reads them."""
    pt_per_radius = PT_PER_TESLA_MM * cfg.bz  # MeV per mm of helix radius
    highland = cfg.highland
    floats = np.array([
        cfg.r_min, cfg.r_max, cfg.r_middle_min, cfg.r_middle_max,
        cfg.delta_r_bottom_min, cfg.delta_r_bottom_max, cfg.delta_r_top_min, cfg.delta_r_top_max,
        cfg.cot_theta_max, cfg.collision_region_min, cfg.collision_region_max,
        (2.0 * cfg.min_helix_radius) ** 2,  # minimum helix diameter squared
        pt_per_radius,
        (highland / cfg.min_pt * cfg.sigma_scattering) ** 2,  # slope spread at min_pt
        (2.0 * cfg.sigma_scattering * highland / pt_per_radius) ** 2,  # per (1/2R)^2
        cfg.max_pt_scattering,
        cfg.impact_max, cfg.sp_sigma_r ** 2, cfg.sp_sigma_z ** 2,
        cfg.delta_inv_helix_diameter, cfg.compat_seed_weight, cfg.compat_delta_r_min,
        cfg.impact_weight_factor, cfg.slope_weight_factor,
        cfg.shape_excess_cells, cfg.shape_deficit_cells,
    ], dtype=np.float64)
    ints = np.array([cfg.compat_seed_limit, cfg.min_compatible_tops,
                     cfg.max_seeds_per_middle_sp, int(cfg.interaction_point_cut)],
                    dtype=np.int64)
    return floats, ints


def _check_positions(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
    for name, a in (("x", x), ("y", y), ("z", z)):
        bad = ~np.isfinite(a)
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"seeding: space point {name} is not finite ({int(bad.sum())} rows)",
                             row=row, column=name)


def _checked_shapes(shapes: np.ndarray, n: int) -> np.ndarray:
    table = np.ascontiguousarray(shapes, dtype=np.float64)
    if table.shape != (n, len(SHAPE_COLUMNS)):
        raise InputError(f"seeding: cluster shapes must have shape ({n}, {len(SHAPE_COLUMNS)}),"
                         f" one row per space point; got {table.shape}")
    if not np.all(np.isfinite(table)):
        raise InputError("seeding: cluster shapes are not all finite")
    return table


#: Work counters ``find_seeds`` fills into its ``stats`` dict: middle space points with a
#: bottom doublet, bottom and top doublets, (bottom, top) pairs in the cot(theta) window that
#: get the full triplet test, triplets passing it (before the seed filter), candidates:
#: space points examined in the doublet search windows (tops and bottoms), and those of them
#: that passed the other doublet cuts but not the cluster shapes.
COUNTER_NAMES = ("middles", "bottom_doublets", "top_doublets", "triplet_tests", "triplets",
                 "candidates", "shape_rejected")


def find_seeds(spacepoints: Spacepoints, config: SeedingConfig | None = None,
               stats: dict[str, int] | None = None, shapes: np.ndarray | None = None) -> Seeds:
    """Triplet seeds from one event's space points.

    Only x, y, z are read (r and phi are recomputed from them, so the seeds cannot depend on
    inconsistent derived columns). Seed indices are rows of ``spacepoints``; seeds are sorted
    by (middle, bottom, top). ``z_vertex`` is the bottom-middle line's z at r = 0, as ACTS'
    seed ``vertexZ``. Non-finite positions raise ``InputError``; fewer than three usable space
    points give no seeds. Passing a dict as ``stats`` fills it with the work counters of
    ``COUNTER_NAMES`` (to see the combinatorics grow with density, not only the time).
    ``shapes``: the clusters' shape table (``taas.seeding.shapes.cluster_shapes``, one row per
    space point), for the doublets' cluster-shape cut when ``config.cluster_shape_cut`` is on;
    None, no shape cut.
    """
    cfg = SeedingConfig() if config is None else config
    x = np.ascontiguousarray(spacepoints["x"], dtype=np.float64)
    y = np.ascontiguousarray(spacepoints["y"], dtype=np.float64)
    z = np.ascontiguousarray(spacepoints["z"], dtype=np.float64)
    _check_positions(x, y, z)
    r = np.hypot(x, y)
    use = np.flatnonzero((r >= cfg.r_min) & (r <= cfg.r_max) & (z >= cfg.z_min)
                         & (z <= cfg.z_max))
    if len(use) < 3:
        return Seeds.empty()

    n_bins = cfg.n_phi_bins
    band_edges = cfg.r_band_edges
    n_bands = len(band_edges) - 1
    phi = np.arctan2(y[use], x[use])
    phi_bin = np.floor((phi + math.pi) * (n_bins / (2.0 * math.pi))).astype(np.int64)
    np.clip(phi_bin, 0, n_bins - 1, out=phi_bin)
    band = np.clip(np.searchsorted(band_edges, r[use], side="right") - 1, 0, n_bands - 1)
    cell = band * n_bins + phi_bin
    # grid order: (r band, phi bin) cell, then z (the kernel binary-searches z), then x, y to
    # break ties by position only
    order = np.lexsort((y[use], x[use], z[use], cell))
    rows = use[order]
    cell = cell[order]
    bin_start = np.zeros(n_bands * n_bins + 1, np.int64)
    np.cumsum(np.bincount(cell, minlength=n_bands * n_bins), out=bin_start[1:])
    # the r range each band's space points occupy (inf/-inf when empty): the kernel sizes its
    # z and phi windows on it, not on the band edges (a barrel layer fills a few mm of its band)
    r_sorted = r[rows]
    band_start = bin_start[::n_bins]
    filled = band_start[1:] > band_start[:-1]
    band_rlo = np.full(n_bands, np.inf)
    band_rhi = np.full(n_bands, -np.inf)
    band_rlo[filled] = np.minimum.reduceat(r_sorted, band_start[:-1][filled])
    band_rhi[filled] = np.maximum.reduceat(r_sorted, band_start[:-1][filled])

    floats, ints = _kernel_params(cfg)
    counters = np.zeros(len(COUNTER_NAMES), np.int64)
    shape = (_checked_shapes(shapes, len(x))[rows] if cfg.cluster_shape_cut and shapes is not None
             else np.zeros((0, len(SHAPE_COLUMNS))))
    grid = (x[rows], y[rows], z[rows], r_sorted, bin_start, n_bins, band_rlo, band_rhi, shape,
            floats, ints)
    b, m, t, w, zv = _triplets_of_middles(grid, len(rows), cfg.threads, counters)
    if stats is not None:
        stats.update(zip(COUNTER_NAMES, counters.tolist(), strict=True))
    triplets = np.stack([rows[b], rows[m], rows[t]], axis=1)
    sort = np.lexsort((triplets[:, 2], triplets[:, 0], triplets[:, 1]))
    return Seeds(spacepoints=triplets[sort], quality=w[sort], z_vertex=zv[sort])


#: Middle ranges per thread: more, smaller ranges even out the threads' loads (the cost of a
#: middle depends on its r band and on the density around it).
_RANGES_PER_THREAD = 4


def _triplets_of_middles(grid: tuple[Any, ...], n: int, threads: int, counters: np.ndarray
                         ) -> tuple[np.ndarray, ...]:
    """``find_triplets`` over the middles 0..n-1: at once, or in contiguous ranges shared by
    ``threads`` Python threads (the kernel releases the GIL), joined in middle order, so the
    output and the summed ``counters`` are those of one call."""
    if threads == 1 or n < 2:
        return find_triplets(*grid, counters, 0, n)
    bounds = np.linspace(0, n, min(n, threads * _RANGES_PER_THREAD) + 1).astype(np.int64)
    parts = np.zeros((len(bounds) - 1, len(counters)), np.int64)

    def run(i: int) -> tuple[np.ndarray, ...]:
        return find_triplets(*grid, parts[i], int(bounds[i]), int(bounds[i + 1]))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outputs = list(pool.map(run, range(len(parts))))
    counters += parts.sum(axis=0)
    return tuple(np.concatenate(column) for column in zip(*outputs, strict=True))


def warmup(config: SeedingConfig | None = None) -> None:
    """Compile (or load from numba's cache) the kernels on a tiny event, so that the first
    real event is not charged the compilation."""
    radii = np.array([32.0, 72.0, 116.0, 172.0])
    phis = 0.1 + radii * 1e-4
    xs, ys = radii * np.cos(phis), radii * np.sin(phis)
    zs = radii * 0.5
    sp = Spacepoints(measurement_index=np.arange(4), x=xs, y=ys, z=zs, r=radii, phi=phis,
                     eta=np.arcsinh(zs / radii))
    find_seeds(sp, config)
