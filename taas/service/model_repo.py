"""Generate a Triton model repository from the stage registry and the pipeline specs.

Layout (relocatable: nothing refers outside the directory)::

    OUT/detector.parquet                 the geometry every model loads, once per instance
    OUT/clustering_cpu/config.pbtxt      one Python-backend model per (stage, backend)
    OUT/clustering_cpu/1/model.py        the same thin adapter everywhere
    OUT/pipeline_<name>/...              a whole pipeline in one model (the fast "custom backend")
    OUT/ensemble_<name>/config.pbtxt     the same pipeline as an ensemble of the stage models

The models import ``taas`` at load time, so the server's Python must have taas installed
(see docs/triton.md for NVIDIA's container).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from taas.errors import TaasError
from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.service import pbtxt
from taas.service.graph import PipelineGraph, model_name
from taas.service.python_model import (
    PARAM_DETECTOR,
    PARAM_KIND,
    PARAM_MAX_ROWS,
    PARAM_PIPELINE,
    PARAM_STEPS,
    format_steps,
)
from taas.stages import registry

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
) -> Path:
    """Write a model repository to ``out_dir`` and return it.

    ``stages`` defaults to every registered (stage, backend); ``pipelines`` to every servable
    pipeline of ``PIPELINES`` (names or ``PipelineSpec`` objects). Stage models needed by an
    ensemble are added even when ``stages`` leaves them out. Existing model directories of the
    same names are replaced; other files in ``out_dir`` are left alone.
    """
    out = Path(out_dir)
    detector_path = Path(detector_path)
    if not detector_path.is_file():
        raise TaasError(f"detector file {detector_path} does not exist")
    specs = [p if isinstance(p, PipelineSpec) else _pipeline(p)
             for p in (servable_pipelines() if pipelines is None else pipelines)]
    wanted = list(registry.available() if stages is None else stages)
    if ensembles:
        wanted += [step for spec in specs for step in spec.steps]
    wanted = list(dict.fromkeys(wanted))

    out.mkdir(parents=True, exist_ok=True)
    detector_name = "detector" + "".join(detector_path.suffixes)
    shutil.copyfile(detector_path, out / detector_name)
    common = {"instances": instances, "kind": kind}
    limits = {PARAM_DETECTOR: detector_name, PARAM_MAX_ROWS: str(max_rows)}

    for stage, backend in wanted:
        graph = PipelineGraph.from_steps([(stage, backend)])
        _write_python_model(out / model_name(stage, backend), graph, {
            PARAM_KIND: "stage", PARAM_STEPS: format_steps([(stage, backend)]), **limits},
            **common)
    for spec in specs:
        graph = PipelineGraph.from_steps(spec.steps)
        _write_python_model(out / pipeline_model_name(spec.name), graph, {
            PARAM_KIND: "pipeline", PARAM_PIPELINE: spec.name,
            PARAM_STEPS: format_steps(spec.steps), **limits}, **common)
        if ensembles:
            name = ensemble_model_name(spec.name)
            _write(out / name / "config.pbtxt", pbtxt.ensemble_config(
                name, graph.inputs, graph.outputs, graph.ensemble_steps()))
            (out / name / "1").mkdir(exist_ok=True)  # Triton wants a version directory
    log.info("model repository %s: %d stage models, %d pipelines", out, len(wanted), len(specs))
    return out


def _pipeline(name: str) -> PipelineSpec:
    from taas.pipeline.spec import get_pipeline

    return get_pipeline(name)


def _write_python_model(model_dir: Path, graph: PipelineGraph, parameters: dict[str, str], *,
                        instances: int, kind: str) -> None:
    if model_dir.exists():
        shutil.rmtree(model_dir)
    config = pbtxt.python_model_config(model_dir.name, graph.inputs, graph.outputs,
                                       parameters=parameters, instances=instances, kind=kind)
    _write(model_dir / "config.pbtxt", config)
    adapter = resources.files("taas.service").joinpath("templates/model.py").read_text()
    _write(model_dir / "1" / "model.py", adapter)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
