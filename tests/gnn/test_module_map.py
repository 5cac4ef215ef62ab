"""Module-map graph construction: doublet quantities against hand-computed values, map building
and lookup on hand-made modules, closure on simulated events, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from taas.errors import InputError
from taas.gnn.data import GraphSample, load_samples, prepare_samples
from taas.gnn.module_map import (
    CLIP,
    QUANTITIES,
    ModuleMap,
    build_module_map,
    doublet_quantities,
    module_map_edges,
    module_map_graph,
)


def cyl(r: float, phi: float, z: float) -> list[float]:
    return [r * math.cos(phi), r * math.sin(phi), z]


def test_quantities_of_known_doublets() -> None:
    xyz = np.array([cyl(30, 0.1, 10), cyl(60, 0.1, 20),      # straight from the origin
                    cyl(30, 0.2, 40), cyl(60, 0.23, 60),     # line from z0 = 20, bending
                    cyl(50, -3.1, 0), cyl(52, 3.1, 0),       # across phi = +-pi
                    cyl(80, 0.0, 700), cyl(80, 0.01, 800)])  # same radius: endcap overlap
    q = doublet_quantities(xyz, np.array([0, 2, 4, 6]), np.array([1, 3, 5, 7]))
    assert QUANTITIES == ("z0", "dphi", "phi_slope", "deta")
    np.testing.assert_allclose(q[0], [0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(q[1], [20, 0.03, 0.001,
                                      math.asinh(1) - math.asinh(40 / 30)], rtol=1e-9)
    np.testing.assert_allclose(q[2, 1], 6.2 - 2 * math.pi, rtol=1e-9)  # wrapped, not 6.2
    # r_b - r_a rounds to ~1e-14 here, below MIN_DR: z0 and slope take +-CLIP
    assert abs(q[3, 0]) == CLIP
    assert abs(q[3, 2]) == CLIP


def hand_event() -> tuple[np.ndarray, np.ndarray]:
    """Module 7 at r = 30 (hits 0-2), module 9 at r = 60 (hits 3-5), all near phi = 0."""
    xyz = np.array([cyl(30, 0.00, 0), cyl(30, 0.01, 5), cyl(30, 0.02, 10),
                    cyl(60, 0.00, 0), cyl(60, 0.01, 10), cyl(60, 0.30, 20)])
    return xyz, np.array([7, 7, 7, 9, 9, 9], np.uint64)


def test_map_records_pairs_and_ranges_and_the_graph_applies_them() -> None:
    xyz, module = hand_event()
    # two training doublets 7 -> 9 (0->3, 1->4) and one within module 7 (ignored)
    mm = build_module_map([(xyz, module, np.array([0, 1, 0]), np.array([3, 4, 1]))])
    assert len(mm) == 1
    assert mm.n_events == 1
    assert (int(mm.module_a[0]), int(mm.module_b[0]), int(mm.n_doublets[0])) == (7, 9, 2)
    q = doublet_quantities(xyz, np.array([0, 1]), np.array([3, 4]))
    np.testing.assert_array_equal(mm.lo[0], q.min(axis=0))
    np.testing.assert_array_equal(mm.hi[0], q.max(axis=0))
    src, dst = module_map_graph(mm, xyz, module)
    edges = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert {(0, 3), (1, 4)} <= edges                  # the training doublets themselves
    assert all(a in (0, 1, 2) and b in (3, 4, 5) for a, b in edges)  # 7 -> 9 only
    assert not any(b == 5 for _, b in edges)           # dphi 0.28-0.3: outside every range
    # widening only adds edges
    wide_src, wide_dst = module_map_graph(mm.widened(1.0), xyz, module)
    assert edges <= set(zip(wide_src.tolist(), wide_dst.tolist(), strict=True))


@pytest.fixture(scope="module")
def tiny_samples(tiny_sim_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> list[GraphSample]:
    return load_samples(prepare_samples(tiny_sim_dir, tmp_path_factory.mktemp("mm_samples"),
                                        progress=False))


def test_map_closes_on_its_training_events(tiny_samples: list[GraphSample],
                                           tmp_path: Path) -> None:
    """Every cross-module truth doublet of the training events lies in its own pair's range,
    so the map's graph of those events holds all of them (and nothing within a module)."""
    mm = build_module_map([(s.xyz, s.module, s.truth_src, s.truth_dst) for s in tiny_samples])
    assert len(mm) > 0
    assert mm.n_events == len(tiny_samples)
    for s in tiny_samples:
        src, dst = module_map_graph(mm, s.xyz, s.module)
        assert not np.any(s.module[src] == s.module[dst])
        cross = s.module[s.truth_src] != s.module[s.truth_dst]
        found = set(zip(src.tolist(), dst.tolist(), strict=True))
        truth = set(zip(s.truth_src[cross].tolist(), s.truth_dst[cross].tolist(), strict=True))
        assert truth
        assert truth <= found
    # the undirected graph: each pair once, its first hit nearer the origin (ties: lower index)
    s = tiny_samples[0]
    a, b = module_map_edges(mm, s.xyz, s.module)
    src, dst = module_map_graph(mm, s.xyz, s.module)
    d2 = (s.xyz ** 2).sum(axis=1)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == {
        (u, v) if (d2[u], u) <= (d2[v], v) else (v, u)
        for u, v in zip(src.tolist(), dst.tolist(), strict=True)}
    assert len(set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))) \
        == len(a)
    loaded = ModuleMap.load(mm.save(tmp_path / "map.npz"))
    for name in ("module_a", "module_b", "lo", "hi", "n_doublets"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(mm, name))


def test_bad_input(tmp_path: Path) -> None:
    xyz, module = hand_event()
    empty = build_module_map([])
    assert len(empty) == 0
    src, dst = module_map_graph(empty, xyz, module)
    assert len(src) == len(dst) == 0
    mm = build_module_map([(xyz, module, np.array([0]), np.array([3]))])
    for n in (0, 1):
        src, dst = module_map_graph(mm, xyz[:n], module[:n])
        assert len(src) == 0
    with pytest.raises(InputError, match="does not match"):
        module_map_graph(mm, xyz[:3], module)
    with pytest.raises(ValueError, match="margin"):
        mm.widened(-0.1)
    path = tmp_path / "old.npz"
    np.savez(path, module_a=mm.module_a, module_b=mm.module_b, lo=mm.lo[:, :3], hi=mm.hi[:, :3],
             n_doublets=mm.n_doublets, n_events=1, quantities=np.array(QUANTITIES[:3]))
    with pytest.raises(InputError, match="quantities"):
        ModuleMap.load(path)
