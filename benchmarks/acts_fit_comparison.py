"""taas' Kalman fit against ACTS' on identical measurement lists: parameters, covariances, pulls.

Run: ``.venv/bin/python benchmarks/acts_fit_comparison.py`` (defaults: 5 ``small`` events, seed
1; the chain check on 2 ``medium`` events). Writes ``benchmarks/results/acts_fit_comparison.json``.

Per event the cells are clustered by taas' CPU clustering; every primary particle with at least
``--min-measurements`` measurements, at most one per module, becomes a truth proto-track
(particles with two measurements on one module are left out: ACTS' fitter takes one per
surface). Both fitters then fit the same lists with the same measurement positions and
variances (the error model under test, ``taas.tracking.measurement_errors``):

* taas: ``fit_prototracks`` + ``tracks_to_perigee`` (perigee parameters at the z axis, here
  without the beam pipe's scattering, which ACTS' extrapolation to its reference surface does
  not add either: with it taas' phi and theta sigmas are 4-6% larger, the beam pipe's share);
* ACTS (pyacts 48.1): ``TrackFittingAlgorithm`` with ``makeKalmanFitterFunction`` (multiple
  scattering and energy loss on, no reverse filtering, no chi2 cut), reference surface the
  perigee at the origin, in the Generic detector's tracking geometry and the 2 T field. ACTS
  reads the measurements from CSV files written here with ACTS' own ``CsvMeasurementReader``
  and its start parameters with ``CsvTrackParameterReader``: the helix estimate taas' fit also
  starts from (``taas.tracking.estimation``) with taas' own prior, the loose diagonal covariance
  on the first module (1 mm, 50 mrad, |q/p| + 0.1/GeV), both moved to the perigee with the
  bound-to-perigee Jacobian (a full covariance). ACTS transports them back to the first module,
  so both fits start from the same information. A prior that is loose at the perigee instead
  (diagonal 1 mm in d0 and z0) is a beam-line constraint only ACTS has: it moves the fit by up to
  5 sigma at |eta| > 2 and low pT (91% of tracks within 0.1 sigma with it, 100% without), both
  directly and through the momentum each filter step scatters with (the q/p filtered after two
  or three measurements, which the prior dominates).

Per track and parameter (d0, z0, phi, theta, q/p): ``(taas - ACTS) / sigma_ACTS`` and
``sigma_taas / sigma_ACTS``. Only tracks where ACTS used every measurement are compared (its
navigator can miss a surface; the count is reported). Pulls against the particles' true
perigee parameters are given for both fitters and both error models (the clustering's
variances before, the calibration after), and ``--chain-preset`` runs the whole ``cpu``
pipeline with each error model (efficiency, fake rate, chain pulls: the CKF's chi2 test reads
the same variances).

Control (``calibrated_no_material``): both fits without scattering and energy loss, the same
algebra in the same geometry: the parameters agree there too, although the model is wrong for
these tracks (pulls against truth 7 to 19 wide), and so do the d0, phi and q/p sigmas. The z0
and theta sigmas differ by up to ~3% for a fifth of the tracks, from ACTS' side: without noise
theta is a constant of motion, so its smoothed sigma must stay the filtered one of the last
module (taas': within 1e-3 for every track, 1e-5 at the 1st and 99th percentiles; ACTS': 80%
within 1e-3), but ACTS' last smoothing step (second to first module, where the loose prior's
2.5e-3 rad^2 must cancel to ~1e-11) loses precision when the prior arrives strongly correlated
from the perigee. With material the sigmas agree to 5e-4 (q/p: 4e-3) at the 1st and 99th
percentiles.

The remaining misses with material (3 of 2500 tracks, q/p only, at most 0.26 sigma): two
tracks cross a short-strip endcap disc within 5 mm of its outer edge just before leaving the
volume, where ACTS' navigator does not stop (taas adds that disc's material), and one crosses
a pixel module without a measurement, whose material ACTS adds and taas' fit (which knows only
the measured modules) does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taas.edm.hits import Measurements
from taas.edm.lookup import find_rows
from taas.edm.tracks import ProtoTracks
from taas.events.acts_csv import LOCAL_KEY_2D
from taas.events.dataset import open_dataset
from taas.events.event import Event, event_stem
from taas.events.presets import PRESETS
from taas.events.simulation import FIELD_T, check_simulated, simulate
from taas.io.atomic import atomic_write
from taas.io.csv_table import write_csv_columns
from taas.metrics.resolution import PERIGEE_NAMES, pulls, summarize
from taas.metrics.track_pulls import truth_perigee
from taas.metrics.truth_link import measurement_particles
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import reconstruct
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import CPU, PipelineSpec
from taas.tracking.estimation import estimate_parameters
from taas.tracking.fitter import (
    TrackFitConfig,
    fit_prototracks,
    order_along_tracks,
    tracks_to_perigee,
)
from taas.tracking.measurement_errors import CALIBRATED, CLUSTER, measurement_variances
from taas.tracking.parameters import bound_to_perigee

sys.path.insert(0, str(Path(__file__).resolve().parent / "acts_reference"))
from chain import _csv_measurements, _subset_algorithm

log = logging.getLogger("acts_fit_comparison")

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "acts_fit_comparison.json"
#: The five compared perigee parameters (the time is not measured).
COMPARED = PERIGEE_NAMES[:5]
#: Agreement target: |taas - ACTS| below this many ACTS sigmas on every parameter.
AGREEMENT_SIGMAS = 0.1
#: ACTS reads the start parameters from ``eventNNNNNNNNN-<stem>.csv``.
START_STEM = "taas-start-parameters"
CLUSTERING = PipelineSpec("clustering", (("clustering", "cpu"),), "clustering only")

_COV_NAMES = ("d0", "z0", "phi", "theta", "qop")


class TruthFitInput:
    """One event's measurements and truth proto-tracks (one list per particle)."""

    def __init__(self, event: Event, pipeline: Pipeline, min_measurements: int) -> None:
        det = event.detector
        tensors = pipeline.run(event.cells.to_tensors()).tensors
        self.event_id = event.event_id
        self.detector = det
        self.measurements = Measurements.from_tensors(tensors)
        n = len(self.measurements)
        particle_of = measurement_particles(event.cells["hit_id"], tensors["clusters.cluster_id"],
                                            n, event.hits)
        particles = event.particles
        rows, found = find_rows(particles["particle_id"], particle_of)
        eligible = found & (particle_of != 0)
        eligible[eligible] = particles["primary"][rows[eligible]] & (
            particles["q"][rows[eligible]] != 0)
        meas = np.flatnonzero(eligible)
        order = np.lexsort((meas, rows[meas]))
        meas, owner = meas[order], rows[meas][order]
        starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
        lengths = np.diff(np.r_[starts, len(meas)])
        modules = self.measurements["module_key"][meas]
        offsets, indices, particle_rows, self.doubled = [0], [], [], 0
        for s, length in zip(starts, lengths, strict=True):
            if length < min_measurements:
                continue
            if len(np.unique(modules[s:s + length])) < length:
                self.doubled += 1
                continue
            indices.extend(meas[s:s + length])
            offsets.append(len(indices))
            particle_rows.append(owner[s])
        self.prototracks = ProtoTracks(offsets=np.asarray(offsets, np.int64),
                                       indices=np.asarray(indices, np.int64))
        self.particle_rows = np.asarray(particle_rows, np.int64)
        self.truth = truth_perigee(particles, self.particle_rows, FIELD_T)

    def start_parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """Perigee start parameters (n, 6) and covariance (n, 6, 6): the helix estimate and the
        loose prior taas' fit starts from on the first module, moved to the perigee (ACTS reads
        start parameters at the perigee only; the same prior keeps the comparison fair)."""
        det, meas = self.detector, self.measurements
        offsets = self.prototracks["offsets"]
        rows = det.index_of(meas["module_key"])
        xyz = det.local_to_global(rows, meas["local_u"], meas["local_v"])
        ordered = order_along_tracks(offsets, self.prototracks["indices"], xyz)
        out, cov = np.empty((len(offsets) - 1, 6)), np.empty((len(offsets) - 1, 6, 6))
        for k in range(len(offsets) - 1):
            idx = ordered[offsets[k]:offsets[k + 1]]
            first = rows[idx[:1]]
            bound, prior = estimate_parameters(xyz[idx][None], det.center[first],
                                               det.rotation[first], FIELD_T)
            perigee, perigee_cov = bound_to_perigee(bound, prior, det.center[first],
                                                    det.rotation[first], bz=FIELD_T)
            assert perigee_cov is not None
            out[k], cov[k] = perigee[0], perigee_cov[0]
        return out, cov


def taas_fit(data: TruthFitInput, errors: str, *, material: bool = True,
             ) -> dict[str, np.ndarray]:
    """taas' fit of the truth proto-tracks: proto-track index, perigee parameters, covariance.

    The perigee is reached without the passive material in between (``tracks_to_perigee``'s
    ``material=False``): ACTS' extrapolation to its reference surface adds none either (with
    it, taas' phi and theta sigmas are 4-6% larger than ACTS', the beam pipe's share)."""
    tracks, fitted = fit_prototracks(data.detector, data.measurements, data.prototracks,
                                     TrackFitConfig(measurement_errors=errors,
                                                    multiple_scattering=material))
    params, cov = tracks_to_perigee(tracks, data.detector, FIELD_T, material=False)
    return {"track": fitted, "params": params, "cov": cov}


def _write_acts_inputs(work: Path, data: TruthFitInput, errors: str) -> None:
    """The measurements (ids = taas measurement rows, the variances under test) and the start
    parameters, as ACTS' CSV readers read them."""
    meas = data.measurements
    var = measurement_variances(data.detector, meas, errors)
    n = len(meas)
    zeros = np.zeros(n)
    stem = event_stem(data.event_id)
    xyz = data.detector.local_to_global(data.detector.index_of(meas["module_key"]),
                                        meas["local_u"], meas["local_v"])
    write_csv_columns(work / f"{stem}-measurements.csv", {
        "measurement_id": np.arange(n, dtype=np.int64), "geometry_id": meas["module_key"],
        "local_key": np.full(n, LOCAL_KEY_2D, dtype=object),
        "local0": meas["local_u"], "local1": meas["local_v"], "phi": zeros, "theta": zeros,
        "time": zeros, "var_local0": var[:, 0], "var_local1": var[:, 1], "var_phi": zeros,
        "var_theta": zeros, "var_time": zeros,
        **dict(zip(("global_x", "global_y", "global_z"), xyz.T, strict=True))})
    # the reader insists on a measurement -> simulated hit map; nothing here reads it
    write_csv_columns(work / f"{stem}-measurement-simhit-map.csv",
                      {"measurement_id": np.zeros(0, np.int64), "hit_id": np.zeros(0, np.int64)})
    params, cov = data.start_parameters()
    columns = {name: params[:, i] for i, name in enumerate(_COV_NAMES)}
    for i, a in enumerate(_COV_NAMES):
        for j, b in enumerate(_COV_NAMES):
            columns[f"var_{a}" if i == j else f"cov_{a}{b}"] = cov[:, i, j]
    columns["trackId"] = np.arange(len(params), dtype=np.int64)
    order = ["trackId", "d0", "z0", "phi", "theta", "qop", *(f"var_{a}" for a in _COV_NAMES),
             *(f"cov_{a}{b}" for a in _COV_NAMES for b in _COV_NAMES if a != b)]
    write_csv_columns(work / f"{stem}-{START_STEM}.csv", {k: columns[k] for k in order})


def acts_fit(inputs: Sequence[TruthFitInput], errors: str, work: Path, *,
             material: bool = True) -> dict[int, dict]:
    """ACTS' Kalman fit of every event's truth proto-tracks (consecutive event ids); per event
    the proto-track index, perigee parameters and covariance of every track ACTS fitted with
    all its measurements, plus counts. ``material`` False: no scattering, no energy loss."""
    import acts
    import acts.examples as ex

    from taas.detector.acts_generic import generic_tracking_geometry

    ids = [d.event_id for d in inputs]
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError(f"events must be consecutive, got {ids}")
    work.mkdir(parents=True, exist_ok=True)
    for data in inputs:
        _write_acts_inputs(work, data, errors)
    by_id = {d.event_id: d for d in inputs}
    level = acts.logging.ERROR
    _, geometry = generic_tracking_geometry()
    field = acts.ConstantBField(acts.Vector3(0.0, 0.0, FIELD_T * acts.UnitConstants.T))
    seq = ex.Sequencer(events=len(ids), skip=ids[0], numThreads=1, logLevel=level,
                       outputDir=str(work), trackFpes=False)
    seq.addReader(ex.CsvMeasurementReader(level=level, inputDir=str(work),
                                          outputMeasurements="measurements",
                                          outputMeasurementSimHitsMap="simhit_map"))
    seq.addReader(ex.CsvTrackParameterReader(level=level, inputDir=str(work),
                                             inputStem=START_STEM,
                                             outputTrackParameters="start_parameters",
                                             beamspot=[0.0, 0.0, 0.0]))
    id_maps: dict[int, np.ndarray] = {}
    csv_meas = {e: _csv_measurements(work, e) for e in ids}
    seq.addAlgorithm(_subset_algorithm(ex, level, csv_meas, id_maps))

    class TruthProtoTracks(ex.IAlgorithm):
        """taas' proto-tracks in ACTS container indices (the reader reorders measurements)."""

        def __init__(self) -> None:
            super().__init__(name="TaasTruthProtoTracks", level=level)
            self.out = ex.WriteDataHandle(self, ex.ProtoTrackContainer, "ProtoTracks")
            self.out.initialize("prototracks")

        def execute(self, context: Any) -> Any:
            to_acts = np.argsort(id_maps[context.eventNumber])  # taas row -> ACTS index
            protos = by_id[context.eventNumber].prototracks
            container = ex.ProtoTrackContainer()
            offsets, indices = protos["offsets"], protos["indices"]
            for k in range(len(offsets) - 1):
                track = ex.ProtoTrack()
                for i in to_acts[indices[offsets[k]:offsets[k + 1]]]:
                    track.append(int(i))
                container.append(track)
            self.out(context, container)
            return ex.ProcessCode.SUCCESS

    results: dict[int, dict] = {}

    class Export(ex.IAlgorithm):
        def __init__(self) -> None:
            super().__init__(name="TaasFitExport", level=level)
            self.tracks = ex.ReadDataHandle(self, ex.ConstTrackContainer, "Tracks")
            self.tracks.initialize("kf_tracks")

        def execute(self, context: Any) -> Any:
            tracks = self.tracks(context.eventStore)
            data = by_id[context.eventNumber]
            to_taas = id_maps[context.eventNumber]
            owner = np.full(len(data.measurements), -1, np.int64)
            lengths = np.diff(data.prototracks["offsets"])
            owner[data.prototracks["indices"]] = np.repeat(np.arange(len(lengths)), lengths)
            proto, params, cov, n_meas = [], [], [], []
            for track in tracks:
                first = None
                for state in track.trackStatesReversed:
                    if state.typeFlags.isMeasurement:
                        link = ex.IndexSourceLink.fromSourceLink(state.uncalibratedSourceLink)
                        first = int(to_taas[link.index()])
                        break
                if first is None or not track.hasReferenceSurface:
                    continue
                proto.append(owner[first])
                params.append(np.asarray(track.parameters, float))
                matrix = track.covariance  # BoundMatrix: element access only
                cov.append([[matrix[i, j] for j in range(6)] for i in range(6)])
                n_meas.append(track.nMeasurements)
            proto_a = np.asarray(proto, np.int64)
            complete = np.asarray(n_meas, np.int64) == lengths[proto_a] if proto else \
                np.zeros(0, bool)
            results[context.eventNumber] = {
                "track": proto_a[complete],
                "params": np.asarray(params).reshape(-1, 6)[complete],
                "cov": np.asarray(cov).reshape(-1, 6, 6)[complete],
                "n_fitted": len(proto), "n_incomplete": int((~complete).sum()),
            }
            return ex.ProcessCode.SUCCESS

    seq.addAlgorithm(TruthProtoTracks())
    fitter = ex.makeKalmanFitterFunction(
        geometry, field, multipleScattering=material, energyLoss=material,
        reverseFilteringMomThreshold=0.0, reverseFilteringCovarianceScaling=1.0,
        freeToBoundCorrection=ex.FreeToBoundCorrection(False), chi2Cut=float("inf"),
        useJosephFormulation=True, level=level)
    seq.addAlgorithm(ex.TrackFittingAlgorithm(
        level=level, inputMeasurements="measurements", inputProtoTracks="prototracks",
        inputInitialTrackParameters="start_parameters", inputClusters="",
        outputTracks="kf_tracks", pickTrack=-1, fit=fitter,
        calibrator=ex.makePassThroughCalibrator(),
        referenceSurface=acts.Surface.createPerigee(acts.Vector3(0.0, 0.0, 0.0))))
    seq.addAlgorithm(Export())
    seq.run()
    return results


def compare(ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray],
            ) -> dict[str, np.ndarray]:
    """Tracks both fitted: ``delta`` = (taas - ACTS) / sigma_ACTS and ``sigma_ratio`` =
    sigma_taas / sigma_ACTS, (n, 5) over ``COMPARED``; ``track`` the proto-track indices."""
    common, i_ours, i_theirs = np.intersect1d(ours["track"], theirs["track"],
                                              return_indices=True)
    a, b = ours["params"][i_ours, :5], theirs["params"][i_theirs, :5]
    var_a = np.diagonal(ours["cov"][i_ours], axis1=1, axis2=2)[:, :5]
    var_b = np.diagonal(theirs["cov"][i_theirs], axis1=1, axis2=2)[:, :5]
    diff = a - b
    diff[:, 2] = (diff[:, 2] + np.pi) % (2 * np.pi) - np.pi
    return {"track": common, "delta": diff / np.sqrt(var_b),
            "sigma_ratio": np.sqrt(var_a / var_b)}


def _pull_summary(params: np.ndarray, cov: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    table = summarize(pulls(params, cov, truth))
    return {name: {k: table[name][k] for k in ("pull_n", "pull_mean", "pull_std",
                                                  "pull_width68")} for name in COMPARED}


def comparison_summary(inputs: Sequence[TruthFitInput], errors: str, work: Path, *,
                       material: bool = True) -> dict[str, Any]:
    """Both fits of every event's truth proto-tracks with ``errors``; agreement and pulls."""
    t0 = time.perf_counter()
    ours = {d.event_id: taas_fit(d, errors, material=material) for d in inputs}
    t_taas = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = acts_fit(inputs, errors, work, material=material)
    t_acts = time.perf_counter() - t0
    deltas, ratios, pulls_taas, pulls_acts = [], [], [], []
    n_protos = n_acts = n_incomplete = n_ours = 0
    for d in inputs:
        o, t = ours[d.event_id], theirs[d.event_id]
        c = compare(o, t)
        deltas.append(c["delta"])
        ratios.append(c["sigma_ratio"])
        for fit, out in ((o, pulls_taas), (t, pulls_acts)):
            sel = np.isin(fit["track"], c["track"])
            out.append((fit["params"][sel], fit["cov"][sel], d.truth[fit["track"][sel]]))
        n_protos += len(d.prototracks)
        n_ours += len(o["track"])
        n_acts += t["n_fitted"]
        n_incomplete += t["n_incomplete"]
    delta, ratio = np.concatenate(deltas), np.concatenate(ratios)
    within = np.all(np.abs(delta) < AGREEMENT_SIGMAS, axis=1)

    def stacked(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        params, cov, truth = zip(*parts, strict=True)
        return np.concatenate(params), np.concatenate(cov), np.concatenate(truth)

    return {
        "measurement_errors": errors, "material_effects": material,
        "prototracks": n_protos, "taas_fitted": n_ours, "acts_fitted": n_acts,
        "acts_missed_a_measurement": n_incomplete, "compared": len(delta),
        "fraction_within_0p1_sigma": float(within.mean()) if len(delta) else None,
        "fraction_within_0p1_sigma_per_parameter": {
            name: float(np.mean(np.abs(delta[:, i]) < AGREEMENT_SIGMAS))
            for i, name in enumerate(COMPARED)},
        "delta_over_sigma_acts": {
            name: {"median": float(np.median(delta[:, i])),
                   "p99_abs": float(np.quantile(np.abs(delta[:, i]), 0.99)),
                   "max_abs": float(np.max(np.abs(delta[:, i])))}
            for i, name in enumerate(COMPARED)},
        "sigma_taas_over_sigma_acts": {
            name: {"median": float(np.median(ratio[:, i])),
                   "p01": float(np.quantile(ratio[:, i], 0.01)),
                   "p99": float(np.quantile(ratio[:, i], 0.99))}
            for i, name in enumerate(COMPARED)},
        "pulls_vs_truth": {"taas": _pull_summary(*stacked(pulls_taas)),
                           "acts": _pull_summary(*stacked(pulls_acts))},
        "fit_seconds": {"taas": t_taas, "acts_sequencer": t_acts},
    }


def prepare_inputs(sim_dir: Path, events: int, min_measurements: int,
                   ) -> tuple[list[TruthFitInput], list[dict[str, int]]]:
    """Truth fit inputs and sizes of the first ``events`` events of ``sim_dir``."""
    ds = open_dataset(sim_dir)
    pipeline = Pipeline(CLUSTERING, ds.detector)
    inputs, sizes = [], []
    for e in ds.event_ids[:events]:
        event = ds.read(e)
        data = TruthFitInput(event, pipeline, min_measurements)
        inputs.append(data)
        sizes.append({"event_id": e, "cells": len(event.cells),
                      "measurements": len(data.measurements),
                      "particles": len(event.particles),
                      "truth_prototracks": len(data.prototracks),
                      "left_out_two_on_a_module": data.doubled})
    return inputs, sizes


def chain_check(sim_dir: Path, work: Path) -> dict[str, Any]:
    """The ``cpu`` pipeline with the clustering's variances and with the calibration (fit and
    CKF alike): efficiency, fake and duplicate rates, and perigee pulls of matched tracks."""
    out: dict[str, Any] = {}
    for errors in (CLUSTER, CALIBRATED):
        spec = CPU.with_configs({"ckf": {"measurement_errors": errors},
                                 "track_fit": {"measurement_errors": errors}})
        reco = reconstruct(sim_dir, work / errors / "reco", spec, progress=False, warmup=True)
        metrics = evaluate_run(sim_dir, reco, work / errors / "metrics")
        times: dict[str, list[float]] = {}
        for line in (reco / "timings.csv").read_text().splitlines()[1:]:
            _, stage, _, _, seconds = line.split(",")
            times.setdefault(stage, []).append(float(seconds))
        out[errors] = {
            "efficiency": metrics["efficiency"], "fake_rate": metrics["fake_rate"],
            "duplicate_rate": metrics["duplicate_rate"], "n_tracks": metrics["n_tracks"],
            "n_fiducial_particles": metrics["n_fiducial_particles"],
            "matching": metrics["matching"],
            "pulls": {name: {k: metrics["pulls"][name][k]
                             for k in ("pull_n", "pull_mean", "pull_std", "pull_width68")}
                      for name in COMPARED},
            "ckf_s_per_event": float(np.mean(times["ckf"])),
            "track_fit_s_per_event": float(np.mean(times["track_fit"])),
            "sizes": json.loads((reco / "run.json").read_text())["sizes"],
        }
    return out


def _simulated(sim_dir: Path, preset_name: str, events: int, seed: int) -> Path:
    preset = PRESETS[preset_name]
    try:
        return check_simulated(sim_dir, {"seed": seed, "vertices": preset.vertices,
                                         "particles_per_vertex": preset.particles_per_vertex},
                               min_events=events)
    except (OSError, ValueError):
        return simulate(sim_dir, events=events, vertices=preset.vertices,
                        particles_per_vertex=preset.particles_per_vertex, seed=seed,
                        progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-measurements", type=int, default=7)
    parser.add_argument("--chain-preset", default="medium",
                        help="preset of the cpu-chain check ('' skips it)")
    parser.add_argument("--chain-events", type=int, default=2)
    parser.add_argument("--sim-dir", type=Path, default=None,
                        help="simulate into or reuse DIR/<preset> (default: a temporary dir)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        base = args.sim_dir or Path(tmp)
        sim = _simulated(base / args.preset, args.preset, args.events, args.seed)
        inputs, sizes = prepare_inputs(sim, args.events, args.min_measurements)
        fits = {errors: comparison_summary(inputs, errors, Path(tmp) / f"acts-{errors}")
                for errors in (CLUSTER, CALIBRATED)}
        # control: the same fits without material effects, where both are the same algebra
        fits[f"{CALIBRATED}_no_material"] = comparison_summary(
            inputs, CALIBRATED, Path(tmp) / "acts-no-material", material=False)
        chain = None
        if args.chain_preset:
            chain_sim = _simulated(base / args.chain_preset, args.chain_preset,
                                   args.chain_events, args.seed)
            chain = {"preset": args.chain_preset, "events": args.chain_events,
                     "seed": args.seed, **chain_check(chain_sim, Path(tmp) / "chain")}
    import acts

    result = {
        "description": "taas' Kalman fit vs ACTS' KalmanFitter on identical truth measurement "
                       "lists, both starting from the same estimate and prior (taas' loose "
                       "first-module covariance, moved to the perigee for ACTS); 'cluster' = "
                       "the clustering's variances (before), 'calibrated' "
                       "= taas.tracking.measurement_errors (after), 'calibrated_no_material' "
                       "= both fits without scattering and energy loss (control); perigee "
                       "without the beam pipe on both sides (ACTS' extrapolation adds none); "
                       "cpu_chain: the whole cpu pipeline with each error source in the CKF "
                       "and the fit",
        "preset": args.preset, "events": args.events, "seed": args.seed,
        "min_measurements": args.min_measurements, "sizes": sizes,
        "agreement_sigmas": AGREEMENT_SIGMAS, "fits": fits, "cpu_chain": chain,
        "acts_version": f"{acts.version.major}.{acts.version.minor}.{acts.version.patch}",
        "python": platform.python_version(), "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda p: p.write_text(json.dumps(result, indent=2) + "\n"))
    for name, f in fits.items():
        log.info("%s: %d tracks compared, %.4f within %.1f sigma of ACTS; taas pull widths %s",
                 name, f["compared"], f["fraction_within_0p1_sigma"] or 0, AGREEMENT_SIGMAS,
                 {k: round(v["pull_width68"], 3)
                  for k, v in f["pulls_vs_truth"]["taas"].items()})


if __name__ == "__main__":
    main()
