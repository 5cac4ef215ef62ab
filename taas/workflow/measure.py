"""Served vs direct time per event, and throughput against a served pipeline.

Both are measured, never derived, on the very events the workflow reconstructed, with the event
sizes and the machine load recorded next to every number (``docs/architecture.md``, honesty
rules). The jobs
that call these take every core of the machine (``threads: workflow.cores``) so that nothing
else of the workflow runs beside a measurement.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taas.events.dataset import open_dataset
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PipelineSpec

log = logging.getLogger(__name__)


def machine_state() -> dict[str, Any]:
    """Cores and load averages: the context every timing needs on a shared machine."""
    return {"cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg())}


def load_events(events: str | Path, n_events: int | None = None,
                ) -> tuple[Any, list[dict[str, np.ndarray]]]:
    """The dataset's detector and the cell tensors of its first ``n_events`` events."""
    dataset = open_dataset(events)
    ids = dataset.event_ids[:n_events] if n_events else dataset.event_ids
    return dataset.detector, [dataset.read(i).cells.to_tensors() for i in ids]


def differing_outputs(served: Mapping[str, np.ndarray], direct: Mapping[str, np.ndarray],
                      ) -> list[str]:
    """Names of the tensors both runs produced whose shapes or values differ."""
    return [name for name, want in direct.items() if name in served and (
        served[name].shape != want.shape or not np.array_equal(
            served[name], want, equal_nan=want.dtype.kind == "f"))]


def served_vs_direct(events: str | Path, spec: PipelineSpec, url: str, *, repeats: int = 2,
                     n_events: int | None = None) -> dict[str, Any]:
    """Time per event of the pipeline in-process and as one served model, same events.

    Both run warm (one untimed event each first) and alternate event by event, swapping which
    goes first on every pass, so drifting machine load hits both alike. The served call is the
    whole-pipeline model over shared memory (the local fast path); its outputs are compared with
    the direct ones.
    """
    from taas.service.client import RemotePipeline

    detector, tensors = load_events(events, n_events)
    direct = Pipeline(spec, detector)
    served = RemotePipeline(spec.name, url)
    state_before = machine_state()
    try:
        differing = differing_outputs(served.run(tensors[0]).tensors,
                                      direct.run(tensors[0]).tensors)
        times: dict[str, list[float]] = {"direct": [], "served": []}
        for r in range(repeats):
            for event in tensors:
                order = (("direct", direct), ("served", served))
                for label, runner in (order if r % 2 == 0 else order[::-1]):
                    t0 = time.perf_counter()
                    runner.run(event)
                    times[label].append(time.perf_counter() - t0)
    finally:
        served.close()
    direct_s, served_s = float(np.mean(times["direct"])), float(np.mean(times["served"]))
    result = {
        "pipeline": spec.name, "steps": [list(s) for s in spec.steps], "model": served.model,
        "transport": "shared memory" if served.client.shared_memory else "gRPC",
        "events": len(tensors), "repeats": repeats,
        "cells_per_event": [len(t["cells.ch0"]) for t in tensors],
        "direct_s_per_event": direct_s, "served_s_per_event": served_s,
        "direct_median_s": float(np.median(times["direct"])),
        "served_median_s": float(np.median(times["served"])),
        "ratio": served_s / direct_s if direct_s > 0 else None,
        "outputs_identical": not differing,
        "differing_outputs": differing,
        "machine_before": state_before, "machine_after": machine_state(),
    }
    log.info("%s: direct %.4f s/event, served %.4f s/event, ratio %.3f", spec.name, direct_s,
             served_s, result["ratio"] or float("nan"))
    return result


def throughput(events: str | Path, spec: PipelineSpec, url: str, *, instances: int | None,
               concurrency: Sequence[int], requests: int, max_seconds: float,
               n_events: int | None = None) -> dict[str, Any]:
    """Events per second and latency percentiles of ``pipeline_<name>`` at each concurrency."""
    from taas.service.loadgen import sweep
    from taas.service.model_repo import pipeline_model_name

    _, tensors = load_events(events, n_events)
    state_before = machine_state()
    reports = sweep(url, pipeline_model_name(spec.name), tensors, list(concurrency),
                    max_requests=requests, max_seconds=max_seconds)
    for report in reports:
        log.info("%s", report.summary())
    return {
        "pipeline": spec.name, "instances": instances, "url": url,
        "events": len(tensors),
        "mean_cells": float(np.mean([len(t["cells.ch0"]) for t in tensors])),
        "points": [r.as_dict() for r in reports],
        "machine_before": state_before, "machine_after": machine_state(),
    }
