"""Events given as space points without cells: readers, the space points formed from the hits,
the positions-only GNN models end to end, and the refusal of cell-feature models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.gnn.checkpoint import MODEL_SETS, SHIPPED, load_shipped
from taas.gnn.features import FEATURE_SETS, NODE_FEATURE_NAMES, node_features
from taas.gnn.positions import drop_cells
from taas.io.csv_table import read_csv_columns
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import reconstruct
from taas.pipeline.spec import ACORN
from taas.reco.hit_spacepoints import has_cells, spacepoint_inputs
from taas.stages.registry import resolve
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml


@pytest.fixture(scope="module")
def spacepoint_dir(tiny_sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny events without their cells files."""
    return drop_cells(tiny_sim_dir, tmp_path_factory.mktemp("tiny_spacepoints"))


def test_spacepoints_from_hits_match_acts_measurements(spacepoint_dir: Path) -> None:
    """Without cells, the reader gives no cells and one space point per ACTS measurement, at
    the global position ACTS wrote for it (measurements.csv ``global_*``: its own transform)."""
    ds = open_dataset(spacepoint_dir)
    event = ds.read(ds.event_ids[0])
    assert not has_cells(event)
    assert len(event.hits) > 0
    tensors = spacepoint_inputs(event)
    acts = read_csv_columns(spacepoint_dir / "event000000000-measurements.csv",
                            {"global_x": "f8", "global_y": "f8", "global_z": "f8"})
    xyz = np.stack([tensors[f"spacepoints.{c}"] for c in "xyz"], axis=1)
    reference = np.stack([acts[f"global_{c}"] for c in "xyz"], axis=1)
    # ACTS writes global_* in float precision (~1e-5 mm here); a pixel is 50 um wide
    np.testing.assert_allclose(xyz, reference, rtol=0, atol=1e-3)
    assert np.all(tensors["spacepoint_features.n_cells"] == 0)  # no cluster shape


def test_positions_features_are_the_position_columns_of_the_cell_set() -> None:
    rng = np.random.default_rng(3)
    sp = {name: rng.normal(size=7) for name in ("r", "phi", "z", "eta")}
    cf = {name: rng.normal(size=7) for name in ("n_cells", "charge", "extent_u", "extent_v",
                                                 "local_angle", "local_eta", "global_eta",
                                                 "global_phi")}
    cf["n_cells"] = np.abs(cf["n_cells"])
    full = node_features(sp, cf)
    positions = node_features(sp, {}, feature_set="positions")
    cols = [NODE_FEATURE_NAMES.index(n) for n in FEATURE_SETS["positions"]]
    np.testing.assert_array_equal(positions, full[:, cols])


def test_shipped_positions_models_record_their_feature_set() -> None:
    for name in SHIPPED:
        assert load_shipped(name, model_set="positions").feature_set == "positions"
        assert load_shipped(name).feature_set == "cells"


def test_cell_models_refuse_an_event_without_cells(spacepoint_dir: Path) -> None:
    ds = open_dataset(spacepoint_dir)
    stage = resolve("graph_construction", "cpu")(ds.detector, {"model_set": "cells"})
    with pytest.raises(InputError, match=r"needs cells.*positions-only models"):
        stage.run(spacepoint_inputs(ds.read(ds.event_ids[0])))
    with pytest.raises(ValueError, match="model_set"):
        resolve("graph_construction", "cpu")(ds.detector, {"model_set": "pixels"})


def test_acorn_reconstructs_tiny_events_from_space_points(spacepoint_dir: Path,
                                                          tmp_path: Path) -> None:
    reco = reconstruct(spacepoint_dir, tmp_path / "reco", ACORN, progress=False)
    run = json.loads((reco / "run.json").read_text())
    assert run["input"] == "spacepoints"
    assert run["skipped_stages"] == ["clustering", "spacepoints"]
    assert run["gnn_models"] == MODEL_SETS["positions"][1]
    summary = evaluate_run(spacepoint_dir, reco, tmp_path / "metrics")
    assert summary["n_fiducial_particles"] > 0
    assert summary["efficiency"] > 0.8  # against truth: the hits' particles
    assert summary["fake_rate"] < 0.1


@needs_trackml
def test_hits_only_trackml_event_reconstructs(tmp_path: Path) -> None:
    hits_only = drop_cells(TRACKML_DIR, tmp_path / "trackml")
    ds = open_dataset(hits_only)
    assert ds.format == "trackml"
    event = ds.read(TRACKML_EVENT_ID)
    assert not has_cells(event)
    # the space points are hits.csv's positions (on the module plane: within 10 um)
    hits = read_csv_columns(TRACKML_DIR / "event000000001-hits.csv.gz",
                            {"hit_id": "i8", "x": "f8", "y": "f8", "z": "f8"})
    rows = np.searchsorted(hits["hit_id"], event.hits["hit_id"])  # hits.csv is sorted by id
    tensors = spacepoint_inputs(event)
    for c in "xyz":
        np.testing.assert_allclose(tensors[f"spacepoints.{c}"], hits[c][rows], rtol=0, atol=0.01)
    reco = reconstruct(hits_only, tmp_path / "reco", ACORN, progress=False)
    run = json.loads((reco / "run.json").read_text())
    assert run["input"] == "spacepoints"
    assert run["sizes"][str(TRACKML_EVENT_ID)]["spacepoints"] == len(event.hits)
    summary = evaluate_run(hits_only, reco, tmp_path / "metrics")
    assert summary["n_fiducial_particles"] > 0
    assert 0.0 <= summary["efficiency"] <= 1.0
    assert summary["n_tracks"] > 0
