"""Track building (connected components, CC & walkthrough) on hand-made graphs.

Space point i has measurement index 100 + i and, unless given, r = i + 1, so expected tracks read
as node lists. Every case runs on both backends (the GPU one on the CPU device here).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from backends.cpu.track_building import CpuTrackBuilding
from backends.gpu.track_building import GpuTrackBuilding
from taas.edm import Edges, ProtoTracks, Spacepoints
from taas.errors import InputError
from taas.gnn.track_building import (
    CudaUnavailableError,
    TrackBuildingConfig,
    components_scipy,
    components_torch,
)

BACKENDS = [CpuTrackBuilding, GpuTrackBuilding]


def spacepoints(n: int, r: np.ndarray | None = None) -> Spacepoints:
    r = np.arange(1.0, n + 1) if r is None else np.asarray(r, float)
    zeros = np.zeros(n)
    return Spacepoints(measurement_index=np.arange(n) + 100, x=r, y=zeros, z=zeros, r=r,
                       phi=zeros, eta=zeros)


def inputs(n: int, edges: list[tuple[int, int, float]], r: np.ndarray | None = None) -> dict:
    src, dst, score = (np.array(c) for c in zip(*edges, strict=True)) if edges else ([], [], [])
    e = Edges(src=src, dst=dst, score=score)
    return {**e.to_tensors(), **spacepoints(n, r).to_tensors()}


def build(stage_cls: type, n: int, edges: list, r: np.ndarray | None = None,
          **cfg: object) -> list[list[int]]:
    stage = stage_cls(None, TrackBuildingConfig(**cfg))
    out = ProtoTracks.from_tensors(stage.run(inputs(n, edges, r)))
    o, idx = out["offsets"], out["indices"]
    assert o[0] == 0
    return [(idx[o[t]:o[t + 1]] - 100).tolist() for t in range(len(out))]


def chain(nodes: list[int], score: float = 0.9) -> list[tuple[int, int, float]]:
    return [(a, b, score) for a, b in itertools.pairwise(nodes)]


METHODS = ["cc", "walkthrough"]


@pytest.mark.parametrize("stage_cls", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_simple_chain_is_one_track(stage_cls: type, method: str) -> None:
    # edges in both directions and out of order: same track, sorted by r
    edges = [(3, 2, 0.9), (0, 1, 0.8), (2, 1, 0.7), (1, 2, 0.95)]
    assert build(stage_cls, 4, edges, method=method) == [[0, 1, 2, 3]]


@pytest.mark.parametrize("stage_cls", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_two_disjoint_chains_ordered_by_first_hit(stage_cls: type, method: str) -> None:
    # track B (nodes 0, 4, 5, 6) starts at smaller r than track A (1, 2, 3)
    edges = chain([1, 2, 3]) + chain([6, 5, 4, 0])
    assert build(stage_cls, 7, edges, method=method) == [[0, 4, 5, 6], [1, 2, 3]]


@pytest.mark.parametrize("stage_cls", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_isolated_nodes_and_short_pieces_are_dropped(stage_cls: type, method: str) -> None:
    edges = chain([0, 1, 2]) + chain([4, 5])  # 3 and 6 isolated, 4-5 too short
    assert build(stage_cls, 7, edges, method=method) == [[0, 1, 2]]
    assert build(stage_cls, 7, edges, method=method, min_hits=2) == [[0, 1, 2], [4, 5]]
    assert build(stage_cls, 7, edges, method=method, min_hits=1) == [[0, 1, 2], [3], [4, 5],
                                                                      [6]]


@pytest.mark.parametrize("stage_cls", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_edges_below_the_cut_are_ignored(stage_cls: type, method: str) -> None:
    edges = [*chain([0, 1, 2]), (2, 3, 0.5), *chain([3, 4, 5])]  # 0.5 is not above 0.5
    assert build(stage_cls, 6, edges, method=method) == [[0, 1, 2], [3, 4, 5]]
    assert build(stage_cls, 6, edges, method=method, score_cut=0.4) == [[0, 1, 2, 3, 4, 5]]


def y_graph(score_a: float, score_b: float) -> list[tuple[int, int, float]]:
    """Trunk 0-1-2, arm A 3-4 (r 4, 5), arm B 5-6-7 (r 4, 5, 6), both hanging off node 2."""
    return [*chain([0, 1, 2]), (2, 3, score_a), *chain([3, 4]), (2, 5, score_b),
            *chain([5, 6, 7])]


Y_R = np.array([1, 2, 3, 4, 5, 4, 5, 6], float)


@pytest.mark.parametrize("stage_cls", BACKENDS)
def test_y_branch(stage_cls: type) -> None:
    # CC keeps the whole Y as one component
    assert build(stage_cls, 8, y_graph(0.9, 0.7), Y_R) == [[0, 1, 2, 3, 5, 4, 6, 7]]
    # the walk follows the best edge only (B's 0.7 is below walk_add): trunk + A;
    # B's remaining nodes start their own road
    assert build(stage_cls, 8, y_graph(0.9, 0.7), Y_R, method="walkthrough") == [
        [0, 1, 2, 3, 4], [5, 6, 7]]
    # both arms above walk_add: the longest road (through B) wins
    assert build(stage_cls, 8, y_graph(0.9, 0.85), Y_R, method="walkthrough") == [
        [0, 1, 2, 5, 6, 7]]
    # equal lengths: the better-scoring arm wins, the other is too short alone
    edges = [*y_graph(0.85, 0.9)[:-1]]  # arm B shortened to 5-6
    assert build(stage_cls, 8, edges, Y_R, method="walkthrough") == [[0, 1, 2, 5, 6]]
    # edges at or below walk_min are never walked
    assert build(stage_cls, 8, y_graph(0.9, 0.7), Y_R, method="walkthrough", score_cut=0.1,
                 walk_min=0.75) == [[0, 1, 2, 3, 4], [5, 6, 7]]


@pytest.mark.parametrize("stage_cls", BACKENDS)
def test_merging_chains_are_walked(stage_cls: type) -> None:
    """Two roads joining at node 4 (in-degree 2): the branched component is walked."""
    edges = [*chain([0, 2, 4, 5, 6]), (1, 3, 0.9), (3, 4, 0.6)]
    r = np.array([1, 1.5, 2, 2.5, 3, 4, 5])
    assert build(stage_cls, 7, edges, r, method="walkthrough") == [[0, 2, 4, 5, 6]]
    # node 1's road then ends at 3 (4 is used): too short, dropped
    assert build(stage_cls, 7, edges, r, method="walkthrough", min_hits=2) == [
        [0, 2, 4, 5, 6], [1, 3]]


@pytest.mark.parametrize("stage_cls", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_and_empty_events(stage_cls: type, method: str, n: int) -> None:
    edges = [(0, 1, 0.9)] if n == 2 else []
    assert build(stage_cls, n, edges, method=method) == []
    assert build(stage_cls, 5, [], method=method) == []


@pytest.mark.parametrize("stage_cls", BACKENDS)
def test_edges_outside_the_event_are_an_input_error(stage_cls: type) -> None:
    with pytest.raises(InputError, match=r"lies outside the 3 rows of .spacepoints."):
        build(stage_cls, 3, [(0, 3, 0.9)])


def random_event(seed: int, n_tracks: int = 60, layers: int = 8) -> tuple[int, list, np.ndarray]:
    """Tracks crossing layers plus fake edges to neighbouring tracks, with GNN-like scores."""
    rng = np.random.default_rng(seed)
    n = n_tracks * layers
    node = np.arange(n).reshape(n_tracks, layers)
    r = np.tile(np.arange(1.0, layers + 1), n_tracks) + rng.normal(0, 0.01, n)
    true = [(node[t, i], node[t, i + 1], rng.uniform(0.3, 1.0))
            for t in range(n_tracks) for i in range(layers - 1)]
    fake = [(node[t, i], node[(t + rng.integers(1, 3)) % n_tracks, i + 1], rng.uniform(0, 0.9))
            for t in range(n_tracks) for i in range(layers - 1) if rng.random() < 0.4]
    perm = rng.permutation(n)  # node numbering unrelated to r
    edges = [(int(perm[a]), int(perm[b]), s) for a, b, s in true + fake]
    r_perm = np.empty(n)
    r_perm[perm] = r
    return n, edges, r_perm


@pytest.mark.parametrize("method", METHODS)
def test_cpu_and_gpu_give_identical_tracks(method: str) -> None:
    for seed in range(3):
        n, edges, r = random_event(seed)
        cpu = build(CpuTrackBuilding, n, edges, r, method=method, walk_add=0.7)
        gpu = build(GpuTrackBuilding, n, edges, r, method=method, walk_add=0.7)
        assert cpu == gpu
        assert len(cpu) > 5
        hits = [h for t in cpu for h in t]
        assert len(hits) == len(set(hits))  # tracks are disjoint
        for t in cpu:
            assert np.all(np.diff(r[t]) >= 0)


def test_walkthrough_tracks_are_roads_above_walk_min() -> None:
    n, edges, r = random_event(7)
    good = {(a, b) for a, b, s in edges if s > 0.6} | {(b, a) for a, b, s in edges if s > 0.6}
    tracks = build(CpuTrackBuilding, n, edges, r, method="walkthrough", score_cut=0.6,
                   walk_min=0.6)
    assert tracks
    for t in tracks:
        assert all((a, b) in good for a, b in itertools.pairwise(t))


def test_component_kernels_agree() -> None:
    rng = np.random.default_rng(8)
    n = 2000
    src = torch.from_numpy(rng.integers(0, n, 1500))
    dst = torch.from_numpy(rng.integers(0, n, 1500))
    want = components_scipy(n, src, dst)
    assert torch.equal(components_torch(n, src, dst), want)
    assert torch.equal(want[want], want)  # labels are canonical: the smallest node
    assert bool((want <= torch.arange(n)).all())


def test_gpu_stage_names_its_device() -> None:
    stage = GpuTrackBuilding(None)
    if torch.cuda.is_available():
        assert stage.device.startswith("cuda")
    else:
        assert stage.device == "cpu (CUDA unavailable)"
        with pytest.raises(CudaUnavailableError):
            GpuTrackBuilding(None, TrackBuildingConfig(allow_cpu_fallback=False))
    assert CpuTrackBuilding(None).device == "cpu"


@pytest.mark.parametrize("bad", [{"method": "bfs"}, {"min_hits": 0},
                                 {"walk_min": 0.9, "walk_add": 0.5}, {"order_by": "z"}])
def test_config_is_validated(bad: dict) -> None:
    with pytest.raises(ValueError, match="must"):
        TrackBuildingConfig(**bad)


def test_order_by_distance_from_the_origin() -> None:
    """An end-cap track: r falls while |z| grows; "distance" orders it outwards."""
    sps = spacepoints(3, [3.0, 2.0, 1.0])
    tensors = {**Edges(src=[0, 1], dst=[1, 2], score=[0.9, 0.9]).to_tensors(),
               **sps.to_tensors(), "spacepoints.z": np.array([0.0, 10.0, 20.0])}
    for order_by, want in (("r", [102, 101, 100]), ("distance", [100, 101, 102])):
        stage = CpuTrackBuilding(None, TrackBuildingConfig(order_by=order_by))
        assert stage.run(tensors)["prototracks.indices"].tolist() == want
