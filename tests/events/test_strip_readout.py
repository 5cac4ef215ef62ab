"""Binary strip readout: simulated binary strips against the analog simulation of the same
seed, the option in the manifest and the CLI, and the pipeline's choice of GNN models by the
strip cells an event carries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taas.cli import main as cli_main
from taas.detector.acts_generic import STRIP_VOLUMES, digitization_entries
from taas.detector.detector import Detector
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.events.presets import PRESETS
from taas.events.simulation import check_simulated, simulate
from taas.gnn import checkpoint
from taas.gnn.binary_strips import BINARY_STRIPS_DATA
from taas.gnn.checkpoint import DEFAULT_MODEL_SET, MODEL_SETS, SHIPPED, load_shipped
from taas.io.csv_table import read_csv_columns
from taas.pipeline.reconstruct import reconstruct, strip_readout
from taas.pipeline.spec import ACORN
from tests.conftest import TINY_SEED

CELL_COLUMNS = {"geometry_id": "u8", "channel0": "i8", "channel1": "i8", "value": "f8"}


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first event of ``tiny_sim_dir`` (same seed) simulated with binary strips."""
    preset = PRESETS["tiny"]
    return simulate(tmp_path_factory.mktemp("tiny_binary"), events=1, vertices=preset.vertices,
                    particles_per_vertex=preset.particles_per_vertex, seed=TINY_SEED,
                    strip_readout="binary", progress=False)


def _cells(directory: Path) -> dict[str, np.ndarray]:
    cells = read_csv_columns(directory / "event000000000-cells.csv", CELL_COLUMNS)
    cells["volume"] = (cells["geometry_id"] >> np.uint64(56)).astype(np.int64)
    return cells


def test_binary_strips_read_one_and_pixels_stay_analog(binary_dir: Path,
                                                       tiny_sim_dir: Path) -> None:
    """Same seed, same Fatras hits, same fired channels: the strip cells read exactly 1.0
    where the analog readout gives path lengths; the pixel cells are the analog ones."""
    binary, analog = _cells(binary_dir), _cells(tiny_sim_dir)
    for column in ("geometry_id", "channel0", "channel1"):
        np.testing.assert_array_equal(binary[column], analog[column])
    strips = np.isin(binary["volume"], STRIP_VOLUMES)
    assert strips.sum() > 50
    assert (~strips).sum() > 50
    assert np.all(binary["value"][strips] == 1.0)
    assert np.median(analog["value"][strips]) < 0.5  # analog strips: path lengths (mm)
    np.testing.assert_array_equal(binary["value"][~strips], analog["value"][~strips])
    assert np.mean(binary["value"][~strips] == 1.0) < 0.01


def test_digitization_config_is_digital_on_strips_only(generic_detector: Detector) -> None:
    for readout in ("analog", "binary"):
        for entry in digitization_entries(generic_detector, strip_readout=readout):
            digital = entry["value"]["geometric"]["digital"]
            assert digital == (readout == "binary" and entry["volume"] in STRIP_VOLUMES)


def test_manifest_records_the_readout(binary_dir: Path, tiny_sim_dir: Path,
                                      tmp_path: Path) -> None:
    assert json.loads((binary_dir / "dataset.json").read_text())["strip_readout"] == "binary"
    assert json.loads((tiny_sim_dir / "dataset.json").read_text())["strip_readout"] == "analog"
    assert check_simulated(binary_dir, {"seed": TINY_SEED, "strip_readout": "binary"})
    with pytest.raises(ValueError, match="strip_readout"):
        check_simulated(binary_dir, {"strip_readout": "analog"})
    # a manifest from before the option: analog strips
    old = json.loads((tiny_sim_dir / "dataset.json").read_text())
    del old["strip_readout"]
    (tmp_path / "dataset.json").write_text(json.dumps(old))
    assert check_simulated(tmp_path, {"strip_readout": "analog"}) == tmp_path


def test_bad_readout_is_refused(generic_detector: Detector, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"strip_readout.*'digital'.*\['analog', 'binary'\]"):
        simulate(tmp_path / "sim", events=1, vertices=1, particles_per_vertex=1, seed=1,
                 strip_readout="digital", progress=False)
    assert not (tmp_path / "sim").exists()
    with pytest.raises(ValueError, match="strip_readout"):
        digitization_entries(generic_detector, strip_readout="Binary")
    with pytest.raises(SystemExit):
        cli_main(["simulate", "--out", str(tmp_path / "cli"), "--strip-readout", "digital"])
    assert "invalid choice: 'digital'" in capsys.readouterr().err


def test_strip_readout_is_seen_in_the_cells(binary_dir: Path, tiny_sim_dir: Path) -> None:
    for directory, expected in ((binary_dir, "binary"), (tiny_sim_dir, "analog")):
        ds = open_dataset(directory)
        assert strip_readout(ds.read(ds.event_ids[0])) == expected


@pytest.mark.parametrize(("events", "configs", "model_set", "readout"), [
    ("binary", {}, "binary_strips", "binary"),
    ("analog", {}, DEFAULT_MODEL_SET, "analog"),
    ("binary", {"model_set": DEFAULT_MODEL_SET}, DEFAULT_MODEL_SET, "binary"),
], ids=["binary-picks-binary_strips", "analog-keeps-default", "explicit-model_set-wins"])
def test_reconstruct_picks_models_by_strip_readout(
        events: str, configs: dict[str, str], model_set: str, readout: str, binary_dir: Path,
        tiny_sim_dir: Path, tmp_path: Path) -> None:
    directory = binary_dir if events == "binary" else tiny_sim_dir
    spec = ACORN.with_configs({"graph_construction": configs, "edge_classification": configs})
    run = json.loads((reconstruct(directory, tmp_path / "reco", spec, progress=False)
                      / "run.json").read_text())
    assert run["strip_readout"] == readout
    assert run["gnn_models"] == MODEL_SETS[model_set][1]
    chosen = run["stage_configs"].get("graph_construction", {}).get("model_set")
    assert (chosen or DEFAULT_MODEL_SET) == model_set


def test_shipped_binary_strips_models_record_their_data() -> None:
    """The shipped set says what it was trained on (binary strips, seeds, no local path) and
    keeps the cells feature set, so the cells pipeline's features feed it unchanged."""
    for name in SHIPPED:
        ckpt = load_shipped(name, model_set="binary_strips")
        assert ckpt.metadata["data"] == BINARY_STRIPS_DATA
        assert ckpt.feature_set == load_shipped(name).feature_set == "cells"
        assert "/tmp" not in json.dumps(ckpt.metadata, default=str)


def test_install_model_set_copies_a_training_run(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    trained = tmp_path / "run"
    trained.mkdir()
    for name in (*(f"{n}.pt" for n in SHIPPED), "metrics.json"):
        (trained / name).write_text(name)
    monkeypatch.setattr(checkpoint, "shipped_dir", lambda model_set: tmp_path / model_set)
    target = checkpoint.install_model_set(trained, "binary_strips")
    assert target == tmp_path / "binary_strips"
    assert sorted(p.read_text() for p in target.iterdir()) == sorted(
        p.read_text() for p in trained.iterdir())
    (trained / "gnn.pt").unlink()
    with pytest.raises(FileNotFoundError):
        checkpoint.install_model_set(trained, "binary_strips")
