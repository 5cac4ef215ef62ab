"""Simulation in the real TrackML sample's solenoid field: the map ACTS is given reproduces
``SolenoidField`` (Bz and Br, both signs of z), the field read back from the simulated truth
is that solenoid (an independent check: Fatras' momenta turning between hits), the manifest
records it and the dataset's detector carries it into the track math."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taas.cli import main as cli_main
from taas.detector.field import TRACKML_SOLENOID, simulation_field
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.events.simulation import check_simulated, simulate, write_field_map_rz
from taas.metrics.field_probe import field_check, field_samples, fit_solenoid
from tests.conftest import TINY_SEED

acts = pytest.importorskip("acts", reason="the field map is read by ACTS")


@pytest.fixture(scope="module")
def solenoid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One event of 10 x 10 particles simulated in the TrackML solenoid."""
    return simulate(tmp_path_factory.mktemp("solenoid"), events=1, vertices=10,
                    particles_per_vertex=10, seed=TINY_SEED, field="trackml", progress=False)


def test_acts_reads_the_field_map_as_written(tmp_path: Path) -> None:
    path = write_field_map_rz(TRACKML_SOLENOID, tmp_path / "map.txt")
    field_map = acts.MagneticFieldMapRz(str(path))
    cache = field_map.makeCache(acts.MagneticFieldContext())
    rng = np.random.default_rng(4)
    points = np.stack([rng.uniform(-1000, 1000, 50), rng.uniform(-1000, 1000, 50),
                       rng.uniform(-3000, 3000, 50)], axis=1)
    bz, br = TRACKML_SOLENOID.bz_br(points)
    r = np.hypot(points[:, 0], points[:, 1])
    for point, want_bz, want_br, radius in zip(points, bz, br, r, strict=True):
        b = np.array(field_map.getField(acts.Vector3(*point), cache)) / acts.UnitConstants.T
        assert b[2] == pytest.approx(want_bz, abs=2e-3)
        # Br is odd in z (a quadrant map mirrored by ACTS would make it even)
        np.testing.assert_allclose(b[:2], want_br * point[:2] / radius, atol=2e-3)


def test_truth_of_a_solenoid_simulation_reads_back_as_the_solenoid(solenoid_dir: Path,
                                                                   tiny_sim_dir: Path) -> None:
    dataset = open_dataset(solenoid_dir)
    samples = field_samples(dataset.read(dataset.event_ids[0]))
    fitted = fit_solenoid(samples)
    assert fitted.bz_center == pytest.approx(TRACKML_SOLENOID.bz_center, abs=0.05)
    assert fitted.half_length == pytest.approx(TRACKML_SOLENOID.half_length, rel=0.1)
    assert fitted.fall_off == pytest.approx(TRACKML_SOLENOID.fall_off, rel=0.3)
    assert not field_check(samples, 2.0)["agrees"]  # the far end caps see far less than 2 T
    uniform = open_dataset(tiny_sim_dir)
    assert field_check(field_samples(uniform.read(uniform.event_ids[0])), 2.0)["agrees"]


def test_manifest_and_detector_carry_the_field(solenoid_dir: Path, tiny_sim_dir: Path,
                                               tmp_path: Path) -> None:
    assert json.loads((solenoid_dir / "dataset.json").read_text())["field"] == "trackml"
    assert open_dataset(solenoid_dir).detector.field == TRACKML_SOLENOID
    assert open_dataset(tiny_sim_dir).detector.field is None  # uniform: the configured bz
    assert check_simulated(solenoid_dir, {"field": "trackml"}) == solenoid_dir
    with pytest.raises(ValueError, match="field"):
        check_simulated(solenoid_dir, {"field": "uniform"})
    # a manifest naming a field taas does not know stops the reader, naming the file
    bad = tmp_path / "bad"
    bad.mkdir()
    for item in solenoid_dir.iterdir():
        if item.is_file():
            (bad / item.name).write_bytes(item.read_bytes())
    meta = json.loads((bad / "dataset.json").read_text())
    (bad / "dataset.json").write_text(json.dumps({**meta, "field": "toroid"}))
    with pytest.raises(InputError, match=r"dataset\.json.*toroid"):
        _ = open_dataset(bad).detector


def test_unknown_fields_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"unknown simulation field 'toroid'.*trackml"):
        simulation_field("toroid")
    with pytest.raises(ValueError, match="toroid"):
        simulate(tmp_path / "sim", events=1, vertices=1, particles_per_vertex=1, seed=1,
                 field="toroid", progress=False)
    assert not (tmp_path / "sim").exists()
    with pytest.raises(SystemExit):
        cli_main(["simulate", "--out", str(tmp_path / "cli"), "--field", "toroid"])
    assert "invalid choice: 'toroid'" in capsys.readouterr().err
