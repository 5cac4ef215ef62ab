"""The service-option study (S0 direct ... S4 ensemble, the pipeline model) on `small` events.

Run: ``.venv/bin/python benchmarks/service_options.py [--pipelines cpu acorn] [--preset small]
[--events 1] [--repeats 2] [--concurrency 1 2 4] [--requests 4]``. Per pipeline (accelerator
stages on the cpu backend, shipped models): one repository with the stage models, the
whole-pipeline model and the ensemble, one real tritonserver, and ``taas.service.study``:
every applicable option on the same events, alternating option by option, outputs checked
against direct (the run stops if any option differs beyond tolerance), then a throughput sweep
over client threads with the server's Prometheus counters scraped around it. Writes
``benchmarks/results/service_options.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taas.errors import TaasError
from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.service.model_repo import build_model_repository
from taas.service.server import TritonServer
from taas.service.study import StudySettings
from taas.workflow.measure import service_options
from taas.workflow.models import prepare_models, with_models


@contextlib.contextmanager
def served_pipeline(name: str, events: Path, work: Path, *, stage_models: bool,
                    ready_timeout: float = 120.0) -> Iterator[tuple[PipelineSpec, TritonServer]]:
    """Pipeline ``name`` with its accelerator stages on the cpu backend and the shipped models,
    and a running tritonserver on a repository in ``work`` holding its whole-pipeline model
    (and, with ``stage_models``, the stage models and the ensemble too)."""
    spec = PIPELINES[name].with_accel("cpu")
    prepare_models(spec, "shipped", work / f"models-{name}")
    spec = with_models(spec, work / f"models-{name}")
    repo = build_model_repository(work / f"repo-{name}", detector_path=events / "detector.parquet",
                                  stages=list(spec.steps) if stage_models else [],
                                  pipelines=[spec], ensembles=stage_models)
    with TritonServer(repo, log_path=work / f"{name}.log", ready_timeout=ready_timeout) as server:
        yield spec, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", nargs="+", default=["cpu", "acorn"],
                        choices=sorted(PIPELINES))
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the events")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=4, help="events per throughput point")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "service_options.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset = PRESETS[args.preset]
    settings = StudySettings(repeats=args.repeats, concurrency=tuple(args.concurrency),
                             requests=args.requests, max_seconds=300.0)
    # pipelines not rerun keep their earlier study (same preset), so one can be redone alone
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else {}
    studies = [s for s in earlier.get("studies", []) if earlier.get("preset") == args.preset
               and s["pipeline"] not in args.pipelines]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        events = simulate(work / "events", events=args.events, vertices=preset.vertices,
                          particles_per_vertex=preset.particles_per_vertex, seed=41,
                          progress=False)
        for name in args.pipelines:
            # seven Python-backend models, each importing torch: minutes on a loaded machine
            with served_pipeline(name, Path(events), work, stage_models=True,
                                 ready_timeout=900) as (spec, server):
                study = service_options(
                    events, spec, server.url, settings=settings,
                    metrics_url=f"http://{server.host}:{server.metrics_port}/metrics")
            bad = [r["key"] for r in study["options"] if not r["outputs_equal"]]
            if bad:
                raise TaasError(f"{name}: options {bad} differ from direct: " + "; ".join(
                    d for r in study["options"] for d in r["differences"][:3]))
            studies.append(study)
            _write(args, studies)  # after every pipeline: a long run keeps what it measured
            for r in study["options"]:
                print(f"{name} {r['key']:6s} {r['median_s'] * 1e3:8.1f} ms/event "
                      f"x{r['overhead_vs_direct']:.3f} {r['bytes_per_event'] / 1e6:7.3f} MB "
                      + " ".join(f"c={p['concurrency']}: {p['events_per_s']:.2f}/s"
                                 for p in r["throughput"]))


def _write(args: argparse.Namespace, studies: list[dict[str, Any]]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "service_options", "preset": args.preset, "events": args.events,
        "repeats": args.repeats, "machine": platform.platform(),
        "device": "CPU only (accelerator stages on the cpu backend); one local tritonserver",
        "studies": studies}, indent=2))


if __name__ == "__main__":
    main()
