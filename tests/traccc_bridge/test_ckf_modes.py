"""The two CKF modes from proto-track seeds: on toy tracks with a planted wrong hit and a
missing one (what each mode must do with them), and on a ``tiny`` event against truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backends.cpu.prototrack_ckf import CpuPrototrackCkf
from backends.cpu.prototrack_seeding import CpuPrototrackSeeding
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.metrics.evaluate import evaluate_event, evaluate_events
from taas.metrics.truth_link import measurement_particles
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN, ACORN_TRACCC, get_pipeline
from tests.traccc_bridge.bridge_toy import spacepoints_of
from tests.tracking.toy import barrel_detector, generate_particles, measure, simulate
from traccc_bridge.config import TracccFindingConfig, TracccSeedingConfig

ALL_CPU = {"graph_construction": "cpu", "edge_classification": "cpu", "track_building": "cpu"}
WRONG_LAYER, MISSING_LAYER = 3, 5  # 0-based layers of the planted wrong hit / the dropped one


@pytest.fixture(scope="module")
def toy_event():
    """Toy tracks (10 layers, pT 2-10 GeV); proto-track 0 lists, on its 4th layer, a planted
    hit 0.3 mm (30 sigma) from its own instead of its own, and lacks its 6th layer's hit."""
    rng = np.random.default_rng(3)
    detector = barrel_detector()
    truth = simulate(detector, generate_particles(20, rng, pt=(2.0, 10.0)), rng)
    meas, protos = measure(detector, truth, rng)
    own = _own_hits(detector, truth, meas, protos, 0)
    columns = meas.columns()
    planted = {k: v[own[WRONG_LAYER]:own[WRONG_LAYER] + 1].copy() for k, v in columns.items()}
    planted["local_u"] = planted["local_u"] + 0.3
    meas = Measurements(**{k: np.concatenate([columns[k], planted[k]]) for k in columns})
    lists = [np.r_[np.delete(own, [WRONG_LAYER, MISSING_LAYER]), len(meas) - 1]]
    lists += [protos["indices"][protos["offsets"][t]:protos["offsets"][t + 1]]
              for t in range(1, len(protos))]
    protos = ProtoTracks(offsets=np.r_[0, np.cumsum([len(x) for x in lists])],
                         indices=np.concatenate(lists))
    tensors = {**meas.to_tensors(), **spacepoints_of(detector, meas).to_tensors(),
               **protos.to_tensors()}
    tensors.update(CpuPrototrackSeeding(detector).run(tensors))
    return detector, own, len(meas) - 1, tensors


def _own_hits(detector, truth, meas: Measurements, protos: ProtoTracks, track: int
              ) -> np.ndarray:
    """Proto-track ``track``'s measurements in layer order (the toy lists them shuffled)."""
    hits = protos["indices"][protos["offsets"][track]:protos["offsets"][track + 1]]
    layer = detector.modules["layer_id"][detector.index_of(meas["module_key"][hits])]
    return hits[np.argsort(layer)]


def _track_of_seed0(tensors: dict) -> set[int]:
    tracks = Tracks.from_tensors(tensors)
    lists = np.split(tracks["meas_indices"], tracks["meas_offsets"][1:-1])
    # the toy's particle 0 is the only one whose first hit the seed starts from
    return next(set(x.tolist()) for x in lists if tensors["_first"] in x)


@pytest.mark.parametrize("mode", ["constrained", "free"])
def test_modes_on_a_planted_wrong_hit_and_a_missing_one(toy_event, mode):
    detector, own, planted, tensors = toy_event
    config = TracccFindingConfig(mode=mode, max_num_consecutive_skipped=2)
    out = CpuPrototrackCkf(detector, config).run(tensors)
    track = _track_of_seed0({**out, "_first": own[0]})
    # both modes pick up the hit the proto-track lacks: no own hit on that module, so every
    # measurement there competes
    assert own[MISSING_LAYER] in track
    assert planted not in track  # 30 sigma off: incompatible in either mode
    if mode == "constrained":
        # the proto-track has a hit on that module: only it is offered, the true one is not
        assert track == set(own.tolist()) - {own[WRONG_LAYER]}
    else:
        assert track == set(own.tolist())


def test_finding_config_mirrors_traccc_and_validates():
    config = TracccFindingConfig()
    ckf = config.ckf_config()
    assert (ckf.max_branches_per_seed, ckf.max_branches_per_surface, ckf.min_measurements,
            ckf.max_measurements, ckf.max_holes, ckf.max_consecutive_holes, ckf.chi2_cut) \
        == (10, 1, 3, 100, 3, 1, 30.0)
    for field, value in [("mode", "loose"), ("chi2_max", 0.0), ("max_num_branches_per_seed", 0),
                         ("min_track_candidates_per_track", 2), ("min_pT", -1.0),
                         ("max_track_candidates_per_track", 2)]:
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(config, **{field: value})
    with pytest.raises(ValueError, match="method"):
        TracccSeedingConfig(method="middle")
    with pytest.raises(ValueError, match="initial_sigma"):
        TracccSeedingConfig(initial_sigma=(1.0, 1.0))
    with pytest.raises(ValueError, match="covariance_inflation_factor"):
        TracccSeedingConfig(covariance_inflation_factor=0.5)


def test_ckf_rejects_mismatched_seed_inputs(toy_event):
    detector, _, _, tensors = toy_event
    short = {**tensors, "seed_starts.params": tensors["seed_starts.params"][:-1]}
    with pytest.raises(InputError):
        CpuPrototrackCkf(detector).run(short)


def test_empty_event_passes_both_stages(toy_event):
    detector = toy_event[0]
    tensors = {**Measurements.empty().to_tensors(),
               **spacepoints_of(detector, Measurements.empty()).to_tensors(),
               **ProtoTracks.empty().to_tensors()}
    tensors.update(CpuPrototrackSeeding(detector).run(tensors))
    for mode in ("constrained", "free"):
        out = CpuPrototrackCkf(detector, TracccFindingConfig(mode=mode)).run(tensors)
        assert len(out["tracks.chi2"]) == 0


def _rates(event, tensors: dict) -> dict:
    n_meas = len(tensors["measurements.module_key"])
    particle_of = measurement_particles(event.cells["hit_id"], tensors["clusters.cluster_id"],
                                        n_meas, event.hits)
    return evaluate_event(tensors["tracks.meas_offsets"], tensors["tracks.meas_indices"],
                          particle_of, event.particles)


def test_both_modes_on_tiny_events_against_truth(tiny_sim_dir):
    """acorn_traccc (GNN on the CPU) in both modes finds at least what acorn finds."""
    ds = open_dataset(tiny_sim_dir)
    assert get_pipeline("acorn_traccc") is ACORN_TRACCC
    acorn = Pipeline(ACORN.with_routing(ALL_CPU), ds.detector)
    bridged = {mode: Pipeline(ACORN_TRACCC.with_routing(ALL_CPU).with_configs(
        {"prototrack_ckf": {"mode": mode}}), ds.detector) for mode in ("constrained", "free")}
    results: dict[str, list] = {"acorn": [], "constrained": [], "free": []}
    for event_id in ds.event_ids:
        event = ds.read(event_id)
        results["acorn"].append(_rates(event, acorn.run(event.cells.to_tensors()).tensors))
        for mode, pipeline in bridged.items():
            out = pipeline.run(event.cells.to_tensors())
            assert [t.stage for t in out.timings] == [s for s, _ in ACORN_TRACCC.steps]
            results[mode].append(_rates(event, out.tensors))
    summary = {k: evaluate_events(v) for k, v in results.items()}
    for mode in ("constrained", "free"):
        assert summary[mode]["efficiency"] >= summary["acorn"]["efficiency"] - 1e-9, summary
        assert summary[mode]["efficiency"] > 0.9
        assert summary[mode]["fake_rate"] <= 0.05
        assert summary[mode]["duplicate_rate"] <= 0.05
