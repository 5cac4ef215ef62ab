"""Run a pipeline over every event of a dataset and keep its outputs and per-stage timings.

Outputs per event: ``eventNNNNNNNNN-reco.npz`` with every tensor the stages produced (so that
evaluation, plots and later stages need no rerun); per run: ``timings.csv`` (event, stage,
backend, device, seconds) and ``run.json`` (pipeline, event sizes, versions).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from taas import __version__
from taas.detector.detector import Detector
from taas.events.dataset import open_dataset
from taas.events.event import event_stem
from taas.io.atomic import atomic_write
from taas.pipeline.runner import Pipeline, PipelineResult
from taas.pipeline.spec import PipelineSpec
from taas.pipeline.timings import FILE_NAME as TIMINGS_FILE
from taas.pipeline.timings import write_timings

#: Tensors whose lengths describe an event's size in every figure we print.
SIZE_TENSORS = {"cells": "cells.ch0", "measurements": "measurements.local_u",
                "spacepoints": "spacepoints.x", "seeds": "seeds.quality",
                "tracks": "tracks.chi2"}


class EventRunner(Protocol):
    """What ``reconstruct`` drives: ``Pipeline``, or a served one from ``make_pipeline``."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> PipelineResult: ...


#: Builds the runner of a pipeline for a dataset's detector (in-process by default).
PipelineFactory = Callable[[PipelineSpec, Detector], EventRunner]


def reco_path(directory: Path, event_id: int) -> Path:
    return Path(directory) / f"{event_stem(event_id)}-reco.npz"


def load_reco(directory: str | Path, event_id: int) -> dict[str, np.ndarray]:
    """The tensors ``reconstruct`` saved for one event."""
    with np.load(reco_path(Path(directory), event_id)) as data:
        return {k: data[k] for k in data.files}


def event_sizes(tensors: dict[str, np.ndarray]) -> dict[str, int]:
    return {name: len(tensors[t]) for name, t in SIZE_TENSORS.items() if t in tensors}


def reconstruct(events: str | Path, out: str | Path, spec: PipelineSpec, *,
                detector: str | Path | None = None, progress: bool = True,
                warmup: bool = False, factory: PipelineFactory | None = None,
                info: Mapping[str, Any] | None = None) -> Path:
    """Reconstruct every event of ``events`` with ``spec`` into ``out``; returns ``out``.

    ``warmup`` runs the first event once, untimed, before the timed loop: just-in-time
    compilation and caches then stay out of the figures, as ACTS' Sequencer timings do.
    ``factory`` builds the runner instead of an in-process ``Pipeline`` (the workflow's served
    mode passes ``taas.service.client.make_pipeline``); ``info`` adds keys to run.json.
    """
    dataset = open_dataset(events, detector=detector)
    pipeline = (factory or Pipeline)(spec, dataset.detector)
    if warmup and dataset.event_ids:
        pipeline.run(dataset.read(dataset.event_ids[0]).cells.to_tensors())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, sizes = [], {}
    for event in tqdm(dataset, total=len(dataset), desc=f"reconstruct [{spec.name}]",
                      unit="event", disable=not progress):
        result = pipeline.run(event.cells.to_tensors())
        atomic_write(reco_path(out, event.event_id), partial(_save_npz, tensors=result.tensors))
        sizes[event.event_id] = event_sizes(result.tensors)
        rows += [{"event_id": event.event_id, "stage": t.stage, "backend": t.backend,
                  "device": t.device, "seconds": t.seconds} for t in result.timings]
    atomic_write(out / TIMINGS_FILE, lambda p: write_timings(p, rows))
    info = {"pipeline": spec.name, "steps": [list(s) for s in spec.steps],
            "stage_configs": {k: dict(v) for k, v in spec.stage_configs.items()},
            "events": str(events), "format": dataset.format,
            "sizes": {str(k): v for k, v in sizes.items()}, "warmup": warmup,
            "taas_version": __version__, "python": platform.python_version(),
            "machine": platform.platform(), **dict(info or {})}
    atomic_write(out / "run.json", lambda p: p.write_text(json.dumps(info, indent=2)))
    return out


def _save_npz(path: Path, tensors: dict[str, np.ndarray]) -> None:
    with path.open("wb") as fh:
        # numpy's stub would read a tensor named "allow_pickle" into that flag
        np.savez(fh, **tensors)  # type: ignore[arg-type]
