"""``python -m taas.workflow.cli ACTION``: the steps the Snakemake rules run, as thin commands.

Each action parses arguments and calls library code (taas.workflow, taas.report, taas.service),
so the rules hold wiring only and everything here is testable without Snakemake.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from taas.errors import TaasError

log = logging.getLogger("taas.workflow")


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _cmd_model_repo(args: argparse.Namespace) -> None:
    """Events without cells get the models ``reconstruct`` asks for then: those of
    ``spacepoint_pipeline`` (stage models on the positions-only GNN models, the pipeline
    model ``pipeline_<name>_spacepoints``); each repository serves one pipeline on one event
    set, so they take the stage models' names without a clash."""
    from taas.pipeline.reconstruct import spacepoint_pipeline
    from taas.service.model_repo import build_model_repository
    from taas.workflow.serving import events_have_cells, spec_from_steps

    spec = spec_from_steps(args.pipeline, args.steps, args.stage_configs)
    if not events_have_cells(args.events):
        spec = spacepoint_pipeline(spec)
    # --service-options: stage models, pipeline model and ensemble (every option of the study)
    build_model_repository(args.out, detector_path=args.events / "detector.parquet",
                           stages=list(spec.steps) if args.stage_models or
                           args.service_options else [],
                           pipelines=[] if args.stage_models else [spec],
                           instances=args.instances, ensembles=args.service_options,
                           stage_configs=spec.stage_configs)


def _cmd_models(args: argparse.Namespace) -> None:
    from taas.workflow.models import prepare_models
    from taas.workflow.serving import spec_from_steps

    prepare_models(spec_from_steps(args.pipeline, args.steps), args.source, args.out,
                   train_preset=args.train_preset, train_events=args.train_events,
                   seed=args.seed)


def _cmd_reconstruct(args: argparse.Namespace) -> None:
    """Per-event outputs are written into a staging directory that becomes ``--out`` only when
    every event is done: a malformed event file stops the job with no partial output, and a job
    killed part way leaves nothing its rerun could count twice (``taas.io.atomic``)."""
    from taas.io.atomic import atomic_directory

    with atomic_directory(args.out) as staging:
        _reconstruct_into(args, staging)


def _reconstruct_into(args: argparse.Namespace, out: Path) -> None:
    from taas.pipeline.reconstruct import reconstruct
    from taas.workflow.serving import server_url_for, spec_from_steps

    spec = spec_from_steps(args.pipeline, args.steps, args.stage_configs)
    if args.mode == "direct":
        reconstruct(args.events, out, spec, progress=False, warmup=True,
                    info={"mode": "direct"})
        return
    from taas.detector.detector import Detector
    from taas.pipeline.spec import PipelineSpec
    from taas.service.discovery import DiscoveryConfig, FailoverRunner, served_runner

    runners: list[FailoverRunner] = []
    service: dict[str, object] = {}  # run.json's record: failovers, "fell back to direct"

    def served(spec_: PipelineSpec, detector: Detector) -> FailoverRunner:
        # every stage a served model: per-stage times stay visible; $TAAS_SERVERS adds
        # failover candidates, --fallback direct the labelled in-process fallback
        config = DiscoveryConfig((url,), fallback=args.fallback)
        runners.append(served_runner(spec_, detector, config=config, mode="served",
                                     record=service))
        return runners[-1]

    with server_url_for(args.repo, args.server_url, log_path=args.server_log,
                        replicas=args.replicas) as url:
        try:
            reconstruct(args.events, out, spec, progress=False, warmup=True,
                        factory=served, info={"mode": "served", "server_url": url,
                                              "service": service})
        finally:
            for runner in runners:
                runner.close()


def _cmd_compare(args: argparse.Namespace) -> None:
    from taas.workflow.measure import served_vs_direct, service_options
    from taas.workflow.serving import server_endpoints, spec_from_steps

    spec = spec_from_steps(args.pipeline, args.steps, args.stage_configs)
    with server_endpoints(args.repo, args.server_url, args.metrics_url,
                          log_path=args.server_log, replicas=args.replicas) as (url, metrics_url):
        if args.options_out is None:
            _write_json(args.out, served_vs_direct(args.events, spec, url, repeats=args.repeats,
                                                   n_events=args.n_events))
            return
        from taas.service.study import StudySettings, served_vs_direct_view

        # emulated pipelines: one C-simulated event costs minutes, so no warm-up, no sweep,
        # and no S1/S2 (which would only rerun the same emulated stages in another process)
        reason = "not measured under the emulation budget (each option reruns the C simulation)"
        settings = StudySettings(repeats=args.repeats, warmup=not args.emulated,
                                 concurrency=() if args.emulated else tuple(args.concurrency),
                                 requests=args.requests, max_seconds=args.seconds)
        study = service_options(args.events, spec, url, settings=settings,
                                metrics_url=metrics_url, n_events=args.n_events,
                                skip_reasons=dict.fromkeys(("S1", "S2"), reason)
                                if args.emulated else None)
    _write_json(args.options_out, study)
    _write_json(args.out, served_vs_direct_view(study))


def _cmd_throughput(args: argparse.Namespace) -> None:
    from taas.workflow.measure import throughput
    from taas.workflow.serving import server_url_for, spec_from_steps

    spec = spec_from_steps(args.pipeline, args.steps, args.stage_configs)
    with server_url_for(args.repo, args.server_url, log_path=args.server_log,
                        replicas=args.replicas) as url:
        result = throughput(args.events, spec, url,
                            instances=None if args.server_url else args.instances,
                            concurrency=args.concurrency, requests=args.requests,
                            max_seconds=args.seconds, n_events=args.n_events)
    _write_json(args.out, result)


def _cmd_report(args: argparse.Namespace) -> None:
    from taas.report.build import ReportInputs, write_report

    inputs = ReportInputs(
        config=json.loads(args.config), plan=json.loads(args.plan), summary=args.summary,
        info=args.info, compare=args.compare, throughput=args.throughput,
        metrics=args.metrics, reco=args.reco, models=args.models, scaling=args.scaling,
        fpga_model=args.fpga_model, service_options=args.service_options)
    write_report(inputs, args.out)


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", type=Path, default=None, help="model repository to serve")
    p.add_argument("--server-url", default="", help="use this server instead of starting one")
    p.add_argument("--server-log", type=Path, default=None)
    p.add_argument("--replicas", type=int, default=1,
                   help="servers behind an nginx load balancer when starting them (1: one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taas.workflow.cli",
                                     description="steps of the taas Snakemake workflow")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def pipeline_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--events", type=Path, required=True, help="parquet event directory")
        p.add_argument("--pipeline", required=True)
        p.add_argument("--steps", required=True, help="resolved steps: stage/backend,...")
        p.add_argument("--stage-configs", type=Path, default=None,
                       help="JSON {stage: {field: value}} over the pipeline's stage configs "
                            "(the models rule writes one: GNN checkpoint directories)")

    p = sub.add_parser("model-repo", help="model repository of one resolved pipeline")
    pipeline_args(p)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--stage-models", action="store_true", help="also one model per stage")
    p.add_argument("--service-options", action="store_true",
                   help="stage models, pipeline model and ensemble: every service option")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_model_repo)

    p = sub.add_parser("models", help="the trained models of one pipeline: shipped or trained")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--steps", required=True, help="resolved steps: stage/backend,...")
    p.add_argument("--source", choices=("shipped", "train"), default="shipped")
    p.add_argument("--train-preset", default="small")
    p.add_argument("--train-events", type=int, default=10)
    p.add_argument("--seed", type=int, default=1001,
                   help="simulation seed of the training events (not the evaluated events')")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("reconstruct", help="reconstruct direct or served")
    pipeline_args(p)
    _server_args(p)
    p.add_argument("--mode", choices=("direct", "served"), default="direct")
    p.add_argument("--fallback", choices=("none", "direct"), default="none",
                   help="served mode, no server ready: stop, or reconstruct in-process "
                        "(logged; run.json says 'fell back to direct' and for how many events)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_reconstruct)

    _add_measure_commands(sub, pipeline_args, _server_args)

    p = sub.add_parser("report", help="the HTML, Markdown and JSON report")
    p.add_argument("--config", required=True, help="the validated configuration (JSON)")
    p.add_argument("--plan", required=True, help="the resolved pipelines (JSON)")
    p.add_argument("--summary", type=Path, required=True, help="summary JSON")
    p.add_argument("--info", type=Path, required=True, help="event info.json")
    p.add_argument("--reco", type=Path, nargs="+", required=True)
    p.add_argument("--metrics", type=Path, nargs="+", required=True)
    p.add_argument("--compare", type=Path, nargs="*", default=[])
    p.add_argument("--throughput", type=Path, nargs="*", default=[])
    p.add_argument("--models", type=Path, nargs="*", default=[],
                   help="the models rule's directories (models.json: provenance)")
    p.add_argument("--scaling", type=Path, nargs="*", default=[],
                   help="scaling benchmark JSONs (per-stage slopes for the capacity plan)")
    p.add_argument("--fpga-model", type=Path, default=None,
                   help="modelled FPGA hardware figures (benchmarks/fpga_hardware_model.py)")
    p.add_argument("--service-options", type=Path, nargs="*", default=[],
                   help="service-option study JSONs (taas.service.study), one per pipeline")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.set_defaults(func=_cmd_report)
    return parser


def _add_measure_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                          pipeline_args: Callable[..., None],
                          server_args: Callable[..., None]) -> None:
    p = sub.add_parser("compare", help="served vs direct time per event (and with "
                       "--options-out the service-option study)")
    pipeline_args(p)
    server_args(p)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n-events", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--options-out", type=Path, default=None,
                   help="run every service option (needs a --service-options repository) "
                        "and write the study here; --out is then derived from it")
    p.add_argument("--metrics-url", default="",
                   help="Prometheus endpoint of --server-url (one started here is known)")
    p.add_argument("--concurrency", type=int, nargs="*", default=[1, 2, 4],
                   help="client threads per throughput point of the study")
    p.add_argument("--requests", type=int, default=8, help="events per throughput point")
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per point")
    p.add_argument("--emulated", action="store_true",
                   help="FPGA C simulation: no warm-up, no sweep, no S1/S2")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("throughput", help="events/s against the served pipeline vs concurrency")
    pipeline_args(p)
    server_args(p)
    p.add_argument("--instances", type=int, required=True)
    p.add_argument("--concurrency", type=int, nargs="+", required=True)
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--n-events", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_throughput)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except TaasError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
