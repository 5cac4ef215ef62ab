"""The workflow's ``models`` step: the trained models a pipeline's stages load, shipped or
freshly trained, written where every later step (reconstruct, model repository) picks them up.

Output directory of one pipeline::

    OUT/stage_configs.json   {stage: {"checkpoint_dir": OUT/checkpoints}} for the stages that
                             load models ({} for a pipeline without any, e.g. ``cpu``)
    OUT/checkpoints/*.pt     the checkpoints (copies of the shipped ones, or trained here)
    OUT/models.json          provenance: source, training data, validation metrics
    OUT/training/            with ``source="train"``: the training run (events, samples, logs)

Training simulates its own events (seed ``seed``, validation ``seed + 1``) so the models never
see the events they are evaluated on.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from taas.errors import TaasError
from taas.pipeline.spec import PipelineSpec
from taas.stages import registry
from taas.stages.configs import read_stage_configs, takes_field

log = logging.getLogger(__name__)

SOURCES = ("shipped", "train")
#: The file of the step's output that every later step reads.
STAGE_CONFIGS_FILE = "stage_configs.json"
#: Config field through which a stage is told where its checkpoints are.
CHECKPOINT_FIELD = "checkpoint_dir"


def model_stages(spec: PipelineSpec) -> list[str]:
    """The stages of ``spec`` that load trained models."""
    return [stage for stage, backend in spec.steps
            if takes_field(registry.resolve(stage, backend), CHECKPOINT_FIELD)]


def prepare_models(spec: PipelineSpec, source: str, out: str | Path, *,
                   train_preset: str = "small", train_events: int = 10, seed: int = 1001,
                   progress: bool = False) -> dict[str, Any]:
    """Write the models of ``spec`` into ``out`` (layout in the module docstring); returns
    the provenance written to ``models.json``."""
    if source not in SOURCES:
        raise TaasError(f"models source must be one of {SOURCES}, got {source!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = model_stages(spec)
    info: dict[str, Any] = {"pipeline": spec.name, "source": source, "stages": stages}
    configs: dict[str, dict[str, str]] = {}
    if stages:
        checkpoints = out / "checkpoints"
        if checkpoints.exists():
            shutil.rmtree(checkpoints)
        checkpoints.mkdir()
        info.update(_shipped(checkpoints) if source == "shipped" else
                    _train(checkpoints, out / "training", train_preset, train_events, seed,
                           progress))
        configs = {stage: {CHECKPOINT_FIELD: str(checkpoints.resolve())} for stage in stages}
    (out / STAGE_CONFIGS_FILE).write_text(json.dumps(configs, indent=2))
    (out / "models.json").write_text(json.dumps(info, indent=2))
    log.info("models of %s (%s): %s", spec.name, source, ", ".join(stages) or "none needed")
    return info


def with_models(spec: PipelineSpec, out: str | Path) -> PipelineSpec:
    """``spec`` with the stage configs a ``prepare_models`` output directory holds."""
    return spec.with_configs(read_stage_configs(Path(out) / STAGE_CONFIGS_FILE))


def _shipped(checkpoints: Path) -> dict[str, Any]:
    from taas.gnn.checkpoint import SHIPPED, load_checkpoint, shipped_path

    for name in SHIPPED:
        shutil.copyfile(shipped_path(name), checkpoints / f"{name}.pt")
    loaded = {name: load_checkpoint(checkpoints / f"{name}.pt").metadata for name in SHIPPED}
    return {"training": loaded["gnn"].get("data", {}),
            "validation": {name: meta.get("metrics", {}).get("validation")
                           for name, meta in loaded.items()}}


def _train(checkpoints: Path, work: Path, preset: str, events: int, seed: int,
           progress: bool) -> dict[str, Any]:
    from taas.gnn.checkpoint import SHIPPED
    from taas.gnn.training import train_all

    if events < 2:
        raise TaasError(f"training needs at least 2 events, got {events}")
    metrics = train_all(work, preset=preset, train_events=events,
                        val_events=max(1, events // 4), seed=seed, num_threads=1,
                        progress=progress)
    for name in SHIPPED:
        shutil.copyfile(work / f"{name}.pt", checkpoints / f"{name}.pt")
    return {"training": {"preset": preset, "train_events": events,
                         "val_events": max(1, events // 4), "seed": seed},
            "validation": {name: metrics[name]["validation"] for name in SHIPPED}}
