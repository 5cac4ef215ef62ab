"""What differs between the real TrackML sample and taas' simulation, and what each difference
costs the pipelines (issue 19, item 3: find what breaks the chain on real data).

Run: ``.venv/bin/python benchmarks/trackml_real_data.py [--trackml DIR] [--sim-dir DIR]``.
Writes ``benchmarks/results/trackml_real_data.json`` and a plot beside it. Compares the real
event (``../shared/data/trackml``: 5.5k hits, 36 fiducial particles with pT > 1 GeV) with one
``small`` event simulated with seed 11 (6k space points, 478 particles), both through the same
front end, on what the truth of each shows:

* ``cell_values``: cell value percentiles per volume, and the share of cells at exactly 1.0
  (TrackML's strip volumes 12-18 are read out binary: every cell is 1.0);
* ``features``: per volume, the median node features the cells models read (``charge``,
  ``n_cells``, ``extent_u``), on space points of particles with pT > 1 GeV;
* ``residuals``: per volume, the median and the width (1.4826 MAD) of the centroid's local u
  residual to the true crossing, against the stated error: a constant shift is a Lorentz-like
  drift our geometric digitization does not make;
* ``field``: Bz read back from the truth (``taas.metrics.field_probe``) per (r, |z|) bin;
* ``acorn_remapped``: the ``acorn`` pipeline on the real event as it is and with its cell
  values mapped, per volume, onto the simulation's medians (strips only; strips and pixels):
  the shipped models unchanged, edge efficiency (pT > 1 GeV) after filter and GNN, and tracks;
* ``cpu_lost``: the ``cpu`` chain's fiducial particles it does not reconstruct, each with pT,
  eta, measurements, whether a seed of only its space points exists, the longest track of only
  its measurements, and how far in |z| the particle reaches;
* ``fitted_solenoid``: the solenoid (``taas.detector.field.SolenoidField``) fitted to the
  sample's field samples, the source of ``TRACKML_SOLENOID``;
* ``conditions``: cpu, acorn and acorn_traccc with the conditions taas attaches to TrackML
  data (that solenoid, the Generic detector's material), and the cpu chain with the uniform
  2 T field and/or bare silicon instead.

Rates: two_way matching, pT > 1 GeV, Clopper-Pearson 68.3% errors (36 particles: one is 2.8
points). Machine time is not measured here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scaling_runs import simulated

from taas.events.dataset import open_dataset
from taas.events.event import Event
from taas.gnn.data import build_sample, front_end
from taas.gnn.features import NODE_FEATURE_NAMES
from taas.gnn.training import GraphCounts
from taas.metrics.field_probe import field_samples, fit_solenoid
from taas.pipeline.evaluation import evaluate_reco
from taas.pipeline.reconstruct import event_inputs
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PIPELINES
from taas.tracking.helix import K_FIELD

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
TARGET_PT = 1.0
STRIP_VOLUMES = (12, 13, 14, 16, 17, 18)
R_EDGES = np.array([0.0, 200.0, 600.0, 1100.0])
Z_EDGES = np.array([0.0, 600.0, 1200.0, 2000.0, 3100.0])


def volumes_of(event: Event, module_keys: np.ndarray) -> np.ndarray:
    det = event.detector
    return det.modules["volume_id"][det.index_of(module_keys)]


def cell_values(event: Event) -> dict[str, dict[str, float]]:
    vol = volumes_of(event, event.cells["module_key"])
    out = {}
    for v in np.unique(vol):
        value = event.cells["value"][vol == v]
        p10, p50, p90 = np.percentile(value, [10, 50, 90])
        out[str(v)] = {"cells": len(value), "p10": float(p10), "median": float(p50),
                       "p90": float(p90), "share_at_1": float(np.mean(value == 1.0))}
    return out


def features(event: Event, tensors: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    sample = build_sample(event, tensors)
    vol = volumes_of(event, sample.module)
    pt = particle_pt(sample.particle, sample.particle_ids, sample.particle_pt)
    out = {}
    for v in np.unique(vol):
        sel = (vol == v) & (pt > TARGET_PT)
        if not sel.any():
            continue
        out[str(v)] = {"spacepoints": int(sel.sum()), **{
            name: float(np.median(sample.x[sel, NODE_FEATURE_NAMES.index(name)]))
            for name in ("charge", "n_cells", "extent_u", "extent_v")}}
    return out


def particle_pt(particle: np.ndarray, ids: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """pT of each row's particle, 0 for noise and unknown particles."""
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], particle), 0, max(len(ids) - 1, 0))
    found = ids[order][pos] == particle
    return np.where(found & (particle > 0), pts[order][pos], 0.0)


def residuals(event: Event, reco: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Local u residual of single-particle clusters to their true crossing, per volume."""
    det = event.detector
    cluster = reco["clusters.cluster_id"]
    hit_id = event.cells["hit_id"]
    n = len(reco["measurements.local_u"])
    # a cluster whose cells all come from one truth hit: that hit's crossing
    lo = np.full(n, np.iinfo(np.int64).max)
    hi = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(lo, cluster, hit_id)
    np.maximum.at(hi, cluster, hit_id)
    hit_rows = np.searchsorted(event.hits["hit_id"], lo)
    ok = (lo == hi) & (lo >= 0) & (hit_rows < len(event.hits))
    ok[ok] &= event.hits["hit_id"][hit_rows[ok]] == lo[ok]
    ok[ok] &= event.hits["particle_id"][hit_rows[ok]] > 0
    rows = det.index_of(reco["measurements.module_key"][ok])
    true = np.stack([event.hits[c][hit_rows[ok]] for c in ("tx", "ty", "tz")], axis=1)
    du = reco["measurements.local_u"][ok] - det.global_to_local(rows, true)[:, 0]
    sigma = np.sqrt(reco["measurements.var_u"][ok])
    vol = det.modules["volume_id"][rows]
    out = {}
    for v in np.unique(vol):
        d = du[vol == v]
        median = float(np.median(d))
        out[str(v)] = {"clusters": len(d), "median_du_um": 1e3 * median,
                       "width_du_um": 1e3 * 1.4826 * float(np.median(np.abs(d - median))),
                       "stated_sigma_u_um": 1e3 * float(np.median(sigma[vol == v]))}
    return out


def edge_counts(event: Event, reco: dict[str, np.ndarray]) -> dict[str, float]:
    """pT > 1 GeV truth-edge efficiency after the filter and after the GNN (score cut 0.3,
    the pipeline's)."""
    sample = build_sample(event, front_end(event))
    out = {}
    for name, keep in (("filter", None), ("gnn", 0.3)):
        src, dst = reco["edges.src"], reco["edges.dst"]
        if keep is not None:
            sel = reco["edges.score"] > keep
            src, dst = src[sel], dst[sel]
        counts = GraphCounts()
        counts.add(sample, src, dst, TARGET_PT)
        out[f"{name}_target_efficiency"] = float(counts.result()["target_efficiency"])
    return out


def rates(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: {"value": summary["rates"][k]["value"], "err_low": summary["rates"][k]["err_low"],
                "err_high": summary["rates"][k]["err_high"]}
            for k in ("efficiency", "fake_rate", "duplicate_rate")}


def remapped(event: Event, sim: Event, volumes: tuple[int, ...]) -> Event:
    """``event`` with the cell values of ``volumes`` replaced: strip cells (binary, 1.0) by
    the simulation's median cell value of that volume, pixel cells scaled so that their median
    is the simulation's."""
    from taas.edm.hits import Cells

    vol = volumes_of(event, event.cells["module_key"])
    sim_vol = volumes_of(sim, sim.cells["module_key"])
    value = event.cells["value"].copy()
    for v in volumes:
        sel = vol == v
        if not sel.any() or not (sim_vol == v).any():
            continue
        target = np.median(sim.cells["value"][sim_vol == v])
        value[sel] = target if v in STRIP_VOLUMES else value[sel] * target / np.median(value[sel])
    columns = event.cells.columns()
    columns["value"] = value.astype(np.float32)
    return Event(event.event_id, cells=Cells(columns), hits=event.hits, particles=event.particles,
                 detector=event.detector, source=event.source)


def acorn_remapped(event: Event, sim: Event) -> dict[str, Any]:
    pipeline = Pipeline(PIPELINES["acorn"], event.detector)
    pixels = tuple(int(v) for v in np.unique(volumes_of(event, event.cells["module_key"]))
                   if v not in STRIP_VOLUMES)
    out = {}
    for name, volumes in (("as_is", ()), ("strips_remapped", STRIP_VOLUMES),
                          ("strips_and_pixels_remapped", STRIP_VOLUMES + pixels)):
        variant = remapped(event, sim, volumes) if volumes else event
        reco = pipeline.run(event_inputs(variant)).tensors
        out[name] = {**rates(evaluate_reco(variant, reco)), **edge_counts(variant, reco)}
        print(name, json.dumps(out[name]["efficiency"]), flush=True)
    return out


def cpu_lost(event: Event) -> dict[str, Any]:
    reco = Pipeline(PIPELINES["cpu"], event.detector).run(event_inputs(event)).tensors
    result = evaluate_reco(event, reco)
    from taas.metrics.truth_link import measurement_particles
    from taas.reco.hit_spacepoints import truth_cell_hit_ids

    n_meas = len(reco["measurements.local_u"])
    particle_of = measurement_particles(truth_cell_hit_ids(event), reco["clusters.cluster_id"],
                                        n_meas, event.hits)
    seed_particles = particle_of[reco["spacepoints.measurement_index"][reco["seeds.spacepoints"]]]
    offsets, indices = reco["tracks.meas_offsets"], reco["tracks.meas_indices"]
    track_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    p = result["particles"]
    lost = []
    for pid, pt, eta in zip(p["particle_id"][p["fiducial"] & ~p["reconstructed"]],
                            p["pt"][p["fiducial"] & ~p["reconstructed"]],
                            p["eta"][p["fiducial"] & ~p["reconstructed"]], strict=True):
        mine = particle_of == pid
        own = np.bincount(track_of[mine[indices]], minlength=len(offsets) - 1)
        hits = event.hits["particle_id"] == pid
        last = np.argmax(np.abs(event.hits["tz"][hits]))
        lost.append({"particle_id": int(pid), "pt": float(pt), "eta": float(eta),
                     "measurements": int(mine.sum()),
                     "pure_seeds": int(np.all(seed_particles == pid, axis=1).sum()),
                     "longest_own_track": int(own.max()) if len(own) else 0,
                     "outermost_abs_z_mm": float(abs(event.hits["tz"][hits][last]))})
    return {**rates(result), "lost": lost}


def conditions(path: Path) -> dict[str, Any]:
    """The pipelines on the real event with the conditions taas attaches to TrackML data
    (``TRACKML_SOLENOID``, the Generic material), and the cpu chain with each left out."""
    from taas.detector.field import TRACKML_SOLENOID
    from taas.detector.material import generic_material, silicon_only

    out: dict[str, Any] = {}
    runs = [("cpu", None, None), ("acorn", None, None), ("acorn_traccc", None, None),
            ("cpu", "uniform_2T", None), ("cpu", None, "silicon_only"),
            ("cpu", "uniform_2T", "silicon_only")]
    for name, field_choice, material_choice in runs:
        dataset = open_dataset(path)  # a fresh detector: conditions are cached on it
        event = dataset.read(dataset.event_ids[0])
        detector = event.detector
        detector.field = None if field_choice else TRACKML_SOLENOID
        detector.material = silicon_only(detector) if material_choice else generic_material()
        reco = Pipeline(PIPELINES[name], detector).run(event_inputs(event)).tensors
        label = "+".join([name, *(c for c in (field_choice, material_choice) if c)])
        out[label] = rates(evaluate_reco(event, reco))
        print(label, json.dumps(out[label]["efficiency"]), flush=True)
    return out


def field(event: Event) -> dict[str, Any]:
    samples = field_samples(event)
    return {"samples": len(samples), "median_bz": float(np.median(samples.bz)),
            "bins": samples.binned(R_EDGES, Z_EDGES)}


def helix_deviation(event: Event, bz: float = 2.0) -> dict[str, float]:
    """How far each pT > 1 GeV particle's outermost truth hit lies from the circle its first
    hit's momentum starts in a uniform ``bz``: the reconstruction's field assumption tested on
    the truth alone (scattering and energy loss give the simulation's share)."""
    hits, particles = event.hits, event.particles
    charge = dict(zip(particles["particle_id"].tolist(), particles["q"].tolist(), strict=True))
    deviations = []
    for pid in np.unique(hits["particle_id"][hits["particle_id"] > 0]):
        rows = np.flatnonzero(hits["particle_id"] == pid)
        r = np.hypot(hits["tx"][rows], hits["ty"][rows])
        rows = rows[np.argsort(r)]
        first, last = rows[0], rows[-1]
        pt = math.hypot(hits["tpx"][first], hits["tpy"][first])
        if len(rows) < 8 or pt < TARGET_PT or math.hypot(hits["tx"][last], hits["ty"][last]) < 500:
            continue
        radius = pt / (K_FIELD * bz)
        q = charge.get(int(pid), 1.0)
        ux, uy = hits["tpx"][first] / pt, hits["tpy"][first] / pt
        # positive charges turn clockwise in +Bz: the centre is to the right of the direction
        cx, cy = hits["tx"][first] + q * uy * radius, hits["ty"][first] - q * ux * radius
        deviations.append(abs(math.hypot(hits["tx"][last] - cx, hits["ty"][last] - cy) - radius))
    d = np.asarray(deviations)
    return {"particles": len(d), "median_mm": float(np.median(d)),
            "p90_mm": float(np.percentile(d, 90))}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, marker in (("trackml", "o"), ("simulation", "s")):
        for r_min in R_EDGES[:-1]:
            rows = [b for b in result[name]["field"]["bins"] if b["r_min"] == r_min]
            z = [(b["abs_z_min"] + b["abs_z_max"]) / 2 for b in rows]
            left.errorbar(z, [b["bz_median"] for b in rows], [b["bz_spread"] for b in rows],
                          marker=marker, capsize=2, linestyle="-" if name == "trackml" else ":",
                          label=f"{name}, r {r_min:.0f}-")
    left.axhline(2.0, color="grey", linewidth=0.8)
    left.set_xlabel("|z| (mm)")
    left.set_ylabel("Bz from truth momenta (T)")
    left.set_title("field the events were simulated in", fontsize=10)
    left.legend(fontsize=6)
    vols = sorted(result["trackml"]["features"], key=int)
    x = np.arange(len(vols))
    for k, (name, shift) in enumerate((("trackml", -0.2), ("simulation", 0.2))):
        right.bar(x + shift, [result[name]["features"].get(v, {}).get("charge", 0.0)
                              for v in vols], 0.4, label=name, color=f"C{k}")
    right.set_xticks(x, vols)
    right.set_xlabel("volume")
    right.set_ylabel("median charge feature (pT > 1 GeV)")
    right.set_title("cluster charge the cells models read", fontsize=10)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def describe(event: Event) -> dict[str, Any]:
    tensors = front_end(event)
    return {"sizes": event.sizes(), "cell_values": cell_values(event),
            "features": features(event, tensors), "residuals": residuals(event, tensors),
            "field": field(event), "helix_deviation_2T": helix_deviation(event)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackml", type=Path, default=ROOT.parent / "shared" / "data" / "trackml")
    parser.add_argument("--sim-dir", type=Path)
    parser.add_argument("--out", default="trackml_real_data.json")
    args = parser.parse_args()
    real_set = open_dataset(args.trackml)
    real = real_set.read(real_set.event_ids[0])
    with tempfile.TemporaryDirectory() as work:
        sim_set = open_dataset(simulated("small", 1, Path(work), args.sim_dir))
        sim = sim_set.read(sim_set.event_ids[0])
    result = {"benchmark": "trackml_real_data", "trackml": describe(real),
              "simulation": describe(sim), "acorn_remapped": acorn_remapped(real, sim),
              "cpu": cpu_lost(real), "conditions": conditions(args.trackml),
              "fitted_solenoid": dataclasses.asdict(fit_solenoid(field_samples(real))),
              "matching": "two_way, pT > 1 GeV"}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
