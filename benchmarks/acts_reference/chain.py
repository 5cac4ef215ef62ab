"""ACTS' own CPU reconstruction chain on taas-simulated events: the reference taas must beat.

``run_acts_reference`` feeds the events a ``taas.events.simulation.simulate`` run wrote (ACTS
CSV) back into an ACTS sequencer through ACTS' own CSV readers, so ACTS reconstructs exactly
the measurements taas sees, and runs space-point making, GridTriplet seeding, track-parameter
estimation, the CKF and greedy ambiguity resolution configured as ACTS'
``Examples/Scripts/Python/full_chain_test.py`` configures the Generic detector. The final
tracks are written per event as measurement-id lists (CSR, ``eventNNNNNNNNN-acts-tracks.npz``)
and the Sequencer's per-algorithm timings are returned, so the same tracks can be scored with
taas' metrics (``evaluate_acts_tracks``) and the times put beside taas' own.

Why the CSV readers rather than re-simulating inside the sequencer: re-running Fatras would
have to be proven to give identical measurements; reading the files is identical by
construction. One trap: ``CsvMeasurementReader`` reorders measurements within a module, so a
track state's source-link index is not the CSV ``measurement_id``; the ids are recovered by
matching (module, local position) and the evaluation re-checks both for every track hit.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.events.event import event_stem
from taas.io.csv_table import read_csv_columns
from taas.io.paths import find_csv
from taas.metrics.config import MatchingConfig
from taas.metrics.evaluate import evaluate_event, evaluate_events
from taas.metrics.truth_link import hit_rows

log = logging.getLogger(__name__)

#: ACTS' ``Examples/Configs/generic-seeding-config.json``: the pixel layers seeding uses
#: (not shipped in the pyacts wheel, so written out per run).
GENERIC_SEEDING_LAYERS: tuple[tuple[int, int], ...] = (
    (8, 2), (8, 4), (8, 6), (8, 8),
    (9, 2), (9, 4), (9, 6), (9, 8),
    (7, 14), (7, 12), (7, 10), (7, 8),
)

#: Sequencer algorithm name -> reported stage (the reconstruction proper; summed as reco time).
STAGES: dict[str, str] = {
    "SpacePointMaker": "space_points",
    "GridTripletSeedingAlgorithm": "seeding",
    "TrackParamsEstimationAlgorithm": "parameter_estimation",
    "TrackFindingAlgorithm": "ckf",
    "GreedyAmbiguityResolutionAlgorithm": "ambiguity_resolution",
}

#: File name suffix of the exported tracks.
TRACKS_SUFFIX = "acts-tracks.npz"
FIELD_T = 2.0


def acts_config_summary(collision_region_mm: float | None = None,
                        min_pt_mev: float | None = None) -> dict[str, Any]:
    """The ACTS configuration ``run_acts_reference`` uses, as JSON-ready values (mm, GeV)."""
    return {
        "reference": "acts Examples/Scripts/Python/full_chain_test.py, Generic detector",
        "input": "taas simulation CSV via CsvParticleReader(particles_simulated), "
                 "CsvSimHitReader, CsvMeasurementReader",
        "field_t": FIELD_T,
        "space_points": {"geometry_selection": [{"volume": v, "layer": lay}
                                                for v, lay in GENERIC_SEEDING_LAYERS]},
        "seeding": {"algorithm": "GridTriplet", "cuts": "ACTS defaults",
                    "collision_region_mm": ("ACTS default (+-150)" if collision_region_mm is None
                                            else [-collision_region_mm, collision_region_mm]),
                    "min_pt_mev": "ACTS default (400)" if min_pt_mev is None else min_pt_mev},
        "parameter_estimation": {"initial_sigmas": ["1 mm", "1 mm", "1 deg", "1 deg",
                                                    "0 e/GeV", "1 ns"],
                                 "initial_sigma_qoverpt_e_per_gev": 0.1,
                                 "initial_sigma_pt_rel": 0.1},
        "ckf": {"seed_deduplication": True, "stay_on_seed": True,
                "chi2_cut_off_measurement": 15.0, "chi2_cut_off_outlier": 25.0,
                "num_measurements_cut_off": 2, "two_way": True},
        "track_selector": {"pt_min_gev": 0.0, "abs_eta_max": 3.0, "loc0_mm": [-4.0, 4.0],
                           "n_measurements_min": 7, "max_holes": 2, "max_outliers": 2},
        "ambiguity_resolution": {"algorithm": "greedy", "maximum_shared_hits": 3,
                                 "maximum_iterations": 1000000, "n_measurements_min": 7},
        "exported_track_content": "measurement states only (outliers and holes left out)",
    }


def _event_ids(sim_dir: Path) -> list[int]:
    ds = open_dataset(sim_dir)
    if ds.format != "acts-csv":
        raise InputError(f"expected ACTS CSV events, found {ds.format}", path=sim_dir)
    return list(ds.event_ids)


def _contiguous_runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """(first event, count) blocks: one Sequencer run each (the Sequencer takes skip + count)."""
    runs: list[tuple[int, int]] = []
    for e in sorted(set(ids)):
        if runs and runs[-1][0] + runs[-1][1] == e:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((e, 1))
    return runs


def _csv_measurements(sim_dir: Path, event_id: int) -> dict[str, np.ndarray]:
    """The measurement columns that identify a measurement: module and local position.

    Positions are kept as float32, the precision ACTS writes and reads them with, so a
    measurement read back by ACTS compares equal to its CSV row.
    """
    path = find_csv(sim_dir, f"{event_stem(event_id)}-measurements")
    m = read_csv_columns(path, {"measurement_id": np.dtype("i8"), "geometry_id": np.dtype("u8"),
                                "local0": np.dtype("f8"), "local1": np.dtype("f8")})
    return {"measurement_id": m["measurement_id"], "geometry_id": m["geometry_id"],
            "local0": m["local0"].astype(np.float32), "local1": m["local1"].astype(np.float32)}


def _match_measurements(csv_m: Mapping[str, np.ndarray], geo: np.ndarray, loc0: np.ndarray,
                        loc1: np.ndarray) -> np.ndarray:
    """``measurement_id`` of each ACTS container measurement, matched on (module, loc0, loc1).

    Needed because ``CsvMeasurementReader`` reorders measurements within a module (about one
    in six at 500 particles): container index != ``measurement_id``. Raises when the two sets
    are not the same measurements.
    """
    if len(geo) != len(csv_m["geometry_id"]):
        raise InputError(f"ACTS read {len(geo)} measurements, the CSV holds "
                         f"{len(csv_m['geometry_id'])}")
    a = np.lexsort((loc1, loc0, geo))
    b = np.lexsort((csv_m["local1"], csv_m["local0"], csv_m["geometry_id"]))
    same = (np.array_equal(geo[a], csv_m["geometry_id"][b])
            and np.array_equal(loc0[a], csv_m["local0"][b])
            and np.array_equal(loc1[a], csv_m["local1"][b]))
    if not same:
        raise InputError("measurements read by ACTS differ from the CSV's")
    out = np.empty(len(geo), np.int64)
    out[a] = csv_m["measurement_id"][b]
    return out


def _subset_algorithm(ex: Any, level: Any, csv_meas: Mapping[int, dict[str, np.ndarray]],
                      id_maps: dict[int, np.ndarray]) -> Any:
    """Python algorithm: the ``measurement_subset`` the seeding and CKF read, and the map from
    ACTS container index to CSV ``measurement_id`` (into ``id_maps[event]``).

    ACTS' DigitizationAlgorithm writes the subset; the CSV reader does not, so it is made here:
    every measurement, in module order.
    """

    class MeasurementSubsetAlgorithm(ex.IAlgorithm):
        def __init__(self) -> None:
            super().__init__(name="MeasurementSubsetAlgorithm", level=level)
            self.measurements = ex.ReadDataHandle(self, ex.MeasurementContainer, "Measurements")
            self.measurements.initialize("measurements")
            self.subset = ex.WriteDataHandle(self, ex.MeasurementSubset, "Subset")
            self.subset.initialize("measurement_subset")

        def execute(self, context: Any) -> Any:
            meas = self.measurements(context.eventStore)
            n = len(meas)
            geo = np.empty(n, np.uint64)
            loc = np.empty((n, 2), np.float32)
            for i in range(n):
                m = meas[i]
                geo[i] = m.geometryId.value
                par = m.fullParameters
                loc[i] = (par[0], par[1])
            id_maps[context.eventNumber] = _match_measurements(
                csv_meas[context.eventNumber], geo, loc[:, 0], loc[:, 1])
            order = np.argsort(geo, kind="stable").tolist()
            self.subset(context, ex.MeasurementSubset(meas, order))
            return ex.ProcessCode.SUCCESS

    return MeasurementSubsetAlgorithm()


def _export_algorithm(ex: Any, level: Any, out_dir: Path, tracks_key: str,
                      id_maps: Mapping[int, np.ndarray], counts: dict[int, int]) -> Any:
    """Python algorithm: write the final tracks as measurement-id lists (one npz per event).

    Written by hand rather than with ``CsvTrackWriter``, which silently drops tracks under
    1 GeV and under 7 measurements. Besides the ids, each measurement's module and the local
    position the fit used are written, so readers can check the id mapping independently.
    """

    class TrackExport(ex.IAlgorithm):
        def __init__(self) -> None:
            super().__init__(name="TaasTrackExport", level=level)
            self.tracks = ex.ReadDataHandle(self, ex.ConstTrackContainer, "Tracks")
            self.tracks.initialize(tracks_key)

        def execute(self, context: Any) -> Any:
            tracks = self.tracks(context.eventStore)
            index: list[int] = []
            geo: list[int] = []
            loc: list[tuple[float, float]] = []
            offsets = [0]
            for track in tracks:
                states = []
                for state in track.trackStatesReversed:
                    flags = state.typeFlags
                    if not flags.isMeasurement or flags.isOutlier:
                        continue
                    link = ex.IndexSourceLink.fromSourceLink(state.uncalibratedSourceLink)
                    cal = state.effectiveCalibrated
                    states.append((link.index(), link.geometryId().value,
                                   (cal[0], cal[1]) if len(cal) >= 2 else (np.nan, np.nan)))
                for i, g, xy in reversed(states):  # inside-out, as the track was found
                    index.append(i)
                    geo.append(g)
                    loc.append(xy)
                offsets.append(len(index))
            ids = id_maps[context.eventNumber][np.asarray(index, np.int64)]
            local = np.asarray(loc, np.float32).reshape(-1, 2)
            n = len(tracks)
            params = np.asarray(tracks.parameters, np.float64).reshape(n, -1)
            theta, qop = params[:, 3], params[:, 4]
            with np.errstate(divide="ignore"):
                pt = np.abs(1.0 / qop) * np.sin(theta)
            path = out_dir / f"{event_stem(context.eventNumber)}-{TRACKS_SUFFIX}"
            np.savez(path, offsets=np.asarray(offsets, np.int64),
                     measurement_ids=ids, geometry_ids=np.asarray(geo, np.uint64),
                     local0=local[:, 0], local1=local[:, 1],
                     n_measurements=np.asarray(tracks.nMeasurements, np.int32),
                     n_outliers=np.asarray(tracks.nOutliers, np.int32),
                     n_holes=np.asarray(tracks.nHoles, np.int32),
                     chi2=np.asarray(tracks.chi2, np.float32),
                     pt=pt, eta=-np.log(np.tan(theta / 2.0)), charge=np.sign(qop))
            counts[context.eventNumber] = n
            return ex.ProcessCode.SUCCESS

    return TrackExport()


def _read_timing(path: Path) -> list[tuple[str, float]]:
    """(algorithm identifier, total seconds) rows of the Sequencer's timing.csv, in order."""
    with path.open(newline="") as f:
        return [(row["identifier"], float(row["time_total_s"])) for row in csv.DictReader(f)]


def _build_sequencer(sim_dir: Path, work: Path, *, skip: int, events: int, threads: int,
                     csv_meas: Mapping[int, dict[str, np.ndarray]], out_dir: Path,
                     counts: dict[int, int],
                     collision_region_mm: float | None, min_pt_mev: float | None) -> Any:
    import acts
    import acts.examples as ex
    from acts.examples.reconstruction import (
        AmbiguityResolutionConfig,
        CkfConfig,
        SeedFinderConfigArg,
        SeedingAlgorithm,
        TrackSelectorConfig,
        addAmbiguityResolution,
        addCKFTracks,
        addSeeding,
    )

    from taas.detector.acts_generic import generic_tracking_geometry

    u = acts.UnitConstants
    level = acts.logging.WARNING
    _, tracking_geometry = generic_tracking_geometry()
    field = acts.ConstantBField(acts.Vector3(0.0, 0.0, FIELD_T * u.T))
    selection = work / "generic-seeding-config.json"
    selection.write_text(json.dumps([{"volume": v, "layer": lay}
                                     for v, lay in GENERIC_SEEDING_LAYERS], indent=1))

    seq = ex.Sequencer(events=events, skip=skip, numThreads=threads, logLevel=level,
                       outputDir=str(work), trackFpes=False)
    seq.addReader(ex.CsvParticleReader(level=level, inputDir=str(sim_dir),
                                       inputStem="particles_simulated",
                                       outputParticles="particles"))
    seq.addReader(ex.CsvSimHitReader(level=level, inputDir=str(sim_dir), inputStem="hits",
                                     outputSimHits="simhits"))
    seq.addReader(ex.CsvMeasurementReader(
        level=level, inputDir=str(sim_dir), inputSimHits="simhits",
        outputMeasurements="measurements", outputMeasurementSimHitsMap="measurement_simhits_map",
        outputMeasurementParticlesMap="measurement_particles_map", outputClusters=""))
    id_maps: dict[int, np.ndarray] = {}
    seq.addAlgorithm(_subset_algorithm(ex, level, csv_meas, id_maps))
    # only the seeding's truth-matching monitor reads the selected particles
    seq.addWhiteboardAlias("particles_selected", "particles")

    finder = SeedFinderConfigArg()  # None fields keep ACTS' defaults
    if collision_region_mm is not None:
        finder = finder._replace(
            collisionRegion=(-collision_region_mm * u.mm, collision_region_mm * u.mm))
    if min_pt_mev is not None:
        finder = finder._replace(minPt=min_pt_mev * u.MeV)
    addSeeding(seq, tracking_geometry, field, seedingAlgorithm=SeedingAlgorithm.GridTriplet,
               seedFinderConfigArg=finder,
               initialSigmas=[1 * u.mm, 1 * u.mm, 1 * u.degree, 1 * u.degree,
                              0 * u.e / u.GeV, 1 * u.ns],
               initialSigmaQoverPt=0.1 * u.e / u.GeV, initialSigmaPtRel=0.1,
               initialVarInflation=[1.0] * 6, geoSelectionConfigFile=selection)
    ckf = CkfConfig(seedDeduplication=True, stayOnSeed=True)._replace(
        chi2CutOffMeasurement=15.0, chi2CutOffOutlier=25.0, numMeasurementsCutOff=2)
    selector = TrackSelectorConfig(pt=(0.0, None), absEta=(None, 3.0),
                                   loc0=(-4.0 * u.mm, 4.0 * u.mm), nMeasurementsMin=7,
                                   maxHoles=2, maxOutliers=2)
    addCKFTracks(seq, tracking_geometry, field, trackSelectorConfig=selector, ckfConfig=ckf)
    addAmbiguityResolution(seq, AmbiguityResolutionConfig(
        maximumSharedHits=3, maximumIterations=1000000, nMeasurementsMin=7))
    seq.addAlgorithm(_export_algorithm(ex, level, out_dir, "ambi_tracks", id_maps, counts))
    return seq


def run_acts_reference(sim_dir: Path, out_dir: Path, *, events: list[int] | None = None,
                       threads: int = 1, collision_region_mm: float | None = None,
                       min_pt_mev: float | None = None) -> dict:
    """Reconstruct ``sim_dir``'s events with ACTS; tracks and timings go to ``out_dir``.

    ``events``: event ids (default: all in ``sim_dir``). ``collision_region_mm``: the seeding's
    |z| collision region (default: ACTS' own, +-150 mm); ``min_pt_mev``: its minimum pT
    (default: ACTS' own, 400 MeV). Returns a JSON-ready dict:
    ``event_ids``, ``n_tracks`` per event, ``time_s_per_event`` per stage (``STAGES``),
    ``reco_s_per_event`` (their sum), ``algorithms_s_per_event`` (every sequencer element,
    readers and truth monitors included), ``wall_s`` (sequencer runs, I/O included),
    ``tracks_files`` and ``config``.
    """
    sim_dir, out_dir = Path(sim_dir), Path(out_dir)
    available = _event_ids(sim_dir)
    ids = available if events is None else sorted(set(events))
    missing = sorted(set(ids) - set(available))
    if missing or not ids:
        raise InputError(f"events {missing or ids} not in the simulation", path=sim_dir)
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_meas = {e: _csv_measurements(sim_dir, e) for e in ids}
    counts: dict[int, int] = {}
    totals: dict[str, float] = {}
    wall = 0.0
    for k, (skip, n) in enumerate(_contiguous_runs(ids)):
        work = out_dir / f"acts-run{k}"
        work.mkdir(exist_ok=True)
        seq = _build_sequencer(sim_dir, work, skip=skip, events=n, threads=threads,
                               csv_meas=csv_meas, out_dir=out_dir, counts=counts,
                               collision_region_mm=collision_region_mm,
                               min_pt_mev=min_pt_mev)
        t0 = time.perf_counter()
        seq.run()
        wall += time.perf_counter() - t0
        seen: dict[str, int] = {}
        for ident, total in _read_timing(work / "timing.csv"):
            name = ident.split(":", 1)[-1]
            seen[name] = seen.get(name, 0) + 1
            key = name if seen[name] == 1 else f"{name}#{seen[name]}"
            totals[key] = totals.get(key, 0.0) + total
    n_events = len(ids)
    per_event = {k: v / n_events for k, v in totals.items()}
    stages = {stage: per_event.get(alg, 0.0) for alg, stage in STAGES.items()}
    absent = [alg for alg in STAGES if alg not in per_event]
    if absent:
        raise RuntimeError(f"the Sequencer reported no time for {absent}")
    log.info("ACTS reference: %d events, reco %.3f s/event, %s tracks", n_events,
             sum(stages.values()), [counts.get(e) for e in ids])
    return {
        "event_ids": ids,
        "n_tracks": {str(e): counts[e] for e in ids},
        "threads": threads,
        "time_s_per_event": stages,
        "reco_s_per_event": float(sum(stages.values())),
        "algorithms_s_per_event": per_event,
        "wall_s": wall,
        "tracks_files": {str(e): str(tracks_path(out_dir, e)) for e in ids},
        "config": acts_config_summary(collision_region_mm, min_pt_mev),
    }


def tracks_path(out_dir: Path, event_id: int) -> Path:
    """Where ``run_acts_reference`` writes event ``event_id``'s tracks."""
    return Path(out_dir) / f"{event_stem(event_id)}-{TRACKS_SUFFIX}"


def read_acts_tracks(out_dir: Path, event_id: int) -> dict[str, np.ndarray]:
    """One event's exported tracks: ``offsets``/``measurement_ids`` (CSR), ``geometry_ids``
    (aligned with ``measurement_ids``) and per-track ``n_measurements``, ``n_outliers``,
    ``n_holes``, ``chi2``, ``pt`` (GeV), ``eta``, ``charge``."""
    path = tracks_path(out_dir, event_id)
    if not path.is_file():
        raise InputError("no exported ACTS tracks", path=path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def evaluate_acts_tracks(sim_dir: Path, out_dir: Path, event_ids: Sequence[int],
                         config: MatchingConfig | None = None) -> tuple[dict, list[dict]]:
    """Score exported ACTS tracks with taas' metrics; returns (summary, per-event sizes).

    Measurement ids are ``TruthHits.hit_id`` (one truth row per ACTS measurement), so each
    track index maps straight to its truth particle. Every exported measurement's module is
    checked against the CSV's: a mismatch would mean the id mapping is wrong.
    """
    config = config or MatchingConfig()
    ds = open_dataset(sim_dir)
    results, sizes = [], []
    for e in event_ids:
        event = ds.read(e)
        hits = event.hits
        tracks = read_acts_tracks(out_dir, e)
        rows = hit_rows(tracks["measurement_ids"], hits)
        if np.any(rows < 0):
            raise InputError(f"event {e}: exported track holds measurement id -1")
        if not np.array_equal(hits["module_key"][rows], tracks["geometry_ids"]):
            raise InputError(f"event {e}: exported measurement modules differ from the CSV's")
        local = np.stack([tracks["local0"], tracks["local1"]], axis=1)
        csv_local = np.stack([hits["ref_u"][rows], hits["ref_v"][rows]], axis=1)
        two_d = np.isfinite(local).all(axis=1)
        if not np.array_equal(local[two_d], csv_local[two_d].astype(np.float32)):
            raise InputError(f"event {e}: exported measurement positions differ from the CSV's")
        res = evaluate_event(tracks["offsets"], rows, hits["particle_id"], event.particles,
                             config, event_id=e)
        results.append(res)
        sizes.append({"event_id": e, "cells": len(event.cells), "measurements": len(hits),
                      "particles": len(event.particles),
                      "primary_particles": int(np.sum(event.particles["primary"])),
                      "fiducial_particles": int(res["counts"]["n_fiducial_particles"]),
                      "acts_tracks": len(tracks["offsets"]) - 1})
    return evaluate_events(results), sizes
