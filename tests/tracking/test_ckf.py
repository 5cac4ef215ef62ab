"""The CKF stage on simulated Generic-detector events: physics performance and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backends.cpu.ambiguity import CpuAmbiguityResolution
from backends.cpu.ckf import CpuCkf
from backends.cpu.clustering import CpuClustering
from backends.cpu.seeding import CpuSeeding
from backends.cpu.spacepoints import CpuSpacepoints
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import Seeds, Tracks
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.metrics.evaluate import evaluate_event, evaluate_events
from taas.metrics.truth_link import measurement_particles
from taas.tracking.ckf import CkfConfig, check_seeds


@pytest.fixture(scope="module")
def dataset(tiny_sim_dir):
    return open_dataset(tiny_sim_dir)


@pytest.fixture(scope="module")
def ckf(dataset):
    return CpuCkf(dataset.detector)


@pytest.fixture(scope="module")
def chain(dataset, ckf):
    """Both tiny events through clustering -> ... -> CKF -> ambiguity resolution."""
    det = dataset.detector
    stages = [CpuClustering(det), CpuSpacepoints(det), CpuSeeding(det), ckf,
              CpuAmbiguityResolution(det)]
    out = []
    for event_id in dataset.event_ids:
        event = dataset.read(event_id)
        tensors = event.cells.to_tensors()
        for stage in stages:
            tensors.update(stage.run(tensors))
        out.append((event, tensors))
    return out


def _evaluate(chain, offsets_key: str, indices_key: str) -> dict:
    results = []
    for event, t in chain:
        n_meas = len(t["measurements.module_key"])
        mp = measurement_particles(event.cells["hit_id"], t["clusters.cluster_id"], n_meas,
                                   event.hits)
        results.append(evaluate_event(t[offsets_key], t[indices_key], mp, event.particles))
    return evaluate_events(results)


def test_stage_contract(ckf):
    assert (ckf.NAME, ckf.BACKEND) == ("ckf", "cpu")
    names = {s.name for s in ckf.INPUTS}
    assert {"measurements.local_u", "spacepoints.measurement_index",
            "seeds.spacepoints"} <= names
    assert {s.name for s in ckf.OUTPUTS} == {s.name for s in Tracks.tensor_specs()}


def test_tracks_are_well_formed(chain, dataset):
    for _, t in chain:
        tracks = Tracks.from_tensors(t)
        offsets, indices = tracks["meas_offsets"], tracks["meas_indices"]
        lengths = np.diff(offsets)
        assert len(tracks) > 0
        assert offsets[0] == 0
        assert offsets[-1] == len(indices)
        assert lengths.min() >= 7
        assert np.array_equal(tracks["ndf"], 2 * lengths - 5)
        assert np.all(np.isfinite(tracks["params"]))
        assert np.all(tracks["chi2"] >= 0)
        assert indices.min() >= 0
        assert indices.max() < len(t["measurements.module_key"])
        # no measurement twice on one track, and the lists run outwards along the track
        owner = np.repeat(np.arange(len(lengths)), lengths)
        assert len(np.unique(owner * len(t["measurements.module_key"]) + indices)) == len(owner)
        xyz = np.stack([t["spacepoints.x"], t["spacepoints.y"], t["spacepoints.z"]], axis=1)
        dist = np.linalg.norm(xyz[indices], axis=1)  # space point i is measurement i here
        step = np.diff(dist)[owner[1:] == owner[:-1]]
        assert np.mean(step > 0) > 0.99
        # the reference surface is the last measurement's module
        last = indices[offsets[1:] - 1]
        assert np.array_equal(tracks["module_key"], t["measurements.module_key"][last])


def test_efficiency_and_fakes_on_tiny(chain):
    before = _evaluate(chain, "tracks.meas_offsets", "tracks.meas_indices")
    after = _evaluate(chain, "prototracks.offsets", "prototracks.indices")
    assert before["n_fiducial_particles"] > 50
    assert after["efficiency"] >= 0.9, after["efficiency"]
    assert after["fake_rate"] <= 0.05, after["fake_rate"]
    assert after["duplicate_rate"] <= 0.02, after["duplicate_rate"]
    assert before["efficiency"] >= after["efficiency"]


def test_stats_and_deduplication(chain, ckf):
    stats = ckf.last_stats
    assert stats is not None
    assert stats.seeds > 0
    assert 0 < stats.seeds_processed < stats.seeds  # deduplication skipped seeds
    assert stats.tracks == len(chain[-1][1]["tracks.chi2"])


def _inputs(chain_tensors: dict, seeds: Seeds | None = None,
            meas: Measurements | None = None) -> dict:
    t = dict(chain_tensors)
    if seeds is not None:
        t.update(seeds.to_tensors())
    if meas is not None:
        t.update(meas.to_tensors())
        t.update(Spacepoints.empty().to_tensors())
    return t


def test_no_seeds_and_no_measurements(chain, ckf):
    t = chain[0][1]
    out = ckf.run(_inputs(t, seeds=Seeds.empty()))
    assert len(out["tracks.chi2"]) == 0
    assert out["tracks.meas_offsets"].tolist() in ([], [0])
    out = ckf.run(_inputs(t, seeds=Seeds.empty(), meas=Measurements.empty()))
    assert len(out["tracks.chi2"]) == 0


def test_bad_seeds_raise(chain, ckf):
    t = dict(chain[0][1])
    x = t["spacepoints.x"].copy()
    x[t["seeds.spacepoints"][3, 1]] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        ckf.run({**t, "spacepoints.x": x})
    sp = t["seeds.spacepoints"].copy()
    sp[0, 0] = len(x)
    with pytest.raises(InputError, match=r"lies outside the .* rows of .spacepoints."):
        ckf.run({**t, "seeds.spacepoints": sp})


def test_check_seeds_names_non_finite_seed_space_points_only(chain):
    t = dict(chain[0][1])
    seeds, sp = Seeds.from_tensors(t), Spacepoints.from_tensors(t)
    n_meas = len(t["measurements.local_u"])
    np.testing.assert_array_equal(check_seeds(seeds, sp, n_meas),
                                  sp["measurement_index"][seeds["spacepoints"]])
    unused = np.setdiff1d(np.arange(len(sp)), seeds["spacepoints"])[0]
    z = sp["z"].copy()
    z[unused] = np.inf  # no seed uses it: nothing to refuse
    check_seeds(seeds, Spacepoints(**{**sp.columns(), "z": z}), n_meas)
    z[seeds["spacepoints"][5, 2]] = np.nan
    with pytest.raises(InputError, match=r"non-finite positions \(\d+ seeds affected\)"):
        check_seeds(seeds, Spacepoints(**{**sp.columns(), "z": z}), n_meas)


@pytest.mark.parametrize("change", [{"bz": 0.0}, {"chi2_cut": 0.0}, {"max_holes": -1},
                                    {"min_measurements": 2}, {"seed_batch_size": 0},
                                    {"bounds_tolerance": -1.0}, {"max_branches_per_seed": 0},
                                    {"dedup_used": 0}, {"dedup_used": 4}])
def test_config_is_validated(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        dataclasses.replace(CkfConfig(), **change)


def _single_seed_track(ckf, t: dict, spacepoints: np.ndarray) -> list[int] | None:
    seeds = Seeds(spacepoints=np.asarray(spacepoints)[None, :], quality=np.ones(1, np.float32),
                  z_vertex=np.zeros(1, np.float32))
    out = ckf.run(_inputs(t, seeds=seeds))
    offsets, indices = out["tracks.meas_offsets"], out["tracks.meas_indices"]
    return indices[offsets[0]:offsets[1]].tolist() if len(offsets) > 1 else None


def test_seed_skipping_a_layer_picks_up_its_hit(chain, ckf, dataset):
    """A seed whose bottom and middle space points skip a layer still gets that layer's hit.

    The outward search starts at the bottom space point and walks every layer, so the track
    holds the particle's measurement on the skipped layer, between the seed's, in order.
    """
    event, t = chain[0]
    n_meas = len(t["measurements.module_key"])
    mp = measurement_particles(event.cells["hit_id"], t["clusters.cluster_id"], n_meas,
                               event.hits)
    xyz = np.stack([t["spacepoints.x"], t["spacepoints.y"], t["spacepoints.z"]], axis=1)
    layer = ckf.navigation.module_layer[dataset.detector.index_of(t["measurements.module_key"])]
    tested = 0
    for particle in np.unique(mp[mp != 0]):
        own = np.flatnonzero(mp == particle)  # space point i is measurement i here
        own = own[np.argsort(np.linalg.norm(xyz[own], axis=1))]
        if len(own) < 8 or len(np.unique(layer[own[:4]])) < 4:
            continue
        if _single_seed_track(ckf, t, own[:3]) is None:  # not findable from its first hits
            continue
        track = _single_seed_track(ckf, t, own[[0, 2, 3]])
        assert track is not None
        assert own[1] in track
        assert track.index(own[0]) < track.index(own[1]) < track.index(own[2])
        tested += 1
        if tested == 5:
            break
    assert tested == 5


def test_line_precheck_never_drops_a_crossing_module(generic_detector):
    """``line_misses`` only drops (state, module) pairs whose helix crossing lies outside the
    module (+ tolerance): checked against the exact intersection for states near random
    modules, soft and stiff, at any incidence."""
    from taas.tracking import helix
    from taas.tracking.ckf import line_misses

    det = generic_detector
    rng = np.random.default_rng(8)
    n = 4000
    modules = rng.integers(0, len(det), n)
    rot, center = det.rotation[modules], det.center[modules]
    half = np.stack([det.modules["max_hu"][modules], det.modules["hv"][modules]], axis=1)
    local = rng.uniform(-1.6, 1.6, (n, 2)) * half
    w = rng.uniform(-20.0, 20.0, n)
    start = center + np.einsum("nij,nj->ni", rot[:, :, :2], local) + w[:, None] * rot[:, :, 2]
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    at = np.zeros((n, 8))
    at[:, helix.POS], at[:, helix.DIR] = start, direction
    at[:, helix.QOP] = rng.choice([-1, 1], n) / rng.uniform(0.3, 20.0, n)
    config = CkfConfig()
    misses = line_misses(det, at, np.arange(n), modules, config)
    s, ok = helix.intersect_plane(at, center, rot[:, :, 2], config.bz)
    end = helix.helix_at(at, np.where(ok, s, 0.0), config.bz)
    offset = end[:, helix.POS] - center
    u = np.einsum("ni,ni->n", rot[:, :, 0], offset)
    v = np.einsum("ni,ni->n", rot[:, :, 1], offset)
    crosses = ok & det.inside_bounds(modules, u, v, config.bounds_tolerance)
    assert crosses.sum() > 500
    assert misses.sum() > 500
    assert not np.any(misses & crosses)
