"""The ``taas`` command line: one sub-command per job, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taas.errors import TaasError
from taas.service.commands import add_service_commands

log = logging.getLogger("taas")


def _cmd_simulate(args: argparse.Namespace) -> None:
    from taas.events.presets import PRESETS
    from taas.events.simulation import simulate

    preset = PRESETS[args.preset]
    out = simulate(
        args.out,
        events=args.events,
        vertices=args.vertices if args.vertices is not None else preset.vertices,
        particles_per_vertex=(args.particles_per_vertex if args.particles_per_vertex is not None
                              else preset.particles_per_vertex),
        seed=args.seed,
        pt_range=tuple(args.pt_range) if args.pt_range else (preset.pt_min, preset.pt_max),
        pt_spectrum=args.pt_spectrum,
        eta_max=args.eta_max if args.eta_max is not None else preset.eta_max,
        progress=not args.quiet,
        strip_readout=args.strip_readout,
        field=args.field,
        noise_fraction=args.noise_fraction,
    )
    print(f"wrote {args.events} events to {out}")


def _cmd_info(args: argparse.Namespace) -> None:
    from taas.events.dataset import open_dataset
    from taas.plots.event_display import plot_event

    ds = open_dataset(args.path, detector=args.detector)
    det = ds.detector
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"dataset   {ds.directory} ({ds.format}), {len(ds)} events")
    print(f"detector  {det.name}: {len(det)} modules from {ds.detector_path.name}")
    rows = []
    for i, event in enumerate(ds):
        sizes = event.sizes()
        rows.append({"event_id": event.event_id, **sizes})
        print(f"event {event.event_id:>6}: " + ", ".join(f"{v} {k}" for k, v in sizes.items()))
        if i == 0:
            png = plot_event(event, Path(args.out) / f"event{event.event_id:09d}-hits.png")
            print(f"picture   {png}")
    summary = {"directory": str(ds.directory), "format": ds.format, "modules": len(det),
               "events": rows}
    (Path(args.out) / "info.json").write_text(json.dumps(summary, indent=2))


def _cmd_convert(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from taas.detector.material import material_for, write_material
    from taas.events.acts_csv import write_acts_event
    from taas.events.dataset import open_dataset
    from taas.events.event import write_event_parquet

    ds = open_dataset(args.source, detector=args.detector)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = {"parquet": write_event_parquet, "acts-csv": write_acts_event}[args.to]
    for event in tqdm(ds, total=len(ds), desc=f"to {args.to}", unit="event",
                      disable=args.quiet):
        writer(event, out)
    ds.detector.to_parquet(out / "detector.parquet")
    if ds.detector.material is not None or ds.detector.name == "acts-generic":
        write_material(material_for(ds.detector), out)
    print(f"wrote {len(ds)} events to {out} ({args.to})")


def _cmd_reconstruct(args: argparse.Namespace) -> None:
    from taas.detector.detector import Detector
    from taas.pipeline.reconstruct import PipelineFactory, reconstruct
    from taas.pipeline.spec import PipelineSpec, get_pipeline
    from taas.service.discovery import FailoverRunner, discovery_from_args
    from taas.stages.configs import read_stage_configs

    spec = get_pipeline(args.pipeline)
    if args.accel:
        spec = spec.with_accel(args.accel)
    spec = spec.with_configs(read_stage_configs(args.stage_configs))
    factory: PipelineFactory | None = None
    info: dict[str, Any] = {"mode": "direct"}
    runners: list[FailoverRunner] = []
    discovery = discovery_from_args(args)
    if discovery is not None:
        from taas.service.discovery import served_runner
        from taas.service.security import client_security_from_args

        mode = "served" if args.served_as == "stages" else "served-pipeline"
        security = client_security_from_args(args)
        service: dict[str, Any] = {}  # filled by the runner as events go: run.json's record
        info = {"mode": mode, "service": service, "security": security.describe()}

        def served(spec_: PipelineSpec, detector: Detector) -> FailoverRunner:
            runners.append(served_runner(spec_, detector, config=discovery, mode=mode,
                                         security=security, record=service))
            return runners[-1]

        factory = served
    try:
        out = reconstruct(args.events, args.out, spec, detector=args.detector,
                          progress=not args.quiet, warmup=args.warmup, factory=factory,
                          info=info)
    finally:
        for runner in runners:
            runner.close()
    print(f"wrote reconstruction outputs and timings.csv to {out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from taas.metrics.config import MatchingConfig
    from taas.pipeline.evaluation import evaluate_run

    config = MatchingConfig(style=args.matching, pt_min=args.pt_min)
    summary = evaluate_run(args.events, args.tracks, args.out, config, detector=args.detector)
    for name in ("efficiency", "fake_rate", "duplicate_rate"):
        value = summary[name]
        print(f"{name:>15}: " + ("n/a" if value is None else f"{value:.4f}"))
    print(f"wrote metrics.json and plots to {args.out}")


def _cmd_summarize(args: argparse.Namespace) -> None:
    from taas.report.summary import write_summary

    out = write_summary(args.reco, args.metrics, args.out)
    print(out.read_text())


def _cmd_train(args: argparse.Namespace) -> None:
    from taas.gnn.training import TrainingConfig, reproduce_shipped, train_all

    if args.reproduce_shipped:
        metrics = reproduce_shipped(args.out, install=args.install, progress=not args.quiet,
                                    num_threads=args.threads, devices=args.devices)
    else:
        config = TrainingConfig(device=args.device, devices=args.devices, amp=args.amp)
        metrics = train_all(args.out, events_dir=args.events, val_dir=args.val_events_dir,
                            preset=args.preset, train_events=args.train_events,
                            val_events=args.val_events, seed=args.seed, config=config,
                            num_threads=args.threads, progress=not args.quiet)
        if args.install:
            _install_checkpoints(args.out)
    for stage in ("embedding", "filter", "gnn"):
        v = metrics[stage]["validation"]
        print(f"{stage:>10}: edge efficiency {v['efficiency']:.4f}  purity {v['purity']:.4f}  "
              f"edges/event {v['edges_per_event']:.0f}")
    print(f"wrote embedding.pt, filter.pt, gnn.pt and metrics.json to {args.out}"
          + (" and installed them as the shipped checkpoints" if args.install else ""))


def _install_checkpoints(out: Path) -> None:
    """Copy freshly trained checkpoints over the shipped ones (what the acorn stages load)."""
    import shutil

    from taas.gnn.checkpoint import SHIPPED, shipped_path

    for name in SHIPPED:
        shutil.copyfile(Path(out) / f"{name}.pt", shipped_path(name))


def _cmd_detector(args: argparse.Namespace) -> None:
    from taas.events.dataset import load_detector

    if args.source == "generic":
        from taas.detector.acts_generic import build_generic_detector

        det = build_generic_detector()
    else:
        det = load_detector(args.source)
    det.to_parquet(args.out)
    print(f"wrote {det!r} to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every sub-command has a one-line help."""
    from taas.events.presets import PRESETS

    parser = argparse.ArgumentParser(
        prog="taas", description="taas: charged-particle track reconstruction on CPU, GPU and FPGA")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_event_commands(sub, PRESETS)
    _add_reconstruction_commands(sub)
    _add_train_command(sub, PRESETS)
    add_service_commands(sub)
    return parser


def _add_train_command(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                       presets: Mapping[str, Any]) -> None:
    p = sub.add_parser(
        "train", help="train the GNN models (metric learning, edge filter, interaction GNN) "
        "of the acorn pipeline",
        description="Train the three GNN models of the acorn pipeline. With "
        "--reproduce-shipped: the recipe of the shipped checkpoints (the medium recipe: "
        "embedding on small events, working point, edge filter and GNN on medium events with "
        "taas.gnn.training.shipped_config(), fixed seeds; see SHIPPED_DATA and "
        "reproduce_shipped). Without it: all three stages from scratch with the default "
        "TrainingConfig on --preset events (a quick small-event run by default; fine for "
        "small events, too weak for medium density: use --reproduce-shipped for that). "
        "Training runs on PyTorch Lightning (progress bars, --devices N for data-parallel "
        "DDP, --amp for bf16 on CUDA); checkpoints are taas' own format.",
        epilog="Example: taas train --out runs/shipped --reproduce-shipped [--devices 2] "
        "[--overwrite]")
    p.add_argument("--out", required=True, type=Path,
                   help="output directory (checkpoints, metrics.json, cached samples)")
    p.add_argument("--reproduce-shipped", action="store_true",
                   help="the shipped (medium) recipe: same events, seeds and settings as the "
                   "shipped checkpoints (CPU, --threads 1; ~30 min on two busy cores), written "
                   "to --out (over the shipped files only with --overwrite); ignores the data "
                   "options below")
    p.add_argument("--preset", choices=sorted(presets), default="small",
                   help="event size to simulate when --events is not given (default: small; "
                   "not used by --reproduce-shipped)")
    p.add_argument("--train-events", type=int, default=40,
                   help="events to simulate for training (default: 40)")
    p.add_argument("--val-events", type=int, default=10,
                   help="events to simulate for validation (default: 10)")
    p.add_argument("--seed", type=int, default=1,
                   help="simulation seed of the training events; validation uses seed + 1")
    p.add_argument("--events", type=Path, help="train on this event directory instead")
    p.add_argument("--val-events-dir", type=Path,
                   help="validation event directory (default: last fifth of --events)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default: 1, fastest on a shared machine)")
    p.add_argument("--devices", type=int, default=1,
                   help="data-parallel processes (Lightning DDP: gloo on CPUs, NCCL on GPUs, "
                   "one GPU each; N graphs per step, 1/N of the steps per epoch; default: 1, "
                   "the shipped recipe's)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="training device (default: auto, CUDA when present; not used by "
                   "--reproduce-shipped, which trains on the CPU)")
    p.add_argument("--amp", action="store_true",
                   help="bf16 mixed precision (CUDA only; CPUs train in float32)")
    p.add_argument("--overwrite", "--install", dest="install", action="store_true",
                   help="also copy the trained checkpoints over the shipped ones in "
                   "taas/gnn/checkpoints (default: write only under --out)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _add_event_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                        presets: Mapping[str, Any]) -> None:
    from taas.detector.acts_generic import STRIP_READOUTS
    from taas.detector.field import SIMULATION_FIELDS
    from taas.events.simulation import PT_SPECTRA

    p = sub.add_parser("simulate", help="simulate events with ACTS (Generic detector, Fatras, "
                       "geometric digitization) into ACTS/traccc CSV")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--preset", choices=sorted(presets), default="tiny",
                   help="event size preset (default: tiny)")
    p.add_argument("--events", type=int, default=1, help="number of events (default: 1)")
    p.add_argument("--vertices", type=int, help="vertices per event (overrides the preset)")
    p.add_argument("--particles-per-vertex", type=int, help="particles per vertex (overrides)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--pt-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="the particle gun's pT range in GeV (overrides the preset's 0.5 10)")
    p.add_argument("--pt-spectrum", choices=PT_SPECTRA, default="flat",
                   help="pT flat in the range, or flat in log pT (as many particles per "
                   "decade: a soft spectrum like TrackML's; default: flat)")
    p.add_argument("--eta-max", type=float, metavar="ETA",
                   help="the particle gun's |eta| range (overrides the preset's 2.5; up to 4, "
                   "TrackML's acceptance, whose forward tracks cross the inner pixel discs)")
    p.add_argument("--strip-readout", choices=STRIP_READOUTS, default="analog",
                   help="strip cells: analog path lengths, or binary (1.0 per fired strip, as "
                   "TrackML and the ITk strips; default: analog)")
    p.add_argument("--field", choices=sorted(SIMULATION_FIELDS), default="uniform",
                   help="magnetic field: uniform 2 T, or trackml (the real TrackML sample's "
                   "solenoid, falling to ~1 T at the far end caps; default: uniform)")
    p.add_argument("--noise-fraction", type=float, default=0.0, metavar="F",
                   help="add noise hits (particle 0) until they are F of each event's hits, "
                   "0 <= F < 1, on random modules like the real TrackML sample's noise "
                   "(there 0.15; default: 0, none)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("info", help="print event and detector sizes and draw the hits of the "
                       "first event")
    p.add_argument("path", type=Path, help="event directory (parquet, ACTS CSV or TrackML)")
    p.add_argument("--detector", type=Path, help="detector file if not in the directory")
    p.add_argument("--out", type=Path, default=Path("results/info"),
                   help="where the PNG and info.json go (default: results/info)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="convert an event directory to parquet or ACTS/traccc CSV")
    p.add_argument("source", type=Path, help="event directory")
    p.add_argument("out", type=Path, help="output directory")
    p.add_argument("--to", choices=("parquet", "acts-csv"), default="parquet",
                   help="output layout (default: parquet)")
    p.add_argument("--detector", type=Path, help="detector file if not in the source directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("detector", help="save a detector (ACTS Generic or TrackML "
                       "detectors.csv) as a parquet module table")
    p.add_argument("source", help="'generic' or a detectors.csv[.gz] / .parquet path")
    p.add_argument("out", type=Path, help="output .parquet file")
    p.set_defaults(func=_cmd_detector)


def _add_reconstruction_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from taas.metrics.config import STYLES
    from taas.pipeline.spec import PIPELINES
    from taas.service.discovery import add_discovery_args
    from taas.service.security import add_client_security_args

    p = sub.add_parser("reconstruct", help="run a reconstruction pipeline over every event, "
                       "saving its outputs and per-stage timings")
    p.add_argument("--events", required=True, type=Path, help="event directory")
    p.add_argument("--pipeline", choices=sorted(PIPELINES), default="cpu",
                   help="pipeline (default: cpu)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--detector", type=Path, help="detector file if not in the event directory")
    p.add_argument("--accel", choices=("cpu", "gpu"),
                   help="backend of the pipeline's accelerator stages (acorn: the GNN stages; "
                        "default: the pipeline's own, gpu)")
    p.add_argument("--stage-configs", type=Path,
                   help="JSON {stage: {field: value}} over the pipeline's stage configs, e.g. "
                        '{"graph_construction": {"checkpoint_dir": "models/"}}')
    p.add_argument("--warmup", action="store_true",
                   help="run the first event once untimed (keeps JIT compilation out of timings)")
    add_discovery_args(p)
    add_client_security_args(p)
    p.add_argument("--served-as", choices=("stages", "pipeline"), default="pipeline",
                   help="with --server: one request per event to the whole-pipeline model "
                        "(default), or one per stage model with the client chaining them")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reconstruct)

    p = sub.add_parser("evaluate", help="efficiency, fake and duplicate rates of reconstructed "
                       "tracks against truth (metrics.json + plots)")
    p.add_argument("--events", required=True, type=Path, help="event directory (with truth)")
    p.add_argument("--tracks", required=True, type=Path, help="output of taas reconstruct")
    p.add_argument("--out", required=True, type=Path, help="where metrics.json and plots go")
    p.add_argument("--matching", choices=STYLES, default="two_way",
                   help="track-particle matching style (default: two_way)")
    p.add_argument("--pt-min", type=float, default=1.0,
                   help="fiducial particle pT cut in GeV (default: 1.0)")
    p.add_argument("--detector", type=Path, help="detector file if not in the event directory")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("summarize", help="compare pipelines side by side: time per stage, "
                       "event sizes, efficiency, fake and duplicate rates")
    p.add_argument("--reco", nargs="+", required=True, type=Path,
                   help="output directories of taas reconstruct")
    p.add_argument("--metrics", nargs="+", required=True, type=Path,
                   help="metrics.json of each, in the same order")
    p.add_argument("--out", required=True, type=Path, help="markdown file (JSON beside it)")
    p.set_defaults(func=_cmd_summarize)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit status 0 on success, 2 with one clear line on bad input."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except TaasError as exc:
        print(f"taas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
