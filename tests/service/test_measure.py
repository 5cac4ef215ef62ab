"""Measure, not assert: served vs direct time per event, throughput vs model instances.

The numbers are printed (run with ``-s`` or look at the captured output) and attached to the test
report as properties; only sanity is asserted, since a 2-core CI box is no benchmark machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from taas.pipeline.runner import Pipeline
from taas.service.client import RemotePipeline, make_pipeline
from tests.service.conftest import FRONT_END

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def medium_event(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    from taas.events.dataset import open_dataset
    from taas.events.simulation import simulate

    directory = simulate(tmp_path_factory.mktemp("medium"), events=1, vertices=200,
                         particles_per_vertex=20, seed=1, progress=False)
    return open_dataset(directory).read(0).cells.to_tensors()


def _per_event(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: numba, connections, shared memory regions
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - t0) / repeats


def test_served_vs_direct(triton, tiny_sim_dir: Path, tiny_event, medium_event, capsys,
                          record_property) -> None:
    from taas.events.dataset import open_dataset

    direct = Pipeline(FRONT_END, open_dataset(tiny_sim_dir).detector)
    rows = []
    for label, event, repeats in (("tiny", tiny_event, 20), ("medium", medium_event, 2)):
        times = {"direct": _per_event(lambda e=event: direct.run(e), repeats)}
        for mode, shm in (("pipeline", True), ("pipeline", False), ("ensemble", True),
                          ("stages", True)):
            served = (make_pipeline(FRONT_END, None, "served", triton.url, shared_memory=shm)
                      if mode == "stages" else
                      RemotePipeline(FRONT_END.name, triton.url, ensemble=mode == "ensemble",
                                     shared_memory=shm))
            try:
                times[f"{mode}/{'shm' if shm else 'grpc'}"] = _per_event(
                    lambda s=served, e=event: s.run(e), repeats)
            finally:
                served.close()
        cells = len(event["cells.ch0"])
        rows.append((label, cells, times))
        record_property(f"served_vs_direct_{label}", times)
    with capsys.disabled():
        print("\nfront-end chain, ms per event (ratio to direct):")
        for label, cells, times in rows:
            base = times["direct"]
            print(f"  {label:6s} {cells:7d} cells: " + ", ".join(
                f"{k} {v * 1e3:.1f} ({v / base:.2f}x)" for k, v in times.items()))
    assert all(t > 0 for _, _, times in rows for t in times.values())


def test_throughput_vs_instances(triton, tiny_sim_dir: Path, tiny_event, medium_event,
                                 tmp_path: Path, capsys, record_property) -> None:
    from taas.service.loadgen import run_load
    from taas.service.model_repo import build_model_repository, pipeline_model_name
    from taas.service.server import TritonServer

    model = pipeline_model_name(FRONT_END.name)
    repo2 = build_model_repository(tmp_path / "repo2", detector_path=tiny_sim_dir /
                                   "detector.parquet", stages=[], pipelines=[FRONT_END],
                                   instances=2, ensembles=False, max_rows=10**6)
    results = []
    with TritonServer(repo2, ready_timeout=180) as server2:
        for instances, url in ((1, triton.url), (2, server2.url)):
            for label, event, requests in (("tiny", tiny_event, 60), ("medium", medium_event, 6)):
                report = run_load(url, model, [event], concurrency=2, max_requests=requests,
                                  max_seconds=30)
                assert report.errors == 0, report.first_error
                results.append((instances, label, report))
    with capsys.disabled():
        print("\npipeline_front_end throughput at concurrency 2 (2-core machine):")
        for instances, label, report in results:
            print(f"  {instances} instance(s), {label}: {report.summary()}")
    record_property("throughput_vs_instances", [
        {"instances": i, "event": label, **r.as_dict()} for i, label, r in results])
