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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from taas.events.dataset import open_dataset
from taas.pipeline.spec import PipelineSpec

if TYPE_CHECKING:
    from taas.service.study import StudySettings

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


def served_vs_direct(events: str | Path, spec: PipelineSpec, url: str, *, repeats: int = 2,
                     n_events: int | None = None) -> dict[str, Any]:
    """Time per event of the pipeline in-process and as one served model, same events.

    The service-option study restricted to direct (S0) and the whole-pipeline model (custom):
    both warm, alternating event by event, outputs compared (``taas.service.study``).
    """
    from taas.service.study import StudySettings, served_vs_direct_view

    return served_vs_direct_view(service_options(
        events, spec, url, n_events=n_events,
        settings=StudySettings(repeats=repeats, concurrency=(), options=("S0", "custom"))))


def service_options(events: str | Path, spec: PipelineSpec, url: str, *,
                    settings: StudySettings, metrics_url: str = "",
                    skip_reasons: Mapping[str, str] | None = None,
                    n_events: int | None = None) -> dict[str, Any]:
    """The service-option study (``taas.service.study``) on the dataset's first events."""
    from taas.service.study import run_study

    detector, tensors = load_events(events, n_events)
    state_before = machine_state()
    result = run_study(spec, detector, tensors, url, settings=settings, metrics_url=metrics_url,
                       skip_reasons=skip_reasons)
    result |= {"machine_before": state_before, "machine_after": machine_state()}
    for row in result["options"]:
        log.info("%s %s (%s): %.4f s/event, %.3f x direct, %.0f bytes/event", spec.name,
                 row["key"], row["name"], row["median_s"], row["overhead_vs_direct"] or 0,
                 row["bytes_per_event"])
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
