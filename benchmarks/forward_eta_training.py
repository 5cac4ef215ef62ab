"""Binary-strips models trained on a particle gun out to |eta| < 4.0 (TrackML's acceptance).

Run: ``.venv/bin/python benchmarks/forward_eta_training.py [--trackml DIR] [--work DIR]``.
Writes ``benchmarks/results/forward_eta_training.json``. One thread: export
``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1`` (torch is set to 1 here).

Why: on the real TrackML event (``../shared/data/trackml``) the ``acorn`` pipeline with the
``binary_strips`` models finds 28/36 fiducial particles with 33.5% fakes, and its GNN loses most
truth edges in the pixel end caps. ``benchmarks/trackml_endcap_probe.py`` found that 105 of the
120 pT > 1 GeV end-cap truth edges belong to particles with |eta| >= 2.5, which taas' particle
gun (``taas.events.simulation.simulate``, ``eta_max=2.5``) never makes: they cross the inner
disks at small radius, where modules overlap, and leave two or three space points on one disk;
the GNN keeps only 35% of those same-disk edges. TrackML's detector covers about |eta| < 4.

What: the ``binary_strips`` recipe (``taas.gnn.binary_strips.train_binary_strips``: 16 + 4
``small`` events, seeds 201 / 202, binary strip readout, ``binary_strips_config()``, the same
epochs, ``train_all`` on one thread) is trained again on events simulated with ``eta_max=4.0``
into a scratch directory (``--work``; nothing is installed). Then the shipped ``binary_strips``
set and this ``forward_eta`` set run the ``acorn`` pipeline (the scratch set through the GNN
stages' ``checkpoint_dir``) on three events:

* ``trackml``: the real TrackML event;
* ``small_binary_eta2.5``: one ``small`` event, binary strips, |eta| < 2.5, seed 11 (as
  ``benchmarks/binary_strips.py``);
* ``small_binary_eta4``: one ``small`` event, binary strips, |eta| < 4.0, seed 12.

Per (model set, event): two_way efficiency, fake and duplicate rates (fiducial pT > 1 GeV,
|eta| < 2.5, primary; Clopper-Pearson 68.3% errors), tracks and fake tracks, the efficiency of
the forward particles (pT > 1 GeV, primary, 2.5 < |eta|, at least 3 measurements: not counted
in the fiducial rates), the efficiency with and without pixel end-cap space points, and the
pT > 1 GeV truth-edge efficiency after the filter and after the GNN (score > 0.3) overall and
per volume-pair class, incl. pixel end cap and end cap within one disk, each for all particles
and split at |eta| = 2.5 (``trackml_endcap_probe.edge_classes``). Also the training's
validation metrics and wall time beside the shipped set's. One training seed: the differences
carry the spread of one training run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from gun_training import (
    FIDUCIAL_ETA_MAX,
    SHIPPED_GUN,
    THREADS,
    Gun,
    evaluation_events,
    forward_efficiency,
    rates_text,
    retrain_parser,
    train_set,
    training_summary,
)
from scaling_runs import write_result
from trackml_endcap_probe import GNN_CUT, edge_classes, endcap_split
from trackml_real_data import TARGET_PT, edge_counts, rates

from taas.events.event import Event
from taas.gnn.checkpoint import shipped_dir
from taas.gnn.data import build_sample, front_end
from taas.pipeline.evaluation import evaluate_reco
from taas.pipeline.reconstruct import GNN_STAGES, event_inputs, with_model_set
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PIPELINES, PipelineSpec

PIPELINE = "acorn"
SHIPPED_SET = "binary_strips"
NEW_SET = "forward_eta"
#: TrackML's acceptance: the new training's particle gun.
FORWARD_GUN = Gun(SHIPPED_GUN.pt_min, SHIPPED_GUN.pt_max, SHIPPED_GUN.pt_spectrum, 4.0)
#: The fresh evaluation events: name -> (seed, gun); all ``small``, binary strips.
EVAL_EVENTS = {"small_binary_eta2.5": (11, SHIPPED_GUN), "small_binary_eta4": (12, FORWARD_GUN)}


def specs(checkpoints: Path) -> dict[str, PipelineSpec]:
    """The acorn pipeline on the shipped binary-strips set and on the scratch checkpoints."""
    base = PIPELINES[PIPELINE]
    scratch = {stage: {"checkpoint_dir": str(checkpoints)} for stage in GNN_STAGES}
    return {SHIPPED_SET: with_model_set(base, SHIPPED_SET),
            NEW_SET: base.with_configs(scratch)}


def evaluate(event: Event, spec: PipelineSpec) -> dict[str, Any]:
    """One acorn run: rates, tracks, forward efficiency, end-cap split, edge efficiencies."""
    t0 = time.perf_counter()
    reco = Pipeline(spec, event.detector).run(event_inputs(event)).tensors
    run_s = time.perf_counter() - t0
    summary = evaluate_reco(event, reco)
    sample = build_sample(event, front_end(event))
    counts = summary["counts"]
    return {**rates(summary), "tracks": counts["n_tracks"],
            "fake_tracks": counts["n_tracks"] - counts["n_matched_tracks"],
            "reconstructed": counts["n_reconstructed_particles"],
            "fiducial_particles": counts["n_fiducial_particles"],
            "trackml_score": summary.get("trackml_score"),
            "forward_efficiency_abs_eta_gt_2.5": forward_efficiency(summary),
            "endcap_split": endcap_split(summary, sample, event),
            **edge_counts(event, reco),
            "edge_efficiency_by_class": edge_classes(event, sample, reco),
            "pipeline_wall_s": run_s}


def show(event_name: str, set_name: str, r: dict[str, Any]) -> None:
    cls = r["edge_efficiency_by_class"]["all_particles"]

    def gnn(name: str) -> str:
        v = cls[name]["gnn_efficiency"]
        return "n/a" if v is None else f"{v:.3f}"

    print(f"{event_name:>20} {set_name:>13}: {rates_text(r)}, endcap {gnn('pixel_endcap')} "
          f"same disk {gnn('pixel_endcap_same_disk')}", flush=True)


def main() -> None:
    parser = retrain_parser(__doc__, "forward_eta_training")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    work = args.work.resolve()
    checkpoints = work / "checkpoints"
    t0 = time.perf_counter()
    metrics = train_set(checkpoints, FORWARD_GUN, {}, retrain=args.retrain)
    train_s = time.perf_counter() - t0
    torch.set_num_threads(THREADS)
    shipped_metrics = json.loads((shipped_dir(SHIPPED_SET) / "metrics.json").read_text())

    events, event_info = evaluation_events(args.trackml, work / "eval", EVAL_EVENTS)

    runs: dict[str, dict[str, Any]] = {name: {} for name in events}
    for set_name, spec in specs(checkpoints).items():
        for event_name, event in events.items():
            runs[event_name][set_name] = evaluate(event, spec)
            show(event_name, set_name, runs[event_name][set_name])

    result = {
        "benchmark": "forward_eta_training", "pipeline": PIPELINE,
        "matching": f"two_way, fiducial pT > {TARGET_PT:g} GeV, |eta| < {FIDUCIAL_ETA_MAX:g}, "
                    "primary; Clopper-Pearson 68.3% errors",
        "forward_efficiency": f"particles with pT > {TARGET_PT:g} GeV, primary, >= 3 "
                              f"measurements and |eta| > {FIDUCIAL_ETA_MAX:g} (outside the "
                              "fiducial rates)",
        "edge_efficiency": f"truth edges of particles with pT > {TARGET_PT:g} GeV kept after "
                           f"the filter and after the GNN (score > {GNN_CUT:g})",
        "threads": THREADS, "torch_threads": torch.get_num_threads(),
        "thread_env": {var: os.environ.get(var) for var in
                       ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")},
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "model_sets": {
            SHIPPED_SET: {"checkpoints": str(shipped_dir(SHIPPED_SET)),
                          "data": {**shipped_metrics["data"], "eta_max": FIDUCIAL_ETA_MAX},
                          "training": training_summary(shipped_metrics),
                          "validation_events": f"small, binary strips, |eta| < "
                                               f"{FIDUCIAL_ETA_MAX:g}"},
            NEW_SET: {"checkpoints": str(checkpoints), "data": metrics["data"],
                      "training": training_summary(metrics),
                      "script_wall_s_of_training": train_s,
                      "validation_events": f"small, binary strips, |eta| < "
                                           f"{FORWARD_GUN.eta_max:g}",
                      "training_seeds": "one training run (TrainingConfig.seed default)"}},
        "events": event_info,
        "runs": runs,
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
