"""Noise hits in simulated events (``taas simulate --noise-fraction``, ``taas.events.noise``):
their share per event, how they read back, where they lie, what their clusters look like, the
option's checks, its manifest entry and its reproducibility."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from taas.cli import main as cli_main
from taas.detector.detector import Detector
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.events.noise import (
    GROUPS,
    add_noise_hits,
    generate_noise,
    noise_count,
    noise_rng,
)
from taas.events.simulation import check_simulated, simulate
from taas.metrics.truth_link import measurement_particles
from tests.conftest import TINY_EVENTS, TINY_SEED

FRACTION = 0.15
EVENT_FILES = ("cells", "measurements", "measurement-simhit-map", "hits", "particles")


@pytest.fixture(scope="module")
def noisy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_sim_dir``'s events (same seed, analog strips) with 15% noise, from the CLI."""
    out = tmp_path_factory.mktemp("tiny_noise")
    assert cli_main(["simulate", "--out", str(out), "--preset", "tiny", "--events",
                     str(TINY_EVENTS), "--seed", str(TINY_SEED), "--noise-fraction",
                     str(FRACTION), "-q"]) == 0
    return out


def _lines(directory: Path, event: int, name: str) -> list[str]:
    return (directory / f"event{event:09d}-{name}.csv").read_text().splitlines()


def test_noise_is_the_fraction_of_every_event_and_reads_back_as_particle_0(
        noisy_dir: Path, tiny_sim_dir: Path) -> None:
    noisy, clean = open_dataset(noisy_dir), open_dataset(tiny_sim_dir)
    assert noisy.event_ids == clean.event_ids
    for event_id in noisy.event_ids:
        event, plain = noisy.read(event_id), clean.read(event_id)
        pid = np.asarray(event.hits["particle_id"])
        noise = pid == 0
        assert not (np.asarray(plain.hits["particle_id"]) == 0).any()  # Fatras: no noise
        assert noise.sum() == noise_count(len(plain.hits), FRACTION) > 20
        assert abs(noise.mean() - FRACTION) <= 0.5 / len(pid)
        # the simulated hits are untouched: noise rows are appended after them
        assert not noise[:len(plain.hits)].any()
        np.testing.assert_array_equal(pid[:len(plain.hits)], plain.hits["particle_id"])
        hits = event.hits
        assert np.isnan(np.asarray(hits["tx"])[noise]).all()
        assert (np.asarray(hits["weight"])[noise] == 0).all()
        # every noise cell votes for particle 0, as the evaluation counts noise
        cell_hit = np.asarray(event.cells["hit_id"])
        ids = np.asarray(hits["hit_id"])
        measured = measurement_particles(cell_hit, np.searchsorted(ids, cell_hit), len(ids),
                                         hits)
        assert (measured[noise] == 0).all()
        assert (measured[~noise] != 0).all()
        for name in EVENT_FILES[:2]:
            lines = _lines(noisy_dir, event_id, name)
            assert lines[:len(_lines(tiny_sim_dir, event_id, name))] == \
                _lines(tiny_sim_dir, event_id, name)
        for name in EVENT_FILES[2:]:
            assert _lines(noisy_dir, event_id, name) == _lines(tiny_sim_dir, event_id, name)


def test_noise_lies_inside_its_modules_in_staircase_clusters(noisy_dir: Path) -> None:
    ds = open_dataset(noisy_dir)
    event = ds.read(ds.event_ids[0])
    det = event.detector
    noise = np.asarray(event.hits["particle_id"]) == 0
    rows = det.index_of(np.asarray(event.hits["module_key"])[noise])
    u, v = np.asarray(event.hits["ref_u"])[noise], np.asarray(event.hits["ref_v"])[noise]
    assert det.inside_bounds(rows, u, v).all()
    noise_ids = np.asarray(event.hits["hit_id"])[noise]
    cells = event.cells
    cell_hit = np.asarray(cells["hit_id"])
    for hit_id, row in zip(noise_ids, rows, strict=True):
        mine = cell_hit == hit_id
        ch0, ch1 = np.asarray(cells["ch0"])[mine], np.asarray(cells["ch1"])[mine]
        assert (np.asarray(cells["module_key"])[mine] == det.modules["module_key"][row]).all()
        assert det.channel_in_range(np.full(len(ch0), row), ch0, ch1).all()
        spans = np.ptp(ch0) + 1, np.ptp(ch1) + 1
        assert len(set(zip(ch0.tolist(), ch1.tolist(), strict=True))) == len(ch0)
        assert len(ch0) == spans[0] + spans[1] - 1


def test_generated_noise_follows_the_measured_sample(generic_detector: Detector) -> None:
    """Uniform over modules; per group the measured cells per hit; pixels analog, strips 1."""
    n = 20_000
    noise = generate_noise(generic_detector, n, np.random.default_rng(5))
    assert len(noise.row) == n
    volume = generic_detector.modules["volume_id"]
    counts = np.bincount(noise.cell_hit, minlength=n)
    for group in GROUPS:
        on_group = np.isin(volume[noise.row], group.volumes)
        share = np.isin(volume, group.volumes).mean()
        assert on_group.mean() == pytest.approx(share, abs=4 * np.sqrt(share / n))
        measured = np.asarray(group.cells_per_hit, float)
        mean = (measured * np.arange(1, len(measured) + 1)).sum() / measured.sum()
        assert counts[on_group].mean() == pytest.approx(mean, rel=0.05)
        values = noise.value[on_group[noise.cell_hit]]
        if group.value_mean is None:
            assert (values == 1.0).all()
        else:
            assert values.mean() == pytest.approx(group.value_mean, rel=0.05)
            assert values.min() > 0
    assert generic_detector.inside_bounds(noise.row, noise.u, noise.v).all()


def test_default_adds_nothing_and_the_manifest_records_the_fraction(
        noisy_dir: Path, tiny_sim_dir: Path, tmp_path: Path) -> None:
    assert json.loads((noisy_dir / "dataset.json").read_text())["noise_fraction"] == FRACTION
    assert json.loads((tiny_sim_dir / "dataset.json").read_text())["noise_fraction"] == 0.0
    assert check_simulated(noisy_dir, {"seed": TINY_SEED, "noise_fraction": FRACTION})
    with pytest.raises(ValueError, match="noise_fraction"):
        check_simulated(noisy_dir, {"noise_fraction": 0.0})
    old = json.loads((tiny_sim_dir / "dataset.json").read_text())
    del old["noise_fraction"]  # a manifest from before the option: no noise
    (tmp_path / "dataset.json").write_text(json.dumps(old))
    assert check_simulated(tmp_path, {"noise_fraction": 0.0}) == tmp_path
    for name in EVENT_FILES:  # a zero fraction leaves the files as they are
        shutil.copy(tiny_sim_dir / f"event000000000-{name}.csv", tmp_path)
    ds = open_dataset(tiny_sim_dir)
    assert add_noise_hits(tmp_path, 0, ds.read(0).detector, 0.0, noise_rng(1, 0)) == 0
    for name in EVENT_FILES:
        assert _lines(tmp_path, 0, name) == _lines(tiny_sim_dir, 0, name)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_fractions_are_refused(fraction: float, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"noise_fraction must be in \[0, 1\)"):
        simulate(tmp_path / "sim", events=1, vertices=1, particles_per_vertex=1, seed=1,
                 noise_fraction=fraction, progress=False)
    assert not (tmp_path / "sim").exists()
    assert cli_main(["simulate", "--out", str(tmp_path / "cli"), "-q",
                     "--noise-fraction", str(fraction)]) == 2
    assert "noise_fraction must be in [0, 1)" in capsys.readouterr().err


def test_same_seed_same_noise(noisy_dir: Path, tiny_sim_dir: Path, tmp_path: Path) -> None:
    """The noise of an event comes from (simulation seed, event number) alone: adding it to
    the noiseless event again gives the same files; another seed gives other noise."""
    ds = open_dataset(tiny_sim_dir)
    detector = ds.read(1).detector
    for seed, same in ((TINY_SEED, True), (TINY_SEED + 1, False)):
        work = tmp_path / str(seed)
        work.mkdir()
        for name in ("cells", "measurements"):
            shutil.copy(tiny_sim_dir / f"event000000001-{name}.csv", work)
        add_noise_hits(work, 1, detector, FRACTION, noise_rng(seed, 1))
        for name in ("cells", "measurements"):
            assert (_lines(work, 1, name) == _lines(noisy_dir, 1, name)) is same
