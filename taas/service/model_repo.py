"""Generate a Triton model repository from the stage registry and the pipeline specs.

Layout (relocatable: nothing refers outside the directory)::

    OUT/detector.parquet                 the geometry every model loads, once per instance
    OUT/clustering_cpu/config.pbtxt      one Python-backend model per (stage, backend)
    OUT/clustering_cpu/1/model.py        the same thin adapter everywhere
    OUT/pipeline_<name>/...              a whole pipeline in one model (the fast "custom backend")
    OUT/ensemble_<name>/config.pbtxt     the same pipeline as an ensemble of the stage models
    OUT/<model>/files/<stage>.<field>/   files a stage config names (e.g. GNN checkpoints);
                                         inside the model (Triton takes every top-level
                                         directory for a model)

Stage configurations (the pipelines' ``stage_configs`` plus any overrides) are written into each
model's ``config.pbtxt`` as the JSON parameter ``taas.stage_configs``, so a served model runs
exactly what the direct pipeline runs.

The models import ``taas`` at load time, so the server's Python must have taas installed
(see docs/triton.md for NVIDIA's container).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from taas.errors import TaasError
from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.service import pbtxt
from taas.service.graph import PipelineGraph, model_name
from taas.service.python_model import (
    DEVICE_SPEC,
    PARAM_CONFIGS,
    PARAM_DETECTOR,
    PARAM_KIND,
    PARAM_MAX_ROWS,
    PARAM_PIPELINE,
    PARAM_STEPS,
    format_steps,
)
from taas.stages import registry
from taas.stages.configs import PATH_FIELDS, merge_configs

log = logging.getLogger(__name__)

#: Default event-size limit: rows of any input tensor (cells for clustering). A few times the
#: largest events we simulate (about 10^6 cells at HL-LHC pile-up 200).
DEFAULT_MAX_ROWS = 5_000_000


def pipeline_model_name(name: str) -> str:
    return f"pipeline_{name}"


def ensemble_model_name(name: str) -> str:
    return f"ensemble_{name}"


def servable_pipelines() -> list[str]:
    """Pipelines of ``PIPELINES`` whose every step has a registered implementation."""
    return [name for name, spec in PIPELINES.items()
            if all(step in registry.IMPLEMENTATIONS for step in spec.steps)]


def build_model_repository(
    out_dir: str | Path,
    *,
    detector_path: str | Path,
    stages: Sequence[tuple[str, str]] | None = None,
    pipelines: Sequence[str | PipelineSpec] | None = None,
    instances: int = 1,
    kind: str = "KIND_CPU",
    max_rows: int = DEFAULT_MAX_ROWS,
    ensembles: bool = True,
    stage_configs: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """Write a model repository to ``out_dir`` and return it.

    ``stages`` defaults to every registered (stage, backend); ``pipelines`` to every servable
    pipeline of ``PIPELINES`` (names or ``PipelineSpec`` objects). Stage models needed by an
    ensemble are added even when ``stages`` leaves them out. Existing model directories of the
    same names are replaced; other files in ``out_dir`` are left alone. ``stage_configs``
    overrides fields of the pipelines' stage configs (``{stage: {field: value}}``); a stage
    model shared by two pipelines must get the same config from both.
    """
    out = Path(out_dir)
    detector_path = Path(detector_path)
    if not detector_path.is_file():
        raise TaasError(f"detector file {detector_path} does not exist")
    specs = [(p if isinstance(p, PipelineSpec) else _pipeline(p)).with_configs(stage_configs)
             for p in (servable_pipelines() if pipelines is None else pipelines)]
    wanted = list(registry.available() if stages is None else stages)
    if ensembles:
        wanted += [step for spec in specs for step in spec.steps]
    wanted = list(dict.fromkeys(wanted))

    out.mkdir(parents=True, exist_ok=True)
    detector_name = "detector" + "".join(detector_path.suffixes)
    shutil.copyfile(detector_path, out / detector_name)
    limits = {PARAM_DETECTOR: detector_name, PARAM_MAX_ROWS: str(max_rows)}
    stage_models = _stage_model_configs(wanted, specs, stage_configs)

    for stage, backend in wanted:
        graph = PipelineGraph.from_steps([(stage, backend)])
        _clear(out / model_name(stage, backend))
        configs = _copy_files(out, model_name(stage, backend), stage_models[(stage, backend)])
        _write_python_model(out / model_name(stage, backend), graph, {
            PARAM_KIND: "stage", PARAM_STEPS: format_steps([(stage, backend)]), **limits,
            PARAM_CONFIGS: json.dumps(configs, sort_keys=True)},
            instances=instances, kind=kind)
    for spec in specs:
        graph = PipelineGraph.from_steps(spec.steps)
        _clear(out / pipeline_model_name(spec.name))
        configs = _copy_files(out, pipeline_model_name(spec.name), spec.stage_configs)
        _write_python_model(out / pipeline_model_name(spec.name), graph, {
            PARAM_KIND: "pipeline", PARAM_PIPELINE: spec.name,
            PARAM_STEPS: format_steps(spec.steps), **limits,
            PARAM_CONFIGS: json.dumps(configs, sort_keys=True)},
            instances=instances, kind=kind)
        if ensembles:
            name = ensemble_model_name(spec.name)
            _write(out / name / "config.pbtxt", pbtxt.ensemble_config(
                name, graph.inputs, graph.outputs, graph.ensemble_steps()))
            (out / name / "1").mkdir(exist_ok=True)  # Triton wants a version directory
    log.info("model repository %s: %d stage models, %d pipelines", out, len(wanted), len(specs))
    return out


def _stage_model_configs(wanted: Sequence[tuple[str, str]], specs: Sequence[PipelineSpec],
                         overrides: Mapping[str, Mapping[str, object]] | None
                         ) -> dict[tuple[str, str], dict[str, dict[str, object]]]:
    """The config of each stage model: the pipelines' settings of that step (they must agree),
    else the overrides alone."""
    chosen: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
    origin: dict[tuple[str, str], str] = {}
    for spec in specs:
        for step in spec.steps:
            config = {step[0]: dict(spec.stage_configs[step[0]])} \
                if step[0] in spec.stage_configs else {}
            if step in chosen and chosen[step] != config:
                raise TaasError(f"stage model {model_name(*step)}: pipelines {origin[step]!r} and "
                                f"{spec.name!r} configure it differently ({chosen[step]} vs "
                                f"{config}); build one repository per pipeline")
            chosen.setdefault(step, config)
            origin.setdefault(step, spec.name)
    for stage, backend in wanted:
        if (stage, backend) not in chosen:
            own = (overrides or {}).get(stage)
            chosen[(stage, backend)] = {stage: dict(own)} if own else {}
    return chosen


def _copy_files(out: Path, model: str, configs: Mapping[str, Mapping[str, object]]
                ) -> dict[str, dict[str, object]]:
    """Copy the files and directories that configs name into ``out/<model>/files`` and point
    the configs at the copies, relative to the repository root (the repository stays
    relocatable)."""
    copied = merge_configs(configs)
    for stage, values in copied.items():
        for key in PATH_FIELDS:
            if not values.get(key):
                continue
            source = Path(str(values[key]))
            if not source.exists():
                raise TaasError(f"stage {stage!r}: {key} {source} does not exist")
            relative = Path(model) / "files" / f"{stage}.{key}"
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copyfile(source, target)
            values[key] = relative.as_posix()
    return copied


def _pipeline(name: str) -> PipelineSpec:
    from taas.pipeline.spec import get_pipeline

    return get_pipeline(name)


def _write_python_model(model_dir: Path, graph: PipelineGraph, parameters: dict[str, str], *,
                        instances: int, kind: str) -> None:
    config = pbtxt.python_model_config(model_dir.name, graph.inputs,
                                       (*graph.outputs, DEVICE_SPEC),
                                       parameters=parameters, instances=instances, kind=kind)
    _write(model_dir / "config.pbtxt", config)
    adapter = resources.files("taas.service").joinpath("templates/model.py").read_text()
    _write(model_dir / "1" / "model.py", adapter)


def _clear(model_dir: Path) -> None:
    """Remove a model directory of an earlier build (its files may be stale)."""
    if model_dir.exists():
        shutil.rmtree(model_dir)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
