"""A Triton server for the length of one workflow job: the given URL, or one started here.

Snakemake's ``service()`` group jobs sum their members' resources and start them all at once,
which fails under ``--cores 2`` (Snakemake 9.27: six one-thread consumers already get "Not
enough resources"). So the job that needs a server owns
it: it starts ``tritonserver`` on a free loopback port, uses it and stops it, and the server dies
with the job if the job is killed. ``server_url`` in the configuration replaces all of that with
a server someone else runs (whose repository must hold the models the job asks for).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.service.python_model import parse_steps
from taas.stages.configs import read_stage_configs

log = logging.getLogger(__name__)


@contextlib.contextmanager
def server_url_for(repo: str | Path | None, url: str = "", *,
                   log_path: str | Path | None = None,
                   ready_timeout: float = 300.0, replicas: int = 1) -> Iterator[str]:
    """``url`` if given, else the URL of a local server on ``repo`` that stops on exit."""
    with server_endpoints(repo, url, log_path=log_path, ready_timeout=ready_timeout,
                          replicas=replicas) as (grpc_url, _):
        yield grpc_url


@contextlib.contextmanager
def server_endpoints(repo: str | Path | None, url: str = "", metrics_url: str = "", *,
                     log_path: str | Path | None = None, ready_timeout: float = 300.0,
                     replicas: int = 1) -> Iterator[tuple[str, str]]:
    """(gRPC URL, Prometheus metrics URL): the given ones, else those of a local server on
    ``repo`` that stops on exit. A given server's metrics URL is ``metrics_url`` ("" when
    unknown: its port is not discoverable over gRPC). ``replicas`` > 1 starts that many servers
    behind an nginx load balancer (``taas.service.cluster``) and yields its address; its
    metrics URL is "" (each replica has its own)."""
    if url:
        log.info("using the Triton server at %s", url)
        yield url, metrics_url
        return
    if repo is None:
        raise ValueError("need a model repository to start a server")
    if replicas > 1:
        from taas.service.cluster import TritonCluster

        log_dir = None if log_path is None else Path(f"{log_path}.cluster")
        with TritonCluster(repo, replicas, log_dir=log_dir, ready_timeout=ready_timeout) as cluster:
            yield cluster.url, ""
        return
    from taas.service.server import TritonServer

    with TritonServer(repo, log_path=log_path, ready_timeout=ready_timeout) as server:
        yield server.url, f"http://{server.host}:{server.metrics_port}/metrics"


def events_have_cells(events: str | Path) -> bool:
    """Whether the event directory's events come with cells (its first event decides, as in
    ``taas.pipeline.reconstruct.reconstruct``); else they are given as space points."""
    from taas.events.dataset import open_dataset
    from taas.reco.hit_spacepoints import has_cells

    dataset = open_dataset(events)
    return not dataset.event_ids or has_cells(dataset.read(dataset.event_ids[0]))


def spec_from_steps(name: str, steps: str, stage_configs: str | Path | None = None
                    ) -> PipelineSpec:
    """The pipeline ``name`` with the steps the workflow resolved (``stage/backend,...``), its
    own stage configs, and the fields of the ``stage_configs`` JSON file over them."""
    base = PIPELINES.get(name)
    steps_ = parse_steps(steps)
    present = {stage for stage, _ in steps_}
    own = {k: v for k, v in (base.stage_configs if base else {}).items() if k in present}
    spec = PipelineSpec(name, steps_, base.description if base else "", stage_configs=own)
    return spec.with_configs(read_stage_configs(stage_configs))
