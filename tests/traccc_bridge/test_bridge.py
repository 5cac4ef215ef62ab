"""The bridge on hand-made proto-tracks: toy barrel tracks with known truth, listed out of
order, with repeats, shared hits, too few hits, and an empty event."""

from __future__ import annotations

import numpy as np
import pytest

from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import ProtoTracks
from taas.errors import InputError
from taas.seeding.triplets import find_seeds
from taas.tracking.arrays import HOST
from taas.tracking.fitter import fit_prototracks
from taas.tracking.parameters import PHI, QOP, wrap_phi
from tests.traccc_bridge.bridge_toy import spacepoints_of
from tests.tracking.toy import barrel_detector, generate_particles, measure, simulate
from traccc_bridge.bridge import (
    layer_keys,
    seed_prototracks,
    seed_triplets,
    sort_by_surface,
    traccc_covariance,
    unique_lists,
)
from traccc_bridge.config import TracccSeedingConfig

N_TRACKS = 40
#: one seed per proto-track, none supplementary (those have their own tests)
PROTO_ONLY = TracccSeedingConfig(supplementary_seeding="none", seeds_per_prototrack=1)


@pytest.fixture(scope="module")
def toy():
    """40 toy tracks through the 10 barrel layers; measurements and proto-tracks shuffled."""
    rng = np.random.default_rng(7)
    detector = barrel_detector()
    truth = simulate(detector, generate_particles(N_TRACKS, rng), rng)
    measurements, prototracks = measure(detector, truth, rng)
    return detector, truth, measurements, prototracks, spacepoints_of(detector, measurements)


def truth_row(truth, measurements: Measurements, detector, prototracks: ProtoTracks,
              track: int) -> int:
    """The toy particle of a proto-track: the one crossing all of its measurements' modules."""
    lo, hi = prototracks["offsets"][track:track + 2]
    rows = detector.index_of(measurements["module_key"][prototracks["indices"][lo:hi]])
    return int(np.argmax(np.isin(truth.rows, rows).sum(axis=1)))


@pytest.mark.parametrize("where", ["numpy", "torch"])
def test_sort_by_surface_keeps_each_surface_contiguous(where):
    arrays = HOST
    if where == "torch":
        torch = pytest.importorskip("torch")
        from taas.tracking.batched.torch_arrays import TorchArrays

        arrays = TorchArrays(torch.device("cpu"))
    rows = np.array([5, 3, 5, 1, 3, 5, 9], np.int64)
    u = np.array([0.5, 0.1, -0.2, 0.0, 0.1, 0.3, 0.0])
    v = np.array([0.0, 0.2, 0.0, 0.0, -0.1, 0.0, 0.0])
    order, surfaces, offsets = (arrays.download(a) for a in sort_by_surface(
        arrays, *(arrays.upload(a) for a in (rows, u, v))))
    np.testing.assert_array_equal(order, [3, 4, 1, 2, 5, 0, 6])  # by u, then v, per surface
    np.testing.assert_array_equal(surfaces, [1, 3, 5, 9])
    np.testing.assert_array_equal(offsets, [0, 1, 3, 6, 7])
    for i, row in enumerate(surfaces):
        assert np.all(rows[order[offsets[i]:offsets[i + 1]]] == row)
    empty = np.zeros(0)
    order, surfaces, offsets = (arrays.download(a) for a in sort_by_surface(
        arrays, *(arrays.upload(a) for a in (np.zeros(0, np.int64), empty, empty))))
    assert len(order) == len(surfaces) == 0
    np.testing.assert_array_equal(offsets, [0])


def test_unique_lists_drops_repeats_within_a_list_only():
    offsets, indices = unique_lists(np.array([0, 4, 6, 6]), np.array([3, 1, 3, 2, 3, 3]))
    np.testing.assert_array_equal(offsets, [0, 3, 4, 4])
    np.testing.assert_array_equal(indices, [3, 1, 2, 3])


def test_triplet_spans_first_middle_last_layer_of_shuffled_lists(toy):
    detector, _truth, meas, protos, sps = toy
    layers = layer_keys(detector, detector.index_of(meas["module_key"]))
    triplets, z_vertex = seed_triplets(protos, sps, layers, n_triplets=8)
    assert triplets.shape == (N_TRACKS, 8, 3)
    # the toy has 10 barrel layers: bottom, middle and top are layers 1, 6 and 10 (ACTS);
    # then the inner half 1, 3, 5; the outer half 5, 8, 10; then 2, 6, 9; 3, 6, 8; 4, 6, 7;
    # the seventh has no three distinct layers left
    layer_id = detector.modules["layer_id"][detector.index_of(
        meas["module_key"][sps["measurement_index"][triplets[:, :6]]].reshape(-1))]
    assert np.all(layer_id.reshape(-1, 6, 3) == [[1, 6, 10], [1, 3, 5], [5, 8, 10],
                                                 [2, 6, 9], [3, 6, 8], [4, 6, 7]])
    assert np.all(triplets[:, 6:] == -1)
    # particles come from the origin: the line fit's vertex z is near 0 (10-50 um hits)
    assert np.all(np.abs(z_vertex) < 2.0)


def test_repeats_shared_hits_and_short_lists(toy):
    detector, _truth, meas, protos, sps = toy
    idx, off = protos["indices"], protos["offsets"]
    a, b = idx[off[0]:off[1]], idx[off[1]:off[2]]
    lists = [
        np.r_[a, a[:4]],  # repeated hits: the same seed as the clean list
        np.r_[b[:5], a[5:]],  # two particles merged, sharing hits with the first list
        a[:1],  # one hit
        a[:2],  # two hits: two layers only
        np.r_[a[:2], a[:2]],  # two hits, repeated: still two layers
    ]
    custom = ProtoTracks(offsets=np.r_[0, np.cumsum([len(x) for x in lists])],
                         indices=np.concatenate(lists))
    out = seed_prototracks(detector, meas, sps, custom, PROTO_ONLY)
    np.testing.assert_array_equal(out.prototrack, [0, 1])  # the short ones give no seed
    clean = seed_prototracks(detector, meas, sps, ProtoTracks(offsets=off[:2], indices=a),
                             PROTO_ONLY)
    # more triplets per proto-track: every proto-track's first, then every second one
    more = seed_prototracks(detector, meas, sps, custom,
                            TracccSeedingConfig(supplementary_seeding="none"))
    np.testing.assert_array_equal(more.prototrack[:3], [0, 1, 0])  # a: 10 layers, 3 triplets
    assert np.count_nonzero(more.prototrack == 0) == 3
    assert np.all(np.diff(more.seeds["quality"]) <= 0)
    np.testing.assert_array_equal(out.seeds["spacepoints"][0], clean.seeds["spacepoints"][0])
    np.testing.assert_allclose(out.starts.params[0], clean.starts.params[0])
    # each seed's measurement list: its proto-track without repeats; shared hits in both
    lists_out = np.split(out.seed_indices, out.seed_offsets[1:-1])
    assert sorted(lists_out[0]) == sorted(a)
    assert sorted(lists_out[1]) == sorted(np.r_[b[:5], a[5:]])
    assert out.seeds["quality"][0] - out.seeds["quality"][1] == len(a) - len(lists[1])


def test_triplet_starts_agree_with_truth_within_traccc_sigmas(toy):
    detector, truth, meas, protos, sps = toy
    out = seed_prototracks(detector, meas, sps, protos, PROTO_ONLY)
    assert len(out.prototrack) == N_TRACKS
    pulls = []
    for seed, track in enumerate(out.prototrack):
        particle = truth_row(truth, meas, detector, protos, track)
        row = detector.index_of(out.starts.module_key[seed:seed + 1])[0]
        layer = int(np.flatnonzero(truth.rows[particle] == row)[0])
        true = truth.params[particle, layer]
        diff = out.starts.params[seed] - true
        diff[PHI] = wrap_phi(diff[PHI])
        pulls.append(diff[:5] / np.sqrt(np.diag(out.starts.covariance[seed])[:5]))
    pulls = np.abs(np.array(pulls))
    # traccc's sigmas (1 mm, 1 deg, 0.1 e/GeV) are loose against a three-point estimate
    assert np.all(pulls < 3), pulls.max(axis=0)
    assert np.median(pulls[:, QOP]) < 1


def test_fit_starts_are_the_fit_inflated(toy):
    detector, truth, meas, protos, sps = toy
    config = TracccSeedingConfig(method="fit", supplementary_seeding="none",
                                 seeds_per_prototrack=1)
    out = seed_prototracks(detector, meas, sps, protos, config)
    assert len(out.prototrack) == N_TRACKS
    tracks, fitted = fit_prototracks(detector, meas, protos,
                                     config.fitting().track_fit_config())
    np.testing.assert_array_equal(fitted, out.prototrack)
    np.testing.assert_array_equal(out.starts.module_key, tracks["module_key"])
    np.testing.assert_array_equal(out.starts.params, tracks["params"])
    np.testing.assert_allclose(out.starts.covariance,
                               tracks["covariance"] * config.covariance_inflation_factor)
    # on the innermost measurement's module
    for seed, track in enumerate(out.prototrack):
        particle = truth_row(truth, meas, detector, protos, track)
        assert detector.index_of(out.starts.module_key[seed:seed + 1])[0] \
            == truth.rows[particle, 0]


def test_supplementary_seeds_cover_what_the_prototracks_miss(toy):
    detector, _truth, meas, protos, sps = toy
    off, idx = protos["offsets"], protos["indices"]
    # the GNN lost the particle of the event's first triplet seed: no proto-track lists its hits
    first = sps["measurement_index"][find_seeds(sps)["spacepoints"][0, 0]]
    track = int(np.searchsorted(off, np.flatnonzero(idx == first)[0], side="right") - 1)
    lost = idx[off[track]:off[track + 1]]
    lists = [idx[off[t]:off[t + 1]] for t in range(N_TRACKS) if t != track]
    kept = ProtoTracks(offsets=np.r_[0, np.cumsum([len(x) for x in lists])],
                       indices=np.concatenate(lists))
    out = seed_prototracks(detector, meas, sps, kept, TracccSeedingConfig(
        seeds_per_prototrack=1, supplementary_seeding="uncovered"))
    extra = out.prototrack < 0
    np.testing.assert_array_equal(out.prototrack[:N_TRACKS - 1], np.arange(N_TRACKS - 1))
    assert extra[N_TRACKS - 1:].all()
    # supplementary seeds rank after every proto-track seed, have no measurement list, and
    # lie on the lost particle's hits only
    assert out.seeds["quality"][extra].max() < out.seeds["quality"][~extra].min()
    assert np.all(np.diff(out.seed_offsets)[extra] == 0)
    seed_meas = sps["measurement_index"][out.seeds["spacepoints"][extra]]
    assert len(seed_meas) > 0
    assert np.isin(seed_meas, lost).all()
    assert len(out.starts.params) == len(out.seeds)
    # "all": the whole event is seeded again (also the particles a wrong proto-track took)
    every = seed_prototracks(detector, meas, sps, kept, TracccSeedingConfig(
        seeds_per_prototrack=1, supplementary_seeding="all"))
    every_meas = sps["measurement_index"][every.seeds["spacepoints"][every.prototrack < 0]]
    assert len(every_meas) > len(seed_meas)
    assert not np.isin(every_meas, lost).all()
    # its host threads share the middles: the same seeds and starts
    threaded = seed_prototracks(detector, meas, sps, kept, TracccSeedingConfig(
        seeds_per_prototrack=1, supplementary_seeding="all", supplementary_threads=3))
    assert threaded.seeds.equals(every.seeds)
    np.testing.assert_array_equal(threaded.starts.params, every.starts.params)
    with pytest.raises(ValueError, match="supplementary_threads must be >= 1"):
        TracccSeedingConfig(supplementary_threads=0)


def test_traccc_covariance_terms():
    config = TracccSeedingConfig()
    theta = np.pi / 3
    params = np.array([[0.0, 0.0, 0.1, theta, -0.5, 0.0]])
    cov = traccc_covariance(params, config)
    sigma_theta = np.radians(1.0)
    expected_qop = ((0.1 * np.sin(theta)) ** 2 + (sigma_theta * 0.5 / np.tan(theta)) ** 2
                    + (0.1 * 0.5) ** 2)
    np.testing.assert_allclose(np.diag(cov[0]), [1.0, 1.0, sigma_theta**2, sigma_theta**2,
                                                 expected_qop, 100.0])
    assert np.count_nonzero(cov[0] - np.diag(np.diag(cov[0]))) == 0


def test_empty_event(toy):
    detector = toy[0]
    meas = Measurements.empty()
    out = seed_prototracks(detector, meas, Spacepoints.empty(), ProtoTracks.empty())
    assert len(out.seeds) == 0
    assert out.starts.params.shape == (0, 6)
    np.testing.assert_array_equal(out.seed_offsets, [0])
    no_tracks = ProtoTracks(offsets=np.zeros(1, np.int64), indices=np.zeros(0, np.int64))
    assert len(seed_prototracks(detector, meas, Spacepoints.empty(), no_tracks).seeds) == 0


def test_bad_prototracks_raise(toy):
    detector, _, meas, _protos, sps = toy
    bad = ProtoTracks(offsets=np.array([0, 2]), indices=np.array([0, len(meas)]))
    with pytest.raises(InputError, match="out of range"):
        seed_prototracks(detector, meas, sps, bad)
