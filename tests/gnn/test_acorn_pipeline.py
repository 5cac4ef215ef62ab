"""The ``acorn`` pipeline end to end (reconstruct + evaluate) on tiny events, the same tracks on
the CPU and GPU (CPU device) backends, and degenerate events passing through every stage."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from taas.events.dataset import open_dataset
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import reconstruct
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN, CPU, PipelineSpec, get_pipeline

ALL_CPU = {"graph_construction": "cpu", "edge_classification": "cpu", "track_building": "cpu"}


@pytest.fixture(scope="module")
def acorn_run(tiny_sim_dir: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("acorn")
    reco = reconstruct(tiny_sim_dir, out / "reco", ACORN, progress=False)
    return reco, evaluate_run(tiny_sim_dir, reco, out / "metrics")


def test_acorn_spec() -> None:
    assert get_pipeline("acorn") is ACORN
    assert ACORN.accel_stages == ("graph_construction", "edge_classification", "track_building")
    assert all(b == "gpu" for s, b in ACORN.steps if s in ACORN.accel_stages)
    assert all(b == "cpu" for s, b in ACORN.steps if s not in ACORN.accel_stages)
    routed = ACORN.with_routing(ALL_CPU)
    assert routed.accel_stages == ACORN.accel_stages
    assert all(b == "cpu" for _, b in routed.steps)
    assert CPU.accel_stages == ()
    assert PipelineSpec("x", ()).accel_stages == ()


def test_acorn_end_to_end(acorn_run: tuple[Path, dict]) -> None:
    reco, summary = acorn_run
    assert summary["efficiency"] > 0.8
    assert summary["fake_rate"] < 0.1
    with (reco / "timings.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    devices = {r["stage"]: r["device"] for r in rows}
    assert set(devices) == {s for s, _ in ACORN.steps}
    if torch.cuda.is_available():  # hardware run: the GPU stages name CUDA and the cell list
        assert devices["graph_construction"].startswith("cuda")
        assert "cell" in devices["graph_construction"]  # numba kernel, or torch gathers
    else:
        assert "k-d tree" in devices["graph_construction"]
        assert "CUDA unavailable" in devices["edge_classification"]
    assert json.loads((reco / "run.json").read_text())["pipeline"] == "acorn"


def test_cpu_and_gpu_backends_give_the_same_tracks(tiny_sim_dir: Path,
                                                   acorn_run: tuple[Path, dict]) -> None:
    ds = open_dataset(tiny_sim_dir)
    event = ds.read(ds.event_ids[0])
    cpu = Pipeline(ACORN.with_routing(ALL_CPU), ds.detector).run(event.cells.to_tensors())
    gpu = Pipeline(ACORN, ds.detector).run(event.cells.to_tensors())
    if torch.cuda.is_available():  # bf16 autocast on CUDA: nearly the same graph and tracks
        n_edges = len(cpu.tensors["edges.src"])
        assert abs(len(gpu.tensors["edges.src"]) - n_edges) <= 0.01 * n_edges
        assert len(_track_set(gpu.tensors) & _track_set(cpu.tensors)) \
            >= 0.97 * len(_track_set(cpu.tensors))
        return
    for name in ("edges.src", "edges.dst", "prototracks.offsets", "prototracks.indices",
                 "tracks.meas_offsets", "tracks.meas_indices"):
        np.testing.assert_array_equal(cpu.tensors[name], gpu.tensors[name], err_msg=name)
    np.testing.assert_allclose(cpu.tensors["edges.score"], gpu.tensors["edges.score"],
                               atol=1e-4)
    np.testing.assert_allclose(cpu.tensors["tracks.params"], gpu.tensors["tracks.params"],
                               rtol=1e-6, atol=1e-8)


def _track_set(tensors: dict[str, np.ndarray]) -> set[tuple[int, ...]]:
    """Each track's measurement indices, as a set of tuples."""
    offsets, indices = tensors["tracks.meas_offsets"], tensors["tracks.meas_indices"]
    return {tuple(sorted(indices[a:b])) for a, b in itertools.pairwise(offsets)}


def _first_clusters(tiny_sim_dir: Path, n: int) -> tuple[dict[str, np.ndarray], object]:
    """Cells of the event's first ``n`` clusters (so exactly ``n`` space points)."""
    from backends.cpu.clustering import CpuClustering

    ds = open_dataset(tiny_sim_dir)
    cells = ds.read(ds.event_ids[0]).cells.to_tensors()
    cluster = CpuClustering(ds.detector).run(cells)["clusters.cluster_id"]
    keep = cluster < n
    return {k: v[keep] for k, v in cells.items()}, ds.detector


@pytest.mark.parametrize("n", [0, 1, 2])
def test_degenerate_events_give_no_tracks(tiny_sim_dir: Path, n: int) -> None:
    cells, detector = _first_clusters(tiny_sim_dir, n)
    out = Pipeline(ACORN, detector).run(cells).tensors
    assert len(out["spacepoints.x"]) == n
    assert len(out["prototracks.offsets"]) - 1 == 0
    assert len(out["tracks.chi2"]) == 0


def test_no_edges_after_the_filter_cut(tiny_sim_dir: Path) -> None:
    ds = open_dataset(tiny_sim_dir)
    cells = ds.read(ds.event_ids[0]).cells.to_tensors()
    out = Pipeline(ACORN, ds.detector,
                   configs={"graph_construction": {"filter_cut": 1.0}}).run(cells).tensors
    assert len(out["spacepoints.x"]) > 100
    assert len(out["edges.src"]) == 0
    assert len(out["prototracks.offsets"]) - 1 == 0
    assert len(out["tracks.chi2"]) == 0


def test_train_command_parses(tmp_path: Path) -> None:
    """``taas train`` wires its options to taas.gnn.training (training itself: test_training)."""
    from taas.cli import build_parser

    args = build_parser().parse_args(["train", "--out", str(tmp_path), "--preset", "medium",
                                      "--train-events", "3", "--val-events", "1", "--seed", "7",
                                      "--install"])
    assert args.func.__name__ == "_cmd_train"
    assert (args.preset, args.train_events, args.val_events, args.seed, args.install) == \
        ("medium", 3, 1, 7, True)
    assert args.threads == 1
    assert not args.reproduce_shipped
