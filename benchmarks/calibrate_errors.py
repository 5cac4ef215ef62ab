"""Calibrate the measurement error model from truth residuals on training-seed events.

Run: ``.venv/bin/python benchmarks/calibrate_errors.py`` (defaults: 20 ``small`` events of the
training seed 1001, the seed the workflow trains its models on, never the evaluated events').
Writes the calibration the fit and the CKF read, ``taas/tracking/measurement_errors.json``
(``taas.tracking.measurement_errors``), with its provenance, and a summary beside the other
benchmark results, ``benchmarks/results/calibrate_errors.json``.

Per event the cells are clustered by the CPU clustering stage (the variances under test are the
clustering's), and each measurement whose cells all come from one simulated hit is compared
with that hit's crossing point on the module (Fatras records hits on the sensor's mid-plane):
the residual along local u and v in units of the pitch. Clusters that merge hits of several
particles are left out: which truth they measure is undefined (at ``small`` there were none:
all 121,600 measurements of the shipped calibration were single-hit). Per detector volume,
axis and cluster size along the axis the error is the 3-sigma clipped RMS of the residuals:
the RMS, the quantity a Kalman fit needs (single-cell residuals are uniform, not Gaussian: a
68% width would overstate them by 18%), without the delta-ray tails that no Gaussian error
describes. Sizes with fewer than ``--min-entries`` residuals take
the value of the nearest calibrated size of the same volume and axis (recorded as such).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from taas.detector.detector import Detector
from taas.edm.hits import Measurements
from taas.events.dataset import open_dataset
from taas.events.event import Event
from taas.events.presets import PRESETS
from taas.events.simulation import check_simulated, simulate
from taas.io.atomic import atomic_write
from taas.metrics.truth_link import hit_rows, majority_label
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PipelineSpec
from taas.tracking.measurement_errors import CALIBRATION_FILE, FORMAT, MeasurementErrorModel

log = logging.getLogger("calibrate_errors")

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "calibrate_errors.json"
#: The workflow's training seed (``taas.workflow.models``): calibrate on the events models
#: train on, evaluate on others.
TRAINING_SEED = 1001
#: Clusters wider than this along an axis share the last entry.
MAX_SIZE = 16
#: Clipping of the RMS, in units of the current RMS estimate.
CLIP_SIGMAS = 3.0

CLUSTERING = PipelineSpec("clustering", (("clustering", "cpu"),), "clustering only")


def truth_residuals(event: Event, pipeline: Pipeline) -> dict[str, np.ndarray]:
    """Per single-hit measurement: volume, sizes, pitches, clustering variances and the
    residuals (mm) of the centroid to its simulated hit along local u and v."""
    det: Detector = event.detector
    tensors = pipeline.run(event.cells.to_tensors()).tensors
    meas = Measurements.from_tensors(tensors)
    cluster = tensors["clusters.cluster_id"]
    n = len(meas)
    hit = hit_rows(event.cells["hit_id"], event.hits)
    linked = (cluster >= 0) & (hit >= 0)
    truth = majority_label(cluster[linked], hit[linked], n, fill=-1)
    # a measurement is pure when every linked cell points at the same truth hit
    lowest = np.full(n, np.iinfo(np.int64).max)
    highest = np.full(n, -1)
    np.minimum.at(lowest, cluster[linked], hit[linked])
    np.maximum.at(highest, cluster[linked], hit[linked])
    untruthed = np.bincount(cluster[(cluster >= 0) & (hit < 0)], minlength=n) > 0
    pure = np.flatnonzero((truth >= 0) & (lowest == highest) & ~untruthed)
    rows = det.index_of(meas["module_key"][pure])
    xyz = np.stack([event.hits[c][truth[pure]] for c in ("tx", "ty", "tz")], axis=1)
    local = det.global_to_local(rows, xyz)
    return {
        "volume": det.modules["volume_id"][rows].astype(np.int64),
        "size_u": meas["size_u"][pure].astype(np.int64),
        "size_v": meas["size_v"][pure].astype(np.int64),
        "pitch_u": det.modules["pitch_u"][rows], "pitch_v": det.modules["pitch_v"][rows],
        "var_u": meas["var_u"][pure], "var_v": meas["var_v"][pure],
        "res_u": meas["local_u"][pure] - local[:, 0],
        "res_v": meas["local_v"][pure] - local[:, 1],
        "n_measurements": np.array([n]), "n_pure": np.array([len(pure)]),
    }


def clipped_rms(x: np.ndarray, clip: float = CLIP_SIGMAS, iterations: int = 10) -> float:
    """RMS about zero of ``x`` after iteratively dropping entries beyond ``clip`` RMS from the
    median (start: the MAD's Gaussian equivalent)."""
    x = np.asarray(x, float)
    center = float(np.median(x))
    rms = 1.4826 * float(np.median(np.abs(x - center))) or float(np.sqrt(np.mean(x**2)))
    for _ in range(iterations):
        kept = x[np.abs(x - center) <= clip * rms]
        new = float(np.sqrt(np.mean(kept**2)))
        if np.isclose(new, rms, rtol=1e-6):
            break
        rms = new
    return rms


def calibrate(res: dict[str, np.ndarray], *, max_size: int = MAX_SIZE, min_entries: int = 50,
              ) -> dict[str, Any]:
    """The calibration document's ``volumes`` entry: per volume and axis sigma / pitch by
    cluster size, entries per size and where each value came from."""
    volumes: dict[str, Any] = {}
    for vol in np.unique(res["volume"]):
        entry: dict[str, Any] = {}
        for axis in ("u", "v"):
            in_vol = res["volume"] == vol
            size = np.minimum(res[f"size_{axis}"][in_vol], max_size)
            rel = res[f"res_{axis}"][in_vol] / res[f"pitch_{axis}"][in_vol]
            claimed = np.sqrt(res[f"var_{axis}"][in_vol]) / res[f"pitch_{axis}"][in_vol]
            counts = np.array([int(np.sum(size == s)) for s in range(1, max_size + 1)])
            good = np.flatnonzero(counts >= min_entries)
            if not len(good):
                raise RuntimeError(f"volume {vol} axis {axis}: no cluster size with "
                                   f">= {min_entries} residuals; simulate more events")
            sigma, source, cluster_sigma = [], [], []
            for k in range(max_size):
                nearest = int(good[np.argmin(np.abs(good - k) * 2 + (good > k))])
                sigma.append(clipped_rms(rel[size == nearest + 1]))
                source.append(nearest + 1)
                cluster_sigma.append(float(np.sqrt(np.mean(claimed[size == k + 1] ** 2)))
                                     if counts[k] else None)
            entry[f"sigma_{axis}"] = [round(s, 5) for s in sigma]
            entry[f"entries_{axis}"] = counts.tolist()
            entry[f"from_size_{axis}"] = source
            entry[f"cluster_sigma_{axis}"] = [None if s is None else round(s, 5)
                                              for s in cluster_sigma]
        volumes[str(int(vol))] = entry
    return volumes


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def pull_widths(res: dict[str, np.ndarray], model: MeasurementErrorModel | None,
                ) -> dict[str, float]:
    """Clipped-RMS width of residual / sigma per axis: clustering variances (model None) or
    the model's."""
    out = {}
    for axis in ("u", "v"):
        if model is None:
            sigma = np.sqrt(res[f"var_{axis}"])
        else:
            sigma = model.sigma_over_pitch(res["volume"], res[f"size_{axis}"], axis) \
                * res[f"pitch_{axis}"]
        out[axis] = round(clipped_rms(res[f"res_{axis}"] / sigma), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--seed", type=int, default=TRAINING_SEED)
    parser.add_argument("--sim-dir", type=Path, default=None,
                        help="simulate into or reuse this directory (default: a temporary one)")
    parser.add_argument("--min-entries", type=int, default=50)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--summary", type=Path, default=RESULT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    preset = PRESETS[args.preset]
    want = {"seed": args.seed, "vertices": preset.vertices,
            "particles_per_vertex": preset.particles_per_vertex}
    with tempfile.TemporaryDirectory() as tmp:
        sim_dir = args.sim_dir or Path(tmp) / args.preset
        try:
            check_simulated(sim_dir, want, min_events=args.events)
        except (OSError, ValueError):
            simulate(sim_dir, events=args.events, vertices=preset.vertices,
                     particles_per_vertex=preset.particles_per_vertex, seed=args.seed,
                     progress=False)
        ds = open_dataset(sim_dir)
        pipeline = Pipeline(CLUSTERING, ds.detector)
        parts = [truth_residuals(ds.read(e), pipeline) for e in ds.event_ids[:args.events]]
        sim_info = json.loads((sim_dir / "dataset.json").read_text())
        detector_name = ds.detector.name
    res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    volumes = calibrate(res, min_entries=args.min_entries)
    doc = {
        "format": FORMAT,
        "detector": detector_name,
        "quantity": "sigma / pitch of the cluster centroid along local u and v, per volume "
                    "and cluster size along that axis (index 0 = 1 cell; the last entry also "
                    f"serves wider clusters); {CLIP_SIGMAS:g}-sigma clipped RMS of the "
                    "residual to the simulated hit",
        "volumes": volumes,
        "provenance": {
            "script": "benchmarks/calibrate_errors.py", "git_commit": _git_commit(),
            "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "preset": args.preset, "events": args.events, "seed": args.seed,
            "simulation": sim_info, "clustering": "cpu stage, default ClusteringConfig",
            "min_entries": args.min_entries, "max_size": MAX_SIZE,
            "measurements": int(res["n_measurements"].sum()),
            "single_hit_measurements": int(res["n_pure"].sum()),
            "python": platform.python_version(),
        },
    }
    model = MeasurementErrorModel.from_json(doc)
    atomic_write(args.out, lambda p: p.write_text(json.dumps(doc, indent=1) + "\n"))
    summary = {"calibration": str(args.out.resolve().relative_to(ROOT)
                                  if args.out.resolve().is_relative_to(ROOT) else args.out),
               "provenance": doc["provenance"],
               "residual_pull_width_clustering_variances": pull_widths(res, None),
               "residual_pull_width_calibrated": pull_widths(res, model)}
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.summary, lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    log.info("wrote %s; residual/sigma widths: clustering %s, calibrated %s (training events)",
             args.out, summary["residual_pull_width_clustering_variances"],
             summary["residual_pull_width_calibrated"])


if __name__ == "__main__":
    main()
