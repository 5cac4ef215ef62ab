"""Efficiency, fake and duplicate rates on the hand-made event; binomial intervals at the edges."""

from __future__ import annotations

import numpy as np
import pytest

from taas.errors import InputError
from taas.metrics.config import STYLES, MatchingConfig
from taas.metrics.matching import match_tracks
from taas.metrics.rates import (
    ONE_SIGMA,
    binomial_interval,
    binomial_rate,
    duplicate_rate,
    efficiency_histogram,
    fiducial_mask,
    rate_counts,
    rates_from_counts,
)
from taas.metrics.truth_link import particle_measurement_counts
from tests.metrics.metrics_cases import MEASUREMENT_PARTICLE, TRACKS, csr, hand_particles


def hand_counts(style: str) -> dict[str, int]:
    particles = hand_particles()
    cfg = MatchingConfig(style=style)
    ids = particles["particle_id"]
    n_meas = particle_measurement_counts(MEASUREMENT_PARTICLE, ids)
    offsets, indices = csr(TRACKS)
    match = match_tracks(offsets, indices, MEASUREMENT_PARTICLE, ids, n_meas, config=cfg)
    fid = fiducial_mask(particles.pt, particles.eta, particles["primary"], n_meas, cfg)
    assert fid.tolist() == [True, True, True, False, False]
    return rate_counts(match, ids, fid, cfg)


@pytest.mark.parametrize("style", STYLES)
def test_hand_made_event_rates(style):
    # in this event no track separates the styles (see metrics_cases)
    counts = hand_counts(style)
    assert counts == {
        "n_tracks_all": 7, "n_tracks": 6, "n_matched_tracks": 4, "n_fiducial_particles": 3,
        "n_reconstructed_particles": 2, "n_reconstructing_pairs": 3, "n_duplicated_particles": 1,
    }
    rates = rates_from_counts(counts)
    assert rates["efficiency"].value == pytest.approx(2 / 3)
    assert rates["fake_rate"].value == pytest.approx(2 / 6)
    assert rates["duplicate_rate"].value == pytest.approx(0.5)
    for r in rates.values():
        assert r.low <= r.value <= r.high


def test_short_tracks_reconstruct_nothing():
    # with min_track_measurements=2, T5 [9, 10] counts: 2 of particle 3's 4 (not > 0.5)
    # still reconstructs nothing, but it is a matched track (purity 1) under ATLAS
    particles = hand_particles()
    ids = particles["particle_id"]
    n_meas = particle_measurement_counts(MEASUREMENT_PARTICLE, ids)
    offsets, indices = csr(TRACKS)
    cfg = MatchingConfig(style="ATLAS", min_track_measurements=2)
    match = match_tracks(offsets, indices, MEASUREMENT_PARTICLE, ids, n_meas, config=cfg)
    fid = fiducial_mask(particles.pt, particles.eta, particles["primary"], n_meas, cfg)
    counts = rate_counts(match, ids, fid, cfg)
    assert counts["n_tracks"] == 7
    assert counts["n_matched_tracks"] == 5
    # under ATLAS a pure short track reconstructs its particle: particle 3 now counts
    assert counts["n_reconstructed_particles"] == 3


def test_fiducial_cuts_one_by_one():
    cfg = MatchingConfig(pt_min=1.0, eta_max=2.5, min_particle_measurements=3)
    pt = np.array([0.9, 1.0, 5.0, 5.0, 5.0])
    eta = np.array([0.0, 2.5, 2.6, 0.0, 0.0])
    primary = np.array([True, True, True, False, True])
    n = np.array([5, 3, 5, 5, 2])
    assert fiducial_mask(pt, eta, primary, n, cfg).tolist() == [False, True, False, False, False]
    assert fiducial_mask(pt, eta, primary, n, cfg, ignore=("pt",)).tolist() == \
        [True, True, False, False, False]
    assert fiducial_mask(pt, eta, primary, n, cfg, ignore=("eta",)).tolist() == \
        [False, True, True, False, False]
    all_particles = MatchingConfig(primary_only=False)
    assert fiducial_mask(pt, eta, primary, n, all_particles)[3]
    with pytest.raises(InputError, match="cannot ignore"):
        fiducial_mask(pt, eta, primary, n, cfg, ignore=("phi",))


@pytest.mark.parametrize("method", ["clopper_pearson", "wilson"])
def test_binomial_interval_at_zero_and_one(method):
    lo, hi = binomial_interval(0, 10, method=method)
    assert lo == 0.0
    assert 0.0 < hi < 0.3
    lo, hi = binomial_interval(10, 10, method=method)
    assert hi == 1.0
    assert 0.7 < lo < 1.0
    lo, hi = binomial_interval(0, 0, method=method)
    assert (lo, hi) == (0.0, 1.0)


def test_clopper_pearson_closed_forms():
    # at k = 0 the upper bound solves (1 - p)^n = alpha / 2
    alpha = 1 - ONE_SIGMA
    _, hi = binomial_interval(0, 20)
    assert hi == pytest.approx(1 - (alpha / 2) ** (1 / 20))
    lo, _ = binomial_interval(20, 20)
    assert lo == pytest.approx((alpha / 2) ** (1 / 20))
    # large n: close to the normal approximation
    lo, hi = binomial_interval(5000, 10000)
    assert (hi - lo) / 2 == pytest.approx(0.005, rel=0.01)
    r = binomial_rate(0, 0)
    assert np.isnan(r.value)
    assert r.to_dict()["value"] is None
    with pytest.raises(InputError):
        binomial_interval(3, 2)


def test_duplicate_rate_interval():
    r = duplicate_rate(12, 10)
    assert r.value == pytest.approx(0.2)
    assert r.low < 0.2 < r.high
    assert duplicate_rate(10, 10).low == 0.0
    assert np.isnan(duplicate_rate(0, 0).value)
    with pytest.raises(InputError):
        duplicate_rate(1, 2)


def test_efficiency_histogram():
    x = np.array([0.1, 0.2, 0.6, 0.7, 0.8, 5.0])
    passed = np.array([True, False, True, True, True, True])
    h = efficiency_histogram(x, passed, np.array([0.0, 0.5, 1.0, 2.0]))
    assert h["total"].tolist() == [2, 3, 0]
    assert h["passed"].tolist() == [1, 3, 0]
    assert h["efficiency"][:2].tolist() == [0.5, 1.0]
    assert np.isnan(h["efficiency"][2])
    assert h["high"][1] == 1.0
    assert h["low"][2] == 0.0
    assert h["high"][2] == 1.0
    with pytest.raises(InputError, match="increasing"):
        efficiency_histogram(x, passed, np.array([1.0, 0.0]))
