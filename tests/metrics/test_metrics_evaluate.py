"""evaluate_event / evaluate_events / metrics.json / plots, by hand and on the real sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taas.errors import InputError
from taas.metrics.config import MatchingConfig
from taas.metrics.evaluate import evaluate_event, evaluate_events, write_metrics
from taas.metrics.graph import edge_metrics
from taas.metrics.plots import write_plots
from taas.metrics.resolution import pulls
from tests.metrics.metrics_cases import MEASUREMENT_PARTICLE, TRACKS, csr, hand_particles
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml


def hand_result(config: MatchingConfig | None = None, **kw) -> dict:
    offsets, indices = csr(TRACKS)
    return evaluate_event(offsets, indices, MEASUREMENT_PARTICLE, hand_particles(), config, **kw)


def test_event_and_run_summary(tmp_path):
    r = hand_result(event_id=3)
    assert r["counts"]["n_fiducial_particles"] == 3
    assert r["rates"]["efficiency"]["value"] == pytest.approx(2 / 3)
    # particles kept for the histograms: every cut but pT or eta passed (particle 5 is secondary)
    assert r["particles"]["particle_id"].tolist() == [1, 2, 3, 4]
    assert r["particles"]["reconstructed"].tolist() == [True, True, False, True]

    s = evaluate_events([r, hand_result(event_id=4)])
    assert s["n_events"] == 2
    assert s["n_tracks"] == 12
    assert s["n_fiducial_particles"] == 6
    assert s["efficiency"] == pytest.approx(2 / 3)
    assert s["fake_rate"] == pytest.approx(1 / 3)
    assert s["duplicate_rate"] == pytest.approx(0.5)
    assert s["efficiency_err_low"] > 0
    assert s["efficiency_err_high"] > 0
    assert s["matching"] == MatchingConfig().to_dict()
    # vs pT the below-threshold particle 4 (0.6 GeV, reconstructed) shows up in its bin
    h = s["efficiency_vs_pt"]
    i = int(np.searchsorted(h["edges"], 0.6, side="right")) - 1
    assert (h["total"][i], h["passed"][i]) == (2, 2)
    assert sum(s["efficiency_vs_eta"]["total"]) == 6

    path = write_metrics(s, tmp_path)
    data = json.loads(path.read_text())
    for key in ("efficiency", "fake_rate", "duplicate_rate", "n_tracks",
                "n_fiducial_particles", "efficiency_err_low", "fake_rate_err_high"):
        assert key in data
    assert data["matching"]["style"] == "two_way"
    assert data["rates"]["efficiency"]["numerator"] == 4

    pngs = write_plots(s, tmp_path / "plots")
    assert [p.name for p in pngs] == ["efficiency_vs_pt.png", "efficiency_vs_eta.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_extras_are_aggregated(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    truth = np.zeros((n, 6))
    cov = np.broadcast_to(np.eye(6), (n, 6, 6))
    p = pulls(truth + rng.normal(size=(n, 6)), cov, truth)
    sp_particle = np.array([1, 1, 2, 2], np.uint64)
    xyz = np.array([[10, 0, 0], [20, 0, 0], [0, 10, 0], [0, 20, 0]], np.float64)
    g = edge_metrics(np.array([0, 2]), np.array([1, 0]), sp_particle=sp_particle, sp_xyz=xyz,
                     sp_module=np.arange(4), particle_ids=np.array([1, 2], np.uint64),
                     particle_vertex=np.zeros((2, 3)))
    results = [hand_result(track_pulls=p, graph=g, trackml_score=s) for s in (0.5, 0.7)]
    s = evaluate_events(results)
    assert s["pulls"]["d0"]["pull_n"] == 2 * n
    assert sum(s["pulls"]["qop"]["pull_hist"]) <= 2 * n
    assert s["graph"]["n_truth_edges"] == 4
    assert s["graph"]["efficiency"]["value"] == pytest.approx(0.5)
    assert s["graph"]["purity"]["value"] == pytest.approx(0.5)
    assert s["trackml_score"] == pytest.approx(0.6)
    write_metrics(s, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["graph"]["n_edges"] == 4
    assert [x.name for x in write_plots(s, tmp_path)][-1] == "pulls.png"


def test_mixed_configs_and_empty_runs_are_refused():
    with pytest.raises(InputError, match="different matching"):
        evaluate_events([hand_result(), hand_result(MatchingConfig(style="ATLAS"))])
    with pytest.raises(InputError, match="no event"):
        evaluate_events([])
    with pytest.raises(InputError, match="lacks"):
        write_metrics({"efficiency": 1.0}, "/nonexistent")


def test_empty_event_writes_nulls_and_empty_plots(tmp_path):
    from taas.edm import Particles

    r = evaluate_event(np.array([0]), np.zeros(0, np.int64), np.zeros(0, np.uint64),
                       Particles.empty())
    s = evaluate_events([r])
    assert s["efficiency"] is None
    assert s["n_fiducial_particles"] == 0
    write_metrics(s, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["efficiency"] is None
    assert len(write_plots(s, tmp_path)) == 2


def test_event_without_tracks():
    r = evaluate_event(np.array([0]), np.zeros(0, np.int64), MEASUREMENT_PARTICLE,
                       hand_particles())
    s = evaluate_events([r])
    assert s["efficiency"] == 0.0
    assert s["fake_rate"] is None  # no tracks: undefined, written as null
    assert s["duplicate_rate"] is None


@needs_trackml
def test_truth_tracks_on_the_real_sample(tmp_path):
    """Tracks built from truth (one per particle) are perfect in every style."""
    from taas.detector.trackml import load_trackml_detector
    from taas.events.trackml import read_trackml_event
    from taas.metrics.truth_link import measurement_particles

    event = read_trackml_event(TRACKML_DIR, TRACKML_EVENT_ID,
                               load_trackml_detector(TRACKML_DIR / "detectors.csv.gz"))
    # measurements = truth clusters: measurement i is the i-th hit in hit_id order
    sorted_ids = np.sort(event.hits["hit_id"])
    cluster = np.searchsorted(sorted_ids, event.cells["hit_id"])
    mp = measurement_particles(event.cells["hit_id"], cluster, len(sorted_ids), event.hits)
    order = np.argsort(event.hits["hit_id"])
    assert np.array_equal(mp, event.hits["particle_id"][order])
    real = np.flatnonzero(mp != 0)
    by_particle = real[np.argsort(mp[real], kind="stable")]
    _, starts = np.unique(mp[by_particle], return_index=True)
    offsets = np.r_[starts, len(by_particle)]
    for style in ("ATLAS", "one_way", "two_way"):
        cfg = MatchingConfig(style=style)
        s = evaluate_events([evaluate_event(offsets, by_particle, mp, event.particles, cfg)])
        assert s["n_fiducial_particles"] > 0
        assert s["efficiency"] == 1.0
        assert s["fake_rate"] == 0.0
        assert s["duplicate_rate"] == 0.0
    # halving every track: two_way needs > 50 % of the particle, so only the longer half of an
    # odd-length particle survives; ATLAS keeps both halves (pure) and counts duplicates.
    # (Every fiducial particle of the sample has >= 5 measurements: a first half always has
    # >= 3 and passes the track cut.)
    half = np.r_[offsets, (offsets[:-1] + offsets[1:] + 1) // 2]
    half = np.unique(half)
    atlas = evaluate_events([evaluate_event(half, by_particle, mp, event.particles,
                                            MatchingConfig(style="ATLAS"))])
    two = evaluate_events([evaluate_event(half, by_particle, mp, event.particles,
                                          MatchingConfig(style="two_way"))])
    assert atlas["efficiency"] == 1.0
    assert atlas["duplicate_rate"] > 0.5
    assert two["efficiency"] < 1.0
    assert two["duplicate_rate"] == 0.0
    write_metrics(two, tmp_path)
    write_plots(two, tmp_path)
