"""The fpga pipeline's physics against acorn's on the same events, per fixed-point precision.

Run: ``.venv/bin/python benchmarks/fpga_vs_acorn.py --events DIR --work DIR
[--precisions 18,8 16,6 ...] [--phi-fraction F] [--out fpga_vs_acorn_medium.json]``.

Reconstructs every event of ``DIR`` with ``acorn`` (float) and with ``fpga`` once per data
precision ``ap_fixed<W,I>`` (LayerNorm inputs ``W+6`` bits with 6 integer bits, as
``benchmarks/fpga_precision_scan.py``; no ``--precisions``: the pipeline's default), evaluates
each (two_way matching, pT > 1 GeV) and writes efficiency, fake and duplicate rates with their
binomial errors, the differences fpga - acorn against issue 16's targets (efficiency within 0.5
points, fake rate within 0.2 points), the smallest precision that meets them, and the emulation
time per stage, to ``benchmarks/results/``. A pipeline whose ``WORK/<name>/run.json`` exists is
not run again, so an interrupted run is picked up (an emulated ``medium`` event takes over an
hour on two cores).

``--phi-fraction F`` (0 < F <= 1) keeps only the cells, hits and particles of the modules whose
centres lie in a phi wedge of ``F * 2 pi`` (written as parquet events under ``WORK/wedge``):
the wedge has the event's local density, which is what the fixed-point arithmetic meets, at a
fraction of the emulation time. Tracks that leave the wedge are cut for both pipelines alike;
only the paired differences are meant to be read. Times are C simulation on this CPU
(emulation), not hardware times.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from taas.edm.truth import Particles
from taas.events.dataset import open_dataset
from taas.events.event import Event, write_event_parquet, write_manifest
from taas.pipeline.evaluation import evaluate_run
from taas.pipeline.reconstruct import reconstruct
from taas.pipeline.spec import PIPELINES, PipelineSpec

RESULTS = Path(__file__).resolve().parent / "results"
RATES = ("efficiency", "fake_rate", "duplicate_rate")
TARGETS = {"efficiency_within": 0.005, "fake_rate_within": 0.002}


def stage_seconds(run: Path) -> dict[str, dict[str, object]]:
    """Mean seconds per event and the device of each stage, from ``timings.csv``."""
    seconds: dict[str, list[float]] = defaultdict(list)
    devices: dict[str, str] = {}
    with (run / "timings.csv").open() as f:
        for row in csv.DictReader(f):
            seconds[row["stage"]].append(float(row["seconds"]))
            devices[row["stage"]] = row["device"]
    return {stage: {"seconds_per_event": sum(v) / len(v), "device": devices[stage]}
            for stage, v in seconds.items()}


def phi_wedge(event: Event, fraction: float) -> Event:
    """The event restricted to the modules whose centres lie within ``fraction * pi`` of
    phi = 0; particles keep their rows, with ``nhits`` counted in the wedge."""
    modules = event.detector.modules
    inside = np.abs(np.arctan2(modules["cy"], modules["cx"])) <= fraction * math.pi
    keys = modules["module_key"][inside]
    hits = event.hits.take(np.isin(event.hits["module_key"], keys))
    cells = event.cells.take(np.isin(event.cells["module_key"], keys))
    columns = event.particles.columns()
    ids, counts = np.unique(hits["particle_id"], return_counts=True)
    pos = np.clip(np.searchsorted(ids, columns["particle_id"]), 0, max(len(ids) - 1, 0))
    found = (ids[pos] == columns["particle_id"]) if len(ids) else np.zeros(
        len(columns["particle_id"]), bool)
    columns["nhits"] = np.where(found, counts[pos] if len(ids) else 0, 0).astype(np.int32)
    return Event(event.event_id, cells=cells, hits=hits, particles=Particles(columns),
                 detector=event.detector, source=event.source)


def write_wedges(events: Path, out: Path, fraction: float) -> Path:
    """The phi wedge of every event of ``events`` as a parquet dataset in ``out``."""
    if (out / "dataset.json").is_file():
        return out
    dataset = open_dataset(events)
    sizes = []
    for event in dataset:
        wedge = phi_wedge(event, fraction)
        write_event_parquet(wedge, out)
        sizes.append(wedge.sizes())
    for name in ("detector.parquet", "material.parquet"):
        if (dataset.detector_path.parent / name).is_file():
            shutil.copy(dataset.detector_path.parent / name, out / name)
    info = json.loads((events / "dataset.json").read_text())
    write_manifest(out, {**info, "phi_wedge_fraction": fraction, "wedge_sizes": sizes,
                         "wedge_of": str(events)})
    return out


def fpga_spec(precision: str | None) -> PipelineSpec:
    """The fpga pipeline at data precision ``"W,I"`` (None: its default)."""
    if precision is None:
        return PIPELINES["fpga"]
    width, integer = map(int, precision.split(","))
    fpga = {"data": f"ap_fixed<{width},{integer}>",
            "norm_input": f"ap_fixed<{min(width + 6, 32)},6>"}
    return PIPELINES["fpga"].with_configs(
        {"graph_construction": {"fpga": fpga}, "edge_classification": {"fpga": fpga}})


def run_and_evaluate(events: Path, run: Path, spec: PipelineSpec) -> dict[str, Any]:
    """Reconstruct (unless ``run`` holds a finished run) and evaluate one pipeline."""
    if not (run / "run.json").is_file():
        reconstruct(events, run, spec, progress=True)
    metrics = evaluate_run(events, run, run.with_name(f"{run.name}-eval"))
    return {**{k: metrics[k] for k in metrics if k.split("_err")[0] in RATES
               or k.startswith("n_")}, "stages": stage_seconds(run)}


def plot(result: dict[str, Any], path: Path) -> None:
    """Efficiency and fake rate (with binomial errors) per fpga precision against acorn's
    value and the issue's target band around it (efficiency +-0.5 points, fakes +0.2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(result["fpga"], key=lambda p: tuple(map(int, p.split(",")))
                    if p != "default" else (math.inf,))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, rate, below, above in ((axes[0], "efficiency", TARGETS["efficiency_within"],
                                    TARGETS["efficiency_within"]),
                                   (axes[1], "fake_rate", 1.0, TARGETS["fake_rate_within"])):
        rows = [result["fpga"][p] for p in labels]
        values = 100 * np.array([r[rate] for r in rows])
        errors = 100 * np.array([[r[f"{rate}_err_low"] for r in rows],
                                 [r[f"{rate}_err_high"] for r in rows]])
        reference = 100 * result["acorn"][rate]
        ax.axhline(reference, color="k", lw=1, label="acorn (float)")
        ax.axhspan(max(reference - 100 * below, 0.0), reference + 100 * above, color="g",
                   alpha=0.15, label="issue 16 target")
        ax.errorbar(range(len(labels)), values, yerr=errors, fmt="o", label="fpga (emulated)")
        ax.set_xticks(range(len(labels)), [f"ap_fixed<{p}>" if p != "default" else p
                                           for p in labels])
        ax.set_ylabel(f"{rate.replace('_', ' ')} [%]")
    axes[0].legend(fontsize=8)
    particles = result["acorn"]["n_fiducial_particles"]
    fig.suptitle(f"fpga vs acorn, {result['n_events']} event(s), phi fraction "
                 f"{result['phi_fraction']:g}, {particles} fiducial particles "
                 f"({result['matching']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--precisions", nargs="*", default=None,
                        help="data precisions W,I to scan (default: the pipeline's own)")
    parser.add_argument("--phi-fraction", type=float, default=1.0)
    parser.add_argument("--out", default="fpga_vs_acorn_medium.json")
    args = parser.parse_args()
    if not 0.0 < args.phi_fraction <= 1.0:
        parser.error(f"--phi-fraction must be in (0, 1], got {args.phi_fraction}")
    events = args.events
    if args.phi_fraction < 1.0:
        events = write_wedges(args.events, args.work / "wedge", args.phi_fraction)
    dataset = open_dataset(events)
    acorn = run_and_evaluate(events, args.work / "acorn", PIPELINES["acorn"])
    rows: dict[str, dict[str, Any]] = {}
    for precision in args.precisions or [None]:
        name = "fpga" if precision is None else f"fpga_{precision.replace(',', '_')}"
        rows[precision or "default"] = run_and_evaluate(events, args.work / name,
                                                        fpga_spec(precision))
    differences = {p: {rate: row[rate] - acorn[rate] for rate in RATES}
                   for p, row in rows.items()}
    meets = {p: abs(d["efficiency"]) <= TARGETS["efficiency_within"]
             and d["fake_rate"] <= TARGETS["fake_rate_within"] for p, d in differences.items()}
    passing = [p for p in rows if meets[p] and p != "default"]
    result = {
        "benchmark": "fpga_vs_acorn", "events": str(args.events),
        "phi_fraction": args.phi_fraction, "n_events": len(dataset.event_ids),
        "dataset": json.loads((events / "dataset.json").read_text()),
        "matching": "two_way, pT > 1 GeV", "acorn": acorn, "fpga": rows,
        "fpga_minus_acorn": differences, "targets": TARGETS, "meets_targets": meets,
        "smallest_passing_precision": min(passing, key=lambda p: tuple(map(int, p.split(","))))
        if passing else None,
        "note": "fpga times are C simulation (emulation) on this CPU with 2 threads, on a "
                "machine shared with other jobs: wall times are indicative only",
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(json.dumps(differences), f"-> {out}")


if __name__ == "__main__":
    main()
