"""Served pipelines for events given as space points (no cells), against a real tritonserver.

One server for the file, on a repository holding ``pipeline_acorn`` and, built with
``spacepoints=True``, ``pipeline_acorn_spacepoints``: a hits-only event (the ``tiny`` events
without their cells files) reconstructed through ``taas reconstruct --server`` must give the
tracks the in-process pipeline gives, and a pipeline whose space-point model the server lacks
(acorn_traccc) must say which model is missing and how to build it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.pipeline.reconstruct import (
    FRONT_END_STAGES,
    load_reco,
    reconstruct,
    spacepoint_pipeline,
)
from taas.pipeline.spec import ACORN, ACORN_TRACCC, CPU, FPGA
from taas.reco.hit_spacepoints import event_inputs, spacepoint_inputs
from taas.reco.stages import ClusteringStage, SpacepointStage
from taas.service.graph import PipelineGraph
from taas.service.model_repo import build_model_repository, serves_spacepoints
from tests.service.conftest import start_server

pytestmark = pytest.mark.triton

SPACEPOINT_MODEL = "pipeline_acorn_spacepoints"


@pytest.fixture(scope="module")
def spacepoint_dir(tiny_sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny events without their cells files: given as space points."""
    from taas.gnn.positions import drop_cells

    return drop_cells(tiny_sim_dir, tmp_path_factory.mktemp("tiny_spacepoints"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_sim_dir: Path) -> Path:
    """acorn's whole-pipeline models only (no stage models, no ensembles): the cheapest
    repository that holds a cell model and its space-point model."""
    return build_model_repository(tmp_path_factory.mktemp("spacepoint_repo"),
                                  detector_path=tiny_sim_dir / "detector.parquet",
                                  stages=[], pipelines=[ACORN], ensembles=False,
                                  spacepoints=True)


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[object]:
    triton = start_server(repo)
    try:
        yield triton
    finally:
        triton.stop()


def test_spacepoint_pipeline_is_the_pipeline_after_its_front_end() -> None:
    for spec in (ACORN, ACORN_TRACCC, CPU):
        derived = spacepoint_pipeline(spec)
        assert derived.name == f"{spec.name}_spacepoints"
        assert derived.steps == tuple(s for s in spec.steps if s[0] not in FRONT_END_STAGES)
        assert set(derived.accel_stages) <= {stage for stage, _ in derived.steps}
        for stage, _ in derived.steps:  # the GNN stages on the positions-only models
            want = dict(spec.stage_configs.get(stage, {}))
            if stage in ("graph_construction", "edge_classification"):
                want["model_set"] = "positions"
            assert dict(derived.stage_configs.get(stage, {})) == want, stage
    assert spacepoint_pipeline(ACORN).steps[0] == ("graph_construction", "gpu")
    assert not serves_spacepoints(FPGA)  # its emulated blocks know the cell models only
    assert not serves_spacepoints(spacepoint_pipeline(ACORN))  # no front end left to drop


def test_the_front_end_is_what_space_points_stand_in_for(spacepoint_dir: Path) -> None:
    """The derived pipelines leave out exactly the stages the in-process runner skips for such
    events, and what they need besides their own outputs the event has (no cells)."""
    dataset = open_dataset(spacepoint_dir)
    given = set(spacepoint_inputs(dataset.read(dataset.event_ids[0])))
    assert given == {s.name for s in (*ClusteringStage.OUTPUTS, *SpacepointStage.OUTPUTS)}
    for spec in (ACORN, ACORN_TRACCC):
        inputs = {s.name for s in PipelineGraph.from_steps(spacepoint_pipeline(spec).steps)
                  .inputs}
        assert inputs <= given, spec.name
        assert {"spacepoints.x", "measurements.local_u"} <= inputs  # the fit needs measurements


def test_the_spacepoint_model_is_opt_in(repo: Path, tiny_sim_dir: Path,
                                        tmp_path: Path) -> None:
    assert sorted(p.parent.name for p in repo.glob("*/config.pbtxt")) == [
        "pipeline_acorn", SPACEPOINT_MODEL]
    default = build_model_repository(tmp_path / "default",
                                     detector_path=tiny_sim_dir / "detector.parquet",
                                     stages=[], pipelines=[CPU], ensembles=False)
    assert [p.parent.name for p in default.glob("*/config.pbtxt")] == ["pipeline_cpu"]


def test_the_spacepoint_model_takes_no_cells(server) -> None:
    from taas.service.client import ModelClient

    with ModelClient(SPACEPOINT_MODEL, server.url) as client:
        inputs = [s.name for s in client.inputs]
    assert inputs  # space points, measurements, their (all-zero) shape features
    assert not [name for name in inputs if name.startswith("cells.")]
    assert inputs == [s.name for s in PipelineGraph.from_steps(
        spacepoint_pipeline(ACORN).steps).inputs]


def test_served_hits_only_events_match_in_process(server, spacepoint_dir: Path,
                                                  tmp_path: Path) -> None:
    from taas.cli import main

    served = tmp_path / "served"
    assert main(["reconstruct", "--events", str(spacepoint_dir), "--pipeline", "acorn",
                 "--out", str(served), "--server", server.url, "-q"]) == 0
    direct = reconstruct(spacepoint_dir, tmp_path / "direct", ACORN, progress=False)
    run = json.loads((served / "run.json").read_text())
    assert run["served_models"] == [SPACEPOINT_MODEL]
    assert run["service"]["models"] == [SPACEPOINT_MODEL]
    assert run["input"] == "spacepoints"
    assert run["skipped_stages"] == json.loads((direct / "run.json").read_text())[
        "skipped_stages"] == ["clustering", "spacepoints"]
    n_tracks = 0
    for event_id in open_dataset(spacepoint_dir).event_ids:
        got, want = load_reco(served, event_id), load_reco(direct, event_id)
        assert {k for k in got if k.startswith("tracks.")} == \
            {k for k in want if k.startswith("tracks.")}
        for name, array in got.items():  # inputs and every tensor the model returned
            assert array.dtype == want[name].dtype, name
            assert np.array_equal(array, want[name], equal_nan=array.dtype.kind == "f"), name
        n_tracks += len(got["tracks.chi2"])
    assert n_tracks > 0


def test_a_cell_model_names_what_the_event_lacks(server, spacepoint_dir: Path) -> None:
    from taas.service.client import RemotePipeline

    dataset = open_dataset(spacepoint_dir)
    served = RemotePipeline("acorn", server.url)
    try:
        with pytest.raises(InputError, match=r"cells\..*pipeline_<name>_spacepoints"):
            served.run(event_inputs(dataset.read(dataset.event_ids[0])))
    finally:
        served.close()


def test_a_missing_spacepoint_model_says_how_to_build_it(server, spacepoint_dir: Path,
                                                        tmp_path: Path, capsys) -> None:
    from taas.cli import main
    from taas.service.client import ModelNotServedError, RemotePipeline

    with pytest.raises(ModelNotServedError,
                       match=r"has no model pipeline_acorn_traccc_spacepoints .*space points.*"
                             r"--pipelines acorn_traccc --spacepoints"):
        RemotePipeline("acorn_traccc_spacepoints", server.url)
    assert main(["reconstruct", "--events", str(spacepoint_dir), "--pipeline", "acorn_traccc",
                 "--out", str(tmp_path / "reco"), "--server", server.url, "-q"]) == 2
    error = capsys.readouterr().err
    assert "has no model pipeline_acorn_traccc_spacepoints" in error
    assert "taas model-repo build REPO --detector DETECTOR --pipelines acorn_traccc " \
           "--spacepoints" in error
    assert "not ready" not in error  # the server is fine: the model is what is missing
