"""Pipeline runner and the reconstruct driver on real simulated events."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from taas.errors import TaasError
from taas.pipeline.reconstruct import load_reco, reconstruct
from taas.pipeline.spec import CPU, PipelineSpec, get_pipeline
from taas.stages.registry import UnknownStageError

FRONT_END = PipelineSpec("front_end", (("clustering", "cpu"), ("spacepoints", "cpu")))


def test_reconstruct_front_end(tiny_sim_dir, tmp_path):
    out = reconstruct(tiny_sim_dir, tmp_path / "reco", FRONT_END, progress=False)
    run = json.loads((out / "run.json").read_text())
    assert run["pipeline"] == "front_end"
    assert run["format"] == "acts-csv"
    with (out / "timings.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["stage"], r["backend"], r["device"]) for r in rows} == {
        ("clustering", "cpu", "cpu"), ("spacepoints", "cpu", "cpu")}
    assert len(rows) == 2 * len(run["sizes"])
    reco = load_reco(out, 0)
    # every cell got a cluster, every measurement a space point
    assert len(reco["clusters.cluster_id"]) == len(reco["cells.ch0"])
    assert len(reco["spacepoints.x"]) == len(reco["measurements.local_u"])
    assert run["sizes"]["0"]["measurements"] == len(reco["measurements.local_u"])
    assert np.isfinite(reco["spacepoints.r"]).all()


def test_routing_and_unknown_names():
    routed = CPU.with_routing({"clustering": "gpu"})
    assert routed.steps[0] == ("clustering", "gpu")
    with pytest.raises(TaasError, match="no stage"):
        CPU.with_routing({"bogus": "cpu"})
    with pytest.raises(TaasError, match="choose from"):
        get_pipeline("nope")


def test_missing_backend_is_named(tiny_sim_dir, tmp_path):
    spec = PipelineSpec("x", (("clustering", "tpu"),))
    with pytest.raises(UnknownStageError, match=r"clustering.*tpu.*available"):
        reconstruct(tiny_sim_dir, tmp_path / "reco", spec, progress=False)
