"""``taas model-repo build``, ``serve``, ``cluster`` and ``loadgen``: thin calls into taas.service.

``taas.cli`` calls ``add_service_commands(sub)`` with its sub-parser collection; every command
sets ``func`` like the others, so errors (``TaasError``) are reported the same way.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from taas.errors import TaasError
from taas.service.security import (
    TOKEN_ENV,
    add_client_security_args,
    add_server_security_args,
)


def _step(text: str) -> tuple[str, str]:
    stage, sep, backend = text.partition("/")
    if not sep:
        raise argparse.ArgumentTypeError(f"want stage/backend, got {text!r}")
    return stage, backend


def _cmd_model_repo_build(args: argparse.Namespace) -> None:
    from taas.service.model_repo import build_model_repository
    from taas.stages.configs import read_stage_configs

    limit = {} if args.max_rows is None else {"max_rows": args.max_rows}
    out = build_model_repository(
        args.out, detector_path=args.detector, stages=args.stages, pipelines=args.pipelines,
        instances=args.instances, kind=args.kind, ensembles=not args.no_ensembles,
        stage_configs=read_stage_configs(args.stage_configs), spacepoints=args.spacepoints,
        **limit)
    models = sorted(p.parent.name for p in out.glob("*/config.pbtxt"))
    print(f"wrote {len(models)} models to {out}: {', '.join(models)}")


def _serve_until_stopped(banner: str, running: Callable[[], bool],
                         failure: Callable[[], str]) -> None:
    """Print ``banner``, then wait for Ctrl-C or SIGTERM; ``TaasError(failure())`` as soon as
    ``running()`` turns false (a server died under us)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(banner, flush=True)
    try:
        while not stop.wait(1.0):
            if not running():
                raise TaasError(failure())
    except KeyboardInterrupt:
        pass


def _cmd_serve(args: argparse.Namespace) -> None:
    from taas.service.security import server_security_from_args
    from taas.service.server import TritonServer

    server = TritonServer(args.model_repository, host=args.host, grpc_port=args.grpc_port,
                          http_port=args.http_port, metrics_port=args.metrics_port,
                          log_path=args.log, ready_timeout=args.ready_timeout,
                          security=server_security_from_args(args))
    with server:
        _serve_until_stopped(
            f"serving {args.model_repository}: gRPC {server.url}, HTTP {server.host}:"
            f"{server.http_port}, metrics {server.host}:{server.metrics_port}; log "
            f"{server.log_path}; Ctrl-C stops",
            lambda: server.running, lambda: f"tritonserver died:\n{server.log_tail()}")


def _cmd_cluster(args: argparse.Namespace) -> None:
    from taas.service.cluster import TritonCluster
    from taas.service.security import server_security_from_sources

    tls = (args.tls_cert, args.tls_key) if args.tls_cert or args.tls_key else None
    token = server_security_from_sources(token_file=args.token_file)  # else $TAAS_TOKEN
    cluster = TritonCluster(args.model_repository, args.replicas, host=args.host, port=args.port,
                            tls=tls, log_dir=args.log_dir, ready_timeout=args.ready_timeout,
                            security=token if token.token else None)
    with cluster:
        _serve_until_stopped(
            f"serving {args.model_repository} on {args.replicas} replicas "
            f"({', '.join(cluster.replica_urls)}) behind nginx: gRPC {cluster.url} (shared "
            "memory does not cross it: clients use gRPC); Ctrl-C stops",
            lambda: cluster.running,
            lambda: f"the cluster behind {cluster.url} lost nginx or a replica")


def _cmd_loadgen(args: argparse.Namespace) -> None:
    from taas.events.dataset import open_dataset
    from taas.service.loadgen import sweep
    from taas.service.security import client_security_from_args

    dataset = open_dataset(args.events, detector=args.detector)
    ids = dataset.event_ids[: args.n_events]
    events = [dataset.read(i).cells.to_tensors() for i in ids]
    reports = sweep(args.url, args.model, events, args.concurrency,
                    max_requests=args.requests, max_seconds=args.seconds,
                    security=client_security_from_args(args))
    for report in reports:
        print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in reports], indent=2))


def add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``model-repo``, ``serve`` and ``loadgen`` to the ``taas`` command line."""
    p = sub.add_parser("model-repo", help="generate a Triton model repository from the stages")
    repo_sub = p.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    b = repo_sub.add_parser("build", help="write one model per stage, pipeline and ensemble")
    b.add_argument("out", type=Path, help="repository directory to write")
    b.add_argument("--detector", type=Path, required=True,
                   help="detector.parquet (or TrackML detectors.csv) copied into the repository")
    b.add_argument("--stages", nargs="*", type=_step, default=None, metavar="STAGE/BACKEND",
                   help="stage models to write (default: every registered one)")
    b.add_argument("--pipelines", nargs="*", default=None, metavar="NAME",
                   help="pipelines to serve (default: every one whose stages all exist)")
    b.add_argument("--instances", type=int, default=1, help="instances per model")
    b.add_argument("--kind", default="KIND_CPU", choices=("KIND_CPU", "KIND_GPU", "KIND_AUTO"))
    b.add_argument("--max-rows", type=int, default=None,
                   help="refuse events with more rows (cells...) than this")
    b.add_argument("--no-ensembles", action="store_true", help="skip the ensemble models")
    b.add_argument("--spacepoints", action="store_true",
                   help="also write pipeline_<name>_spacepoints for each pipeline (not fpga): "
                        "the pipeline for events given as space points, without cells, which "
                        "`taas reconstruct --server` calls for such events (inputs: the "
                        "space-point tensors; GNN stages on the positions-only models)")
    b.add_argument("--stage-configs", type=Path, default=None,
                   help="JSON {stage: {field: value}} over the pipelines' stage configs; files "
                        "they name (checkpoint_dir) are copied into the repository")
    b.set_defaults(func=_cmd_model_repo_build)

    p = sub.add_parser("serve", help="run tritonserver on a model repository until Ctrl-C")
    p.add_argument("--model-repository", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--log", type=Path, default=None, help="server log file")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    add_server_security_args(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("cluster", help="run N tritonserver replicas behind an nginx gRPC load "
                                       "balancer until Ctrl-C")
    p.add_argument("--model-repository", "--repo", type=Path, required=True)
    p.add_argument("--replicas", type=int, default=2, help="tritonserver processes")
    p.add_argument("--host", default="127.0.0.1", help="address the balancer binds")
    p.add_argument("--port", type=int, default=8001, help="the balanced gRPC port")
    p.add_argument("--tls-cert", type=Path, default=None, help="serve the balancer over TLS")
    p.add_argument("--tls-key", type=Path, default=None)
    p.add_argument("--token-file", type=Path, default=None,
                   help=f"replicas require this token for inference (default: ${TOKEN_ENV} if "
                        "set); nginx passes the clients' token header through")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="replica logs and nginx's prefix (config, logs) go here")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.set_defaults(func=_cmd_cluster)

    p = sub.add_parser("loadgen", help="measure throughput and latency of a served model")
    p.add_argument("--url", default="127.0.0.1:8001",
                   help="gRPC address host:port (any reachable server)")
    p.add_argument("--model", required=True, help="e.g. pipeline_cpu, clustering_cpu")
    p.add_argument("--events", type=Path, required=True, help="event directory")
    p.add_argument("--detector", type=Path, default=None)
    p.add_argument("--n-events", type=int, default=10, help="events to cycle through")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--requests", type=int, default=200, help="requests per concurrency")
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per concurrency")
    p.add_argument("--json", type=Path, default=None, help="write the reports here")
    add_client_security_args(p)
    p.set_defaults(func=_cmd_loadgen)
