"""The field read back from truth: exact on analytic helices, 2 T on our simulation, and the
real TrackML sample's falling solenoid field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taas.detector.detector import Detector
from taas.edm.hits import Cells
from taas.edm.truth import Particles, TruthHits
from taas.events.dataset import open_dataset
from taas.events.event import Event
from taas.metrics.field_probe import field_check, field_samples
from taas.tracking.helix import K_FIELD
from tests.trackml_data import TRACKML_DIR, needs_trackml


def helix_event(detector: Detector, bz: float, pts: list[float], charges: list[float],
                radii: np.ndarray) -> Event:
    """Particles from the origin on analytic helices in a uniform ``bz``, one truth hit at
    each transverse chord ``radii`` while the helix still moves outwards."""
    hit_rows: dict[str, list[float]] = {n: [] for n in ("particle_id", "tx", "ty", "tz", "tpx",
                                                         "tpy", "tpz")}
    for k, (pt, q) in enumerate(zip(pts, charges, strict=True)):
        radius = pt / (K_FIELD * bz)  # mm
        phi0, pz = 0.3 * k, 0.4 * pt
        for rho in radii[radii < 2 * radius]:
            turn = -q * 2 * np.arcsin(rho / (2 * radius))  # momentum turns by twice the chord angle
            s = abs(turn) * radius
            # centre on the side the particle bends to
            cx, cy = radius * -q * -np.sin(phi0), radius * -q * np.cos(phi0)
            x = cx + radius * q * -np.sin(phi0 + turn)
            y = cy + radius * q * np.cos(phi0 + turn)
            for name, value in (("particle_id", k + 1), ("tx", x), ("ty", y),
                                ("tz", pz / pt * s), ("tpx", pt * np.cos(phi0 + turn)),
                                ("tpy", pt * np.sin(phi0 + turn)), ("tpz", pz)):
                hit_rows[name].append(value)
    n = len(hit_rows["tx"])
    zeros = np.zeros(n)
    hits = TruthHits(hit_id=np.arange(n, dtype=np.int64),
                     particle_id=np.asarray(hit_rows["particle_id"], np.uint64),
                     module_key=np.zeros(n, np.uint64), tt=zeros, weight=zeros, ref_u=zeros,
                     ref_v=zeros, **{k: np.asarray(v) for k, v in hit_rows.items()
                                     if k != "particle_id"})
    p = len(pts)
    particles = Particles(
        particle_id=np.arange(1, p + 1, dtype=np.uint64), particle_type=np.full(p, 211, np.int32),
        q=np.asarray(charges, np.float32), vx=np.zeros(p), vy=np.zeros(p), vz=np.zeros(p),
        vt=np.zeros(p), px=np.asarray(pts) * np.cos(0.3 * np.arange(p)),
        py=np.asarray(pts) * np.sin(0.3 * np.arange(p)), pz=0.4 * np.asarray(pts),
        m=np.full(p, 0.1396), vertex_id=np.zeros(p, np.int64), primary=np.ones(p, bool),
        nhits=np.zeros(p, np.int32))
    return Event(0, cells=Cells.empty(), hits=hits, particles=particles, detector=detector)


def test_uniform_field_read_back_exactly(generic_detector: Detector) -> None:
    radii = np.array([32.0, 72, 116, 172, 260, 360, 500, 660, 820, 1020])
    event = helix_event(generic_detector, 1.5, [1.0, 3.0, 0.9], [1.0, -1.0, -1.0], radii)
    samples = field_samples(event)
    # every consecutive pair at least 20 mm apart counts: 9 pairs per helix
    assert len(samples) == 27
    np.testing.assert_allclose(samples.bz, 1.5, rtol=1e-9)


def test_slow_particles_are_not_used(generic_detector: Detector) -> None:
    radii = np.array([100.0, 300, 500, 700, 900])
    event = helix_event(generic_detector, 2.0, [0.6, 1.2], [1.0, 1.0], radii)
    samples = field_samples(event)
    assert len(samples) == 4  # the 1.2 GeV particle's four pairs; the 0.6 GeV one is left out
    assert len(field_samples(event, min_pt=0.5)) == 8


def test_our_simulation_is_two_tesla(tiny_sim_dir: Path) -> None:
    dataset = open_dataset(tiny_sim_dir)
    samples = field_samples(dataset.read(dataset.event_ids[0]))
    assert len(samples) > 50
    assert abs(np.median(samples.bz) - 2.0) < 0.02
    assert field_check(samples, field=2.0, min_samples=5)["agrees"]


@needs_trackml
def test_trackml_sample_has_a_falling_solenoid_field() -> None:
    dataset = open_dataset(TRACKML_DIR)
    rows = field_samples(dataset.read(dataset.event_ids[0])).binned(
        np.array([0.0, 1100.0]), np.array([0.0, 600.0, 1200.0, 2000.0]))
    central, _, forward = (row["bz_median"] for row in rows)
    assert abs(central - 2.0) < 0.05
    assert forward < 1.7


def test_field_check_flags_a_field_off_the_assumed_one(generic_detector: Detector) -> None:
    radii = np.array([32.0, 72, 116, 172, 260, 360, 500, 660, 820, 1020])
    event = helix_event(generic_detector, 1.8, [1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 1.0, -1.0],
                        radii)
    samples = field_samples(event)
    assert field_check(samples, field=1.8, min_samples=5)["agrees"]
    check = field_check(samples, field=2.0, min_samples=5)  # 10% off
    assert not check["agrees"]
    assert check["bins"][0]["bz_median"] == pytest.approx(1.8)


@needs_trackml
def test_evaluation_reports_the_trackml_field(tmp_path: Path) -> None:
    """``evaluate_run`` on the real sample checks its truth against the field the track math
    uses there (the TrackML detector's fitted solenoid), which a uniform 2 T would fail."""
    from taas.pipeline.evaluation import evaluate_run
    from taas.pipeline.reconstruct import reconstruct
    from taas.pipeline.spec import PIPELINES

    reconstruct(TRACKML_DIR, tmp_path / "run", PIPELINES["cpu"], progress=False)
    summary = evaluate_run(TRACKML_DIR, tmp_path / "run", tmp_path / "eval")
    check = summary["field_from_truth"]
    assert check["assumed_field"].startswith("SolenoidField(")
    assert check["agrees"] is True
    assert max(abs(b["residual_median"]) for b in check["bins"]) < 0.05
    dataset = open_dataset(TRACKML_DIR)
    assert not field_check(field_samples(dataset.read(dataset.event_ids[0])), 2.0)["agrees"]
