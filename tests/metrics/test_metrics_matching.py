"""Matching styles on hand-made tracks whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from taas.errors import InputError
from taas.metrics.config import STYLES, MatchingConfig
from taas.metrics.matching import match_tracks, measurement_weights
from taas.metrics.truth_link import particle_measurement_counts


def csr(tracks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.r_[0, np.cumsum([len(t) for t in tracks])].astype(np.int64)
    indices = np.array([i for t in tracks for i in t], np.int64)
    return offsets, indices


def run(tracks: list[list[int]], meas_particle: list[int], style: str, **kw):
    mp = np.array(meas_particle, np.uint64)
    ids = np.unique(mp[mp != 0])
    counts = particle_measurement_counts(mp, ids)
    offsets, indices = csr(tracks)
    return match_tracks(offsets, indices, mp, ids, counts, config=MatchingConfig(style=style),
                        **kw)


def pairs(m) -> dict[tuple[int, int], tuple[bool, bool]]:
    """(track, particle) -> (matched, reconstructs)."""
    return {(int(t), int(p)): (bool(a), bool(b)) for t, p, a, b in zip(
        m.pair_track, m.pair_particle, m.pair_matched, m.pair_reconstructs, strict=True)}


# Particle 1 has 8 measurements (0-7), particle 2 has 5 (8-12); 13-18 are six particles with
# one measurement each (3..8); 19 and 20 are noise.
MEAS = [1] * 8 + [2] * 5 + [3, 4, 5, 6, 7, 8] + [0, 0]


@pytest.mark.parametrize(("style", "matched", "reconstructs"), [
    ("ATLAS", True, True), ("one_way", True, False), ("two_way", False, False)])
def test_pure_but_incomplete_track(style, matched, reconstructs):
    # 3 of particle 1's 8 measurements + 1 other: purity 3/4 > 0.5, particle fraction 3/8 < 0.5
    m = run([[0, 1, 2, 13]], MEAS, style)
    assert m.majority_particle[0] == 1
    assert m.majority_hits[0] == 3
    assert m.purity[0] == pytest.approx(0.75)
    assert m.particle_fraction[0] == pytest.approx(3 / 8)
    assert m.matched[0] == matched
    assert pairs(m)[(0, 1)] == (matched, reconstructs)


@pytest.mark.parametrize(("style", "reconstructs"), [
    ("ATLAS", False), ("one_way", True), ("two_way", False)])
def test_complete_but_impure_track(style, reconstructs):
    # 4 of particle 2's 5 measurements + 6 singles: purity 0.4 (a fake), particle fraction 0.8
    m = run([[8, 9, 10, 11, 13, 14, 15, 16, 17, 18]], MEAS, style)
    assert m.majority_particle[0] == 2
    assert m.purity[0] == pytest.approx(0.4)
    assert not m.matched[0]
    assert m.matched_particle[0] == 0
    assert pairs(m)[(0, 2)] == (False, reconstructs)


@pytest.mark.parametrize("style", STYLES)
def test_pure_and_complete_track_matches_in_every_style(style):
    # 3 of particle 2's 5 + 2 others: purity 0.6, particle fraction 0.6
    m = run([[8, 9, 10, 13, 14]], MEAS, style)
    assert m.matched[0]
    assert m.matched_particle[0] == 2
    assert pairs(m)[(0, 2)] == (True, True)


@pytest.mark.parametrize("style", STYLES)
def test_exactly_half_is_not_a_match(style):
    # 2 of 4 from particle 1: purity 0.5 is not > 0.5 (ties would let two particles match)
    m = run([[0, 1, 8, 9]], MEAS, style)
    assert not m.matched.any()
    assert not m.pair_reconstructs.any()
    # the tie for majority goes to the smaller particle id
    assert m.majority_particle[0] == 1


@pytest.mark.parametrize("style", STYLES)
def test_noise_never_matches(style):
    m = run([[19, 20], [19, 20, 13]], MEAS, style)
    assert m.majority_particle[0] == 0  # noise only: no majority particle
    assert m.majority_particle[1] == 3  # noise is not a candidate
    assert m.purity[1] == pytest.approx(1 / 3)  # but noise counts in the denominator
    assert not m.matched.any()
    assert 0 not in m.pair_particle


def test_pixel_weight_changes_the_atlas_majority():
    # 2 pixel measurements of particle 1 and 3 strip measurements of particle 2:
    # unweighted particle 2 has 3/5; with pixels counted twice particle 1 has 4/7 > 0.5.
    is_pixel = np.zeros(len(MEAS), bool)
    is_pixel[:8] = True
    track = [[0, 1, 8, 9, 10]]
    plain = run(track, MEAS, "ATLAS")
    assert plain.matched_particle[0] == 2
    w = measurement_weights(is_pixel, 2.0, len(MEAS))
    weighted = run(track, MEAS, "ATLAS", measurement_weight=w)
    assert weighted.matched_particle[0] == 1
    assert weighted.purity[0] == pytest.approx(4 / 7)
    assert weighted.majority_hits[0] == 2


def test_empty_tracks_and_no_tracks():
    m = run([[], [0, 1, 2, 3, 4]], MEAS, "two_way")
    assert m.n_tracks == 2
    assert not m.matched[0]
    assert m.majority_particle[0] == 0
    assert m.matched[1]  # 5 of 8: purity 1, fraction 0.625
    none = run([], MEAS, "two_way")
    assert none.n_tracks == 0
    assert len(none.pair_track) == 0


def test_bad_inputs_are_refused():
    mp = np.array(MEAS, np.uint64)
    ids = np.unique(mp[mp != 0])
    counts = particle_measurement_counts(mp, ids)
    with pytest.raises(InputError, match="offsets"):
        match_tracks(np.array([0, 3]), np.array([0, 1]), mp, ids, counts)
    with pytest.raises(InputError, match="measurement index"):
        match_tracks(np.array([0, 1]), np.array([99]), mp, ids, counts)
    with pytest.raises(InputError, match="no measurement count"):
        match_tracks(np.array([0, 1]), np.array([0]), mp, ids[1:], counts[1:])
    with pytest.raises(InputError, match="has only"):
        match_tracks(np.array([0, 2]), np.array([0, 1]), mp, ids, np.ones_like(counts))


def test_config_validation_lists_valid_choices():
    with pytest.raises(InputError, match=r"\['ATLAS', 'one_way', 'two_way'\]"):
        MatchingConfig(style="three_way")
    with pytest.raises(InputError, match="matching_fraction"):
        MatchingConfig(matching_fraction=0.4)
    with pytest.raises(InputError, match="min_track_measurements"):
        MatchingConfig(min_track_measurements=0)
    with pytest.raises(InputError, match="integer"):
        MatchingConfig(min_particle_measurements=2.5)
    with pytest.raises(InputError, match="unknown keys"):
        MatchingConfig.from_dict({"stlye": "ATLAS"})
    cfg = MatchingConfig(style="ATLAS", pt_min=0.5)
    assert MatchingConfig.from_dict(cfg.to_dict()) == cfg
    assert MatchingConfig().style == "two_way"
