"""ACTS' reference chain on taas' tiny simulation: tracks, id mapping, physics and timings.

The chain module lives in ``benchmarks/acts_reference`` (a script folder, not a package), so
it is loaded by path.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from script_module import load_script

from taas.errors import InputError
from taas.events.dataset import open_dataset


@pytest.fixture(scope="module")
def chain() -> ModuleType:
    pytest.importorskip("acts")
    return load_script("acts_reference/chain.py", "acts_reference_chain")


@pytest.fixture(scope="module")
def acts_run(chain: ModuleType, tiny_sim_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("acts_reference")
    return chain.run_acts_reference(tiny_sim_dir, out), out


def test_tracks_exist_and_ids_are_real_measurements(chain: ModuleType, tiny_sim_dir: Path,
                                                    acts_run: tuple[dict, Path]) -> None:
    result, out = acts_run
    ds = open_dataset(tiny_sim_dir)
    assert result["event_ids"] == ds.event_ids == [0, 1]
    for e in result["event_ids"]:
        event = ds.read(e)
        tracks = chain.read_acts_tracks(out, e)
        offsets, mids = tracks["offsets"], tracks["measurement_ids"]
        n_tracks = len(offsets) - 1
        # ~50 particles, ~43 of them fiducial: ACTS finds one track for most of them
        assert 30 <= n_tracks <= 70
        assert result["n_tracks"][str(e)] == n_tracks
        assert offsets[0] == 0
        assert offsets[-1] == len(mids)
        lengths = np.diff(offsets)
        assert lengths.min() >= 7  # ACTS' selector and ambiguity solver keep >= 7
        assert np.array_equal(lengths, tracks["n_measurements"])
        # every id exists in the event's truth table, once per track at most
        assert np.isin(mids, event.hits["hit_id"]).all()
        for k in range(n_tracks):
            seg = mids[offsets[k]:offsets[k + 1]]
            assert len(np.unique(seg)) == len(seg)
        # the id mapping is right: module and position the fit used equal the CSV row's
        rows = np.searchsorted(event.hits["hit_id"], mids)
        assert np.array_equal(event.hits["module_key"][rows], tracks["geometry_ids"])
        np.testing.assert_array_equal(tracks["local0"],
                                      event.hits["ref_u"][rows].astype(np.float32))
        np.testing.assert_array_equal(tracks["local1"],
                                      event.hits["ref_v"][rows].astype(np.float32))


def test_acts_physics_on_tiny_events(chain: ModuleType, tiny_sim_dir: Path,
                                     acts_run: tuple[dict, Path]) -> None:
    result, out = acts_run
    summary, sizes = chain.evaluate_acts_tracks(tiny_sim_dir, out, result["event_ids"])
    assert summary["matching"]["style"] == "two_way"
    assert summary["matching"]["pt_min"] == 1.0
    assert summary["n_fiducial_particles"] >= 60
    # ACTS reaches ~99% here; a vertex outside its +-150 mm collision region can cost ~10
    assert summary["efficiency"] > 0.8
    assert summary["fake_rate"] < 0.05
    assert summary["duplicate_rate"] < 0.05
    assert [s["event_id"] for s in sizes] == [0, 1]
    for s in sizes:
        assert s["measurements"] > 400
        assert s["cells"] > s["measurements"]
        assert s["particles"] >= 50


def test_timings_recorded_per_stage(acts_run: tuple[dict, Path]) -> None:
    result, _ = acts_run
    stages = result["time_s_per_event"]
    assert set(stages) == {"space_points", "seeding", "parameter_estimation", "ckf",
                           "ambiguity_resolution"}
    assert all(t > 0 for t in stages.values())
    assert result["reco_s_per_event"] == pytest.approx(sum(stages.values()))
    assert stages["ckf"] < 5.0  # 50 particles: milliseconds, not seconds
    algorithms = result["algorithms_s_per_event"]
    assert "CsvMeasurementReader" in algorithms
    assert "TrackFindingAlgorithm" in algorithms
    assert result["config"]["ckf"]["seed_deduplication"] is True


def test_wider_collision_region_and_event_subset(chain: ModuleType, tiny_sim_dir: Path,
                                                 tmp_path: Path) -> None:
    result = chain.run_acts_reference(tiny_sim_dir, tmp_path, events=[1],
                                      collision_region_mm=250.0)
    assert result["event_ids"] == [1]
    assert result["config"]["seeding"]["collision_region_mm"] == [-250.0, 250.0]
    assert chain.tracks_path(tmp_path, 1).is_file()
    assert not chain.tracks_path(tmp_path, 0).exists()
    assert result["n_tracks"]["1"] > 30


def test_match_measurements_undoes_reordering(chain: ModuleType) -> None:
    csv_m = {"measurement_id": np.arange(4), "geometry_id": np.array([5, 5, 7, 7], np.uint64),
             "local0": np.array([1, 2, 3, 4], np.float32),
             "local1": np.zeros(4, np.float32)}
    # ACTS' reader swaps the two measurements of module 5
    got = chain._match_measurements(csv_m, np.array([5, 5, 7, 7], np.uint64),
                                    np.array([2, 1, 3, 4], np.float32), np.zeros(4, np.float32))
    assert got.tolist() == [1, 0, 2, 3]
    with pytest.raises(InputError, match="differ"):
        chain._match_measurements(csv_m, np.array([5, 5, 7, 7], np.uint64),
                                  np.array([2, 1, 3, 9], np.float32), np.zeros(4, np.float32))


def _track_particle_pts(chain: ModuleType, sim_dir: Path, out: Path, event_ids: list[int]
                        ) -> np.ndarray:
    """pT (GeV) of each ACTS track's majority particle, over the events."""
    ds = open_dataset(sim_dir)
    pts = []
    for e in event_ids:
        event = ds.read(e)
        tracks = chain.read_acts_tracks(out, e)
        rows = np.searchsorted(event.hits["hit_id"], tracks["measurement_ids"])
        owners = np.asarray(event.hits["particle_id"])[rows]
        pt_of = dict(zip(np.asarray(event.particles.particle_id).tolist(),
                         np.asarray(event.particles.pt).tolist(), strict=True))
        offsets = tracks["offsets"]
        for k in range(len(offsets) - 1):
            ids, counts = np.unique(owners[offsets[k]:offsets[k + 1]], return_counts=True)
            pts.append(pt_of.get(int(ids[np.argmax(counts)]), np.nan))
    return np.asarray(pts)


def test_min_pt_reaches_acts_seeding(chain: ModuleType, tiny_sim_dir: Path,
                                     acts_run: tuple[dict, Path],
                                     tmp_path: Path) -> None:
    """``min_pt_mev`` is ACTS' seeding threshold: at 900 MeV the tracks of particles well
    below it (seeded only by the default 400 MeV) are gone, the others stay."""
    default, default_out = acts_run
    raised = chain.run_acts_reference(tiny_sim_dir, tmp_path, min_pt_mev=900.0)
    assert raised["config"]["seeding"]["min_pt_mev"] == 900.0
    assert default["config"]["seeding"]["min_pt_mev"] == "ACTS default (400)"
    ids = raised["event_ids"]
    pt_default = _track_particle_pts(chain, tiny_sim_dir, default_out, ids)
    pt_raised = _track_particle_pts(chain, tiny_sim_dir, tmp_path, ids)
    assert np.sum(pt_default < 0.75) > 0  # the tiny events have such tracks at all
    assert np.sum(pt_raised < 0.75) == 0
    assert np.sum(pt_raised > 1.2) >= 0.9 * np.sum(pt_default > 1.2)
