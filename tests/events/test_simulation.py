"""ACTS simulation: outputs, reproducibility, presets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taas.detector.detector import Detector
from taas.errors import InputError
from taas.events.acts_csv import read_acts_event
from taas.events.presets import PRESETS, get_preset
from taas.events.simulation import check_simulated, simulate
from tests.conftest import TINY_SEED

EVENT_FILES = ("cells", "measurements", "measurement-simhit-map", "hits", "particles",
               "particles_simulated")


def _event_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("event*.csv"))}


def test_presets_sizes() -> None:
    sizes = {name: p.particles for name, p in PRESETS.items()}
    assert sizes == {"tiny": 50, "small": 500, "medium": 4000, "large": 16000}
    assert get_preset("small").vertices == 25
    with pytest.raises(InputError, match="tiny"):
        get_preset("huge")
    with pytest.raises(AttributeError):
        PRESETS["tiny"].vertices = 3  # type: ignore[misc]  # frozen


def test_outputs(tiny_sim_dir: Path, generic_detector: Detector) -> None:
    for event_id in range(2):
        for name in EVENT_FILES:
            assert (tiny_sim_dir / f"event{event_id:09d}-{name}.csv").is_file(), name
    saved = Detector.from_parquet(tiny_sim_dir / "detector.parquet")
    assert saved.modules.equals(generic_detector.modules)
    info = json.loads((tiny_sim_dir / "dataset.json").read_text())
    assert (info["seed"], info["events"], info["vertices"]) == (42, 2, 5)
    assert (tiny_sim_dir / "digitization.json").is_file()


def test_event_content(tiny_sim_dir: Path, generic_detector: Detector) -> None:
    event = read_acts_event(tiny_sim_dir, 0, generic_detector)
    p = event.particles
    assert len(p) == 50
    assert set(np.abs(p["particle_type"]).tolist()) == {13, 211}
    assert set(np.sign(p["q"]).tolist()) == {-1.0, 1.0}
    assert len(np.unique(p["vertex_id"])) == 5
    primary = p["primary"]
    assert primary.all()
    assert np.all((p.pt[primary] >= 0.5 - 1e-6) & (p.pt[primary] <= 10.0 + 1e-6))
    assert np.all(np.abs(p.eta[primary]) <= 2.5 + 1e-6)
    assert np.all(np.abs(p["vx"]) < 0.1)
    assert np.std(p["vz"]) > 1.0
    assert len(event.cells) > len(event.hits) > 5 * len(p)


def test_same_seed_reproduces_bytes(tiny_sim_dir: Path, tmp_path: Path) -> None:
    preset = PRESETS["tiny"]
    again = simulate(tmp_path / "again", events=2, vertices=preset.vertices,
                     particles_per_vertex=preset.particles_per_vertex, seed=42, progress=False)
    assert _event_bytes(again) == _event_bytes(tiny_sim_dir)


def test_other_seed_differs(tiny_sim_dir: Path, tmp_path: Path) -> None:
    preset = PRESETS["tiny"]
    other = simulate(tmp_path / "other", events=1, vertices=preset.vertices,
                     particles_per_vertex=preset.particles_per_vertex, seed=43, progress=False)
    name = "event000000000-cells.csv"
    assert (other / name).read_bytes() != (tiny_sim_dir / name).read_bytes()


def test_skip_reproduces_later_events(tiny_sim_dir: Path, tmp_path: Path) -> None:
    """Events depend on (seed, event number) only, so runs can be split into chunks."""
    preset = PRESETS["tiny"]
    part = simulate(tmp_path / "part", events=1, skip=1, vertices=preset.vertices,
                    particles_per_vertex=preset.particles_per_vertex, seed=42, progress=False)
    files = _event_bytes(part)
    assert files
    assert all(name.startswith("event000000001-") for name in files)
    full = _event_bytes(tiny_sim_dir)
    assert all(full[name] == data for name, data in files.items())


def test_rejects_empty_request(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        simulate(tmp_path, events=0, vertices=1, particles_per_vertex=1, seed=1)


def test_eta_range_reaches_the_inner_pixel_discs(tmp_path: Path, generic_detector: Detector,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``taas simulate --eta-max 4``: TrackML's forward particles, recorded in the manifest and
    leaving hits on the pixel end caps' discs; beyond the acceptance it stops with one line."""
    from taas.cli import main

    assert main(["simulate", "--out", str(tmp_path / "fwd"), "--vertices", "2",
                 "--particles-per-vertex", "50", "--seed", "5", "--eta-max", "4", "-q"]) == 0
    assert json.loads((tmp_path / "fwd" / "dataset.json").read_text())["eta_max"] == 4.0
    hits = read_acts_event(tmp_path / "fwd", 0, generic_detector).hits
    eta = np.arcsinh(hits["tz"] / np.hypot(hits["tx"], hits["ty"]))
    assert np.abs(eta).max() > 3.0  # |eta| 2.5 particles cannot reach it
    assert main(["simulate", "--out", str(tmp_path / "bad"), "--eta-max", "5"]) == 2
    assert "eta_max must be in (0, 4]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_log_pt_spectrum_fills_each_decade_alike(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``--pt-spectrum log --pt-range 0.1 10``: as many particles below 1 GeV as above (a flat
    spectrum over the same range puts 9% below), recorded in the manifest."""
    from taas.cli import main

    assert main(["simulate", "--out", str(tmp_path / "soft"), "--vertices", "4",
                 "--particles-per-vertex", "100", "--seed", "6", "--pt-range", "0.1", "10",
                 "--pt-spectrum", "log", "-q"]) == 0
    manifest = json.loads((tmp_path / "soft" / "dataset.json").read_text())
    assert (manifest["pt_spectrum"], manifest["pt_range_gev"]) == ("log", [0.1, 10.0])
    fired = pd.read_csv(tmp_path / "soft" / "event000000000-particles.csv")  # the gun's
    pt = np.hypot(fired["px"], fired["py"])
    assert len(pt) == 400
    assert 0.4 < np.mean(pt < 1.0) < 0.6  # binomial sigma 0.025
    assert pt.min() >= 0.1
    assert pt.max() <= 10.0
    assert check_simulated(tmp_path / "soft", {"pt_spectrum": "log"}) == tmp_path / "soft"
    assert main(["simulate", "--out", str(tmp_path / "bad"), "--pt-range", "2", "1"]) == 2
    assert "pt_range must be 0 < min < max" in capsys.readouterr().err


def test_material_travels_with_the_events(tiny_sim_dir: Path, tmp_path: Path) -> None:
    """The material table is saved beside the detector and reloaded without ACTS' help."""
    from taas.cli import main
    from taas.detector.material import MaterialTable
    from taas.events.dataset import open_dataset

    assert (tiny_sim_dir / "material.parquet").is_file()
    detector = open_dataset(tiny_sim_dir).detector
    assert isinstance(detector.material, MaterialTable)
    assert main(["convert", str(tiny_sim_dir), str(tmp_path / "pq"), "-q"]) == 0
    reloaded = open_dataset(tmp_path / "pq").detector.material
    assert isinstance(reloaded, MaterialTable)
    assert len(reloaded) == len(detector.material)


def test_check_simulated_names_what_differs(tiny_sim_dir: Path) -> None:
    want = {"seed": TINY_SEED, "vertices": 5, "particles_per_vertex": 10}
    assert check_simulated(tiny_sim_dir, want, min_events=2) == tiny_sim_dir
    assert check_simulated(str(tiny_sim_dir), {**want, "events": 2}) == tiny_sim_dir
    with pytest.raises(ValueError, match="does not hold"):
        check_simulated(tiny_sim_dir, {**want, "seed": TINY_SEED + 1})
    with pytest.raises(ValueError, match="does not hold 3 events"):
        check_simulated(tiny_sim_dir, want, min_events=3)
