"""Greedy ambiguity resolution on hand-made track lists with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from backends.cpu.ambiguity import CpuAmbiguityResolution
from taas.edm import ProtoTracks, Tracks
from taas.tracking.ambiguity import AmbiguityConfig


def tracks(lists, chi2=None):
    n = len(lists)
    lengths = [len(x) for x in lists]
    chi2 = np.ones(n) if chi2 is None else np.asarray(chi2, float)
    return Tracks(module_key=np.zeros(n, np.uint64), params=np.zeros((n, 6)),
                  covariance=np.zeros((n, 6, 6)), chi2=chi2 * (2 * np.array(lengths) - 5),
                  ndf=2 * np.array(lengths) - 5,
                  meas_offsets=np.concatenate([[0], np.cumsum(lengths)]),
                  meas_indices=np.concatenate([np.asarray(x) for x in lists]) if n else [])


def resolve(lists, chi2=None, **cfg):
    stage = CpuAmbiguityResolution(None, AmbiguityConfig(**cfg))
    out = ProtoTracks.from_tensors(stage.run(tracks(lists, chi2).to_tensors()))
    o, i = out["offsets"], out["indices"]
    return [i[o[k]:o[k + 1]].tolist() for k in range(len(out))]


def test_disjoint_tracks_all_survive():
    lists = [list(range(8)), list(range(10, 18)), list(range(20, 27))]
    assert resolve(lists) == lists


def test_duplicate_with_worse_chi2_is_removed():
    a = list(range(8))
    b = list(range(8))  # the same particle found from another seed
    assert resolve([a, b], chi2=[2.0, 1.0]) == [b]
    assert resolve([a, b], chi2=[1.0, 2.0]) == [a]


def test_higher_shared_fraction_goes_first():
    a = list(range(10))                   # 10 measurements, 4 shared with b
    b = [0, 1, 2, 3, 20, 21, 22]          # 7 measurements, 4 shared: larger fraction
    assert resolve([a, b], max_shared=3) == [a]
    # allowing four shared measurements keeps both
    assert resolve([a, b], max_shared=4) == [a, b]


def test_removal_frees_the_others():
    # b shares with a and c; removing b leaves a and c sharing nothing
    a = list(range(8))
    c = list(range(20, 28))
    b = [0, 1, 2, 3, 20, 21, 22, 23]
    assert resolve([a, b, c], max_shared=3) == [a, c]


def test_short_tracks_and_empty_input():
    assert resolve([[1, 2, 3], list(range(10, 20))], min_measurements=7) == [list(range(10, 20))]
    assert resolve([]) == []


def test_config_validation():
    with pytest.raises(ValueError, match="max_shared"):
        AmbiguityConfig(max_shared=-1)


def reference_greedy(lists, quality, max_shared):
    """The greedy rule written plainly: remove the worst sharer until none shares too much."""
    alive = [True] * len(lists)
    while True:
        users = {}
        for t, lst in enumerate(lists):
            if alive[t]:
                for m in lst:
                    users[m] = users.get(m, 0) + 1
        worst, key = None, None
        for t, lst in enumerate(lists):
            shared = sum(users[m] > 1 for m in lst) if alive[t] else 0
            if alive[t] and shared > max_shared:
                k = (shared / len(lst), quality[t])
                if key is None or k > key:
                    worst, key = t, k
        if worst is None:
            return alive
        alive[worst] = False


def test_matches_plain_greedy_rule_on_random_overlaps():
    from taas.tracking.ambiguity import greedy_select

    rng = np.random.default_rng(12)
    for _ in range(20):
        lists = [rng.choice(60, rng.integers(7, 14), replace=False) for _ in range(40)]
        quality = rng.random(40)
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
        alive = greedy_select(offsets, np.concatenate(lists), quality, 60, 3, 10**6)
        assert alive.tolist() == reference_greedy(lists, quality, 3)
