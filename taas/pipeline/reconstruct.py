"""Run a pipeline over every event of a dataset and keep its outputs and per-stage timings.

Outputs per event: ``eventNNNNNNNNN-reco.npz`` with every tensor the stages produced (so that
evaluation, plots and later stages need no rerun); per run: ``timings.csv`` (event, stage,
backend, device, seconds, host <-> device copies) and ``run.json`` (pipeline, event sizes,
versions, copies per event, what the input was and which stages and GNN models ran).

Events without cells are given as space points (``taas.reco.hit_spacepoints``): the pipeline
starts after its front end, and its GNN stages take the positions-only models unless the
pipeline's stage configs name checkpoints (``for_spacepoint_input``). A served runner (a
``factory``) is given ``spacepoint_pipeline(spec)`` instead: the steps after the front end, named
``<pipeline>_spacepoints``, so that it calls the served model that takes space-point tensors
(``pipeline_<pipeline>_spacepoints``, ``taas.service.model_repo``). Events whose strip
cells all read exactly 1.0 (binary strip readout, as TrackML's) take the binary-strips models
the same way (``strip_readout``, ``for_binary_strips``).
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from taas import __version__
from taas.detector.acts_generic import STRIP_VOLUMES
from taas.detector.detector import Detector
from taas.errors import TaasError
from taas.events.dataset import open_dataset
from taas.events.event import Event, event_stem
from taas.io.atomic import atomic_write
from taas.pipeline.runner import Pipeline, PipelineResult
from taas.pipeline.spec import PipelineSpec
from taas.pipeline.timings import FILE_NAME as TIMINGS_FILE
from taas.pipeline.timings import copies_by_stage, transfer_fields, write_timings
from taas.reco.hit_spacepoints import event_inputs, has_cells
from taas.reco.stages import ClusteringStage, SpacepointStage

log = logging.getLogger(__name__)

#: Stages that load GNN checkpoints (their configs take ``model_set`` / ``checkpoint_dir``).
GNN_STAGES = ("graph_construction", "edge_classification")

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


def with_model_set(spec: PipelineSpec, model_set: str) -> PipelineSpec:
    """``spec`` with its GNN stages on the shipped ``model_set``, except where its stage
    configs already choose checkpoints or a model set (an explicit choice wins)."""
    configs = {stage: {"model_set": model_set} for stage, _ in spec.steps
               if stage in GNN_STAGES
               and not {"checkpoint_dir", "model_set"} & set(spec.stage_configs.get(stage, {}))}
    return spec.with_configs(configs)


def for_spacepoint_input(spec: PipelineSpec) -> PipelineSpec:
    """``spec`` for events given as space points: its GNN stages on the positions-only model
    set, except where its stage configs already choose checkpoints or a model set."""
    return with_model_set(spec, "positions")


#: The front end that an event given as space points replaces: ``spacepoint_inputs`` gives
#: exactly these stages' outputs (their contracts), so ``Pipeline`` skips them for such events.
FRONT_END_STAGES = (ClusteringStage.NAME, SpacepointStage.NAME)

#: Name suffix of a pipeline derived for space-point input (``spacepoint_pipeline``).
SPACEPOINT_SUFFIX = "_spacepoints"


def spacepoint_pipeline(spec: PipelineSpec) -> PipelineSpec:
    """``spec`` for events given as space points, as a pipeline of its own: the steps after the
    front end (``FRONT_END_STAGES``), its GNN stages on the positions-only models
    (``for_spacepoint_input``), named ``<name>_spacepoints``.

    It computes what ``Pipeline(for_spacepoint_input(spec))`` computes for such an event (that
    one skips the front end at run time), but its first steps take space points, so a served
    model built from it declares space-point tensors as its inputs: a client sends what the
    event has, not cells it does not have. Derived, not listed, so every pipeline gets one that
    stays in step with its cell-input original."""
    chosen = for_spacepoint_input(spec)
    steps = tuple(step for step in chosen.steps if step[0] not in FRONT_END_STAGES)
    if not steps:
        raise TaasError(f"pipeline {spec.name!r} is all front end: nothing is left to run on "
                        "space points")
    kept = {stage for stage, _ in steps}
    return replace(chosen, name=spec.name + SPACEPOINT_SUFFIX, steps=steps,
                   accel_stages=tuple(s for s in chosen.accel_stages if s in kept),
                   stage_configs={k: v for k, v in chosen.stage_configs.items() if k in kept})


def for_binary_strips(spec: PipelineSpec) -> PipelineSpec:
    """``spec`` for events with binary strip readout: its GNN stages on the ``binary_strips``
    models, except where its stage configs already choose checkpoints or a model set."""
    return with_model_set(spec, "binary_strips")


def strip_readout(event: Event) -> str | None:
    """How the event's strips were read out, seen in its cells: ``"binary"`` when every cell in
    the strip volumes (``STRIP_VOLUMES``) has value exactly 1.0 (a fired/not-fired readout:
    TrackML, ITk strips), ``"analog"`` when any has another value, None without strip cells.

    The cell feature ``charge`` sums cell values, so binary strips give cell counts (1-2)
    where analog-trained models expect path lengths (~0.3): the readout decides the models."""
    det = event.detector
    volumes = det.modules["volume_id"][det.index_of(event.cells["module_key"])]
    on_strips = np.isin(volumes, STRIP_VOLUMES)
    if not on_strips.any():
        return None
    return "binary" if bool(np.all(event.cells["value"][on_strips] == 1.0)) else "analog"


def reconstruct(events: str | Path, out: str | Path, spec: PipelineSpec, *,
                detector: str | Path | None = None, progress: bool = True,
                warmup: bool = False, factory: PipelineFactory | None = None,
                info: Mapping[str, Any] | None = None) -> Path:
    """Reconstruct every event of ``events`` with ``spec`` into ``out``; returns ``out``.

    ``warmup`` runs the first event once, untimed, before the timed loop: just-in-time
    compilation and caches then stay out of the figures, as ACTS' Sequencer timings do.
    ``factory`` builds the runner instead of an in-process ``Pipeline`` (the workflow's served
    mode passes ``taas.service.client.make_pipeline``); for events without cells it gets
    ``spacepoint_pipeline(spec)``, whose served model takes the space points the events have.
    ``info`` adds keys to run.json, which also names the served models (``served_models``:
    the runner's ``models``, None in-process).
    """
    dataset = open_dataset(events, detector=detector)
    first = dataset.read(dataset.event_ids[0]) if dataset.event_ids else None
    given = "cells" if first is None or has_cells(first) else "spacepoints"
    if given == "spacepoints":
        spec = for_spacepoint_input(spec)
        log.info("%s: events without cells; %s starts from their space points", events,
                 spec.name)
    readout = strip_readout(first) if first is not None and given == "cells" else None
    if readout == "binary" and (chosen := for_binary_strips(spec)) != spec:
        spec = chosen
        log.info("%s: strip cells all read 1.0 (binary readout); %s's GNN stages take the "
                 "binary_strips models", events, spec.name)
    if factory is None:
        pipeline: EventRunner = Pipeline(spec, dataset.detector)
        dropped: set[str] = set()
    else:
        runs = spacepoint_pipeline(spec) if given == "spacepoints" else spec
        pipeline = factory(runs, dataset.detector)
        # what the served pipeline leaves out, the in-process one skips: run.json says the same
        dropped = {stage for stage, _ in spec.steps} - {stage for stage, _ in runs.steps}
    if warmup and first is not None:
        pipeline.run(event_inputs(first))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, sizes, skipped = [], {}, set(dropped)
    for event_id in tqdm(dataset.event_ids, desc=f"reconstruct [{spec.name}]", unit="event",
                         disable=not progress):
        # the first event was read to see what the input is: not read twice
        event = first if first is not None and event_id == first.event_id else (
            dataset.read(event_id))
        result = pipeline.run(event_inputs(event))
        skipped.update(result.skipped)
        atomic_write(reco_path(out, event.event_id), partial(_save_npz, tensors=result.tensors))
        sizes[event.event_id] = event_sizes(result.tensors)
        rows += [{"event_id": event.event_id, "stage": t.stage, "backend": t.backend,
                  "device": t.device, "seconds": t.seconds,
                  **transfer_fields(t.transfers, t.counted)} for t in result.timings]
    atomic_write(out / TIMINGS_FILE, lambda p: write_timings(p, rows))
    info = {"pipeline": spec.name, "steps": [list(s) for s in spec.steps],
            "stage_configs": {k: dict(v) for k, v in spec.stage_configs.items()},
            "events": str(events), "format": dataset.format,
            "sizes": {str(k): v for k, v in sizes.items()}, "warmup": warmup,
            "input": given, "strip_readout": readout,
            "skipped_stages": [s for s, _ in spec.steps if s in skipped],
            "gnn_models": gnn_models(pipeline),
            # which served models ran the events (None: in-process)
            "served_models": served_models(pipeline),
            # host <-> device copies per event (medians), and whether tensors stayed on the
            # device between stages (None: a served pipeline, whose model decides)
            "device_residency": getattr(pipeline, "resident", None),
            "copies_per_event": copies_by_stage(rows),
            "taas_version": __version__, "python": platform.python_version(),
            "machine": platform.platform(), **dict(info or {})}
    atomic_write(out / "run.json", lambda p: p.write_text(json.dumps(info, indent=2)))
    return out


def gnn_models(pipeline: EventRunner) -> str | None:
    """Which GNN models the pipeline's stages loaded (None: no GNN stage, or a served pipeline,
    whose models the model repository names)."""
    described = {getattr(stage, "model_description", None)
                 for stage in getattr(pipeline, "stages", [])}
    described.discard(None)
    return "; ".join(sorted(str(d) for d in described)) or None


def served_models(pipeline: EventRunner) -> list[str] | None:
    """The served models a runner called (its ``models``: ``RemotePipeline``, served stages,
    a failover runner), None for an in-process pipeline."""
    models = getattr(pipeline, "models", None)
    return None if models is None else list(models)


def _save_npz(path: Path, tensors: dict[str, np.ndarray]) -> None:
    with path.open("wb") as fh:
        # numpy's stub would read a tensor named "allow_pickle" into that flag
        np.savez(fh, **tensors)  # type: ignore[arg-type]
