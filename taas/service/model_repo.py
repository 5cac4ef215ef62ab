"""Generate a Triton model repository from the stage registry and the pipeline specs.

Layout (relocatable: nothing refers outside the directory)::

    OUT/detector.parquet                 the geometry every model loads, once per instance
    OUT/clustering_cpu/config.pbtxt      one Python-backend model per (stage, backend)
    OUT/clustering_cpu/1/model.py        the same thin adapter everywhere, per version
    OUT/pipeline_<name>/...              a whole pipeline in one model (the fast "custom backend")
    OUT/ensemble_<name>/config.pbtxt     the same pipeline as an ensemble of the stage models
    OUT/pipeline_<name>_spacepoints/...  opt-in (``spacepoints``): the pipeline for events given
                                         as space points (no cells): its steps after the front
                                         end, GNN stages on the positions-only models, inputs
                                         the space-point tensors (as ExaTrkX-as-a-service's)
    OUT/<model>/<N>/files/<stage>.<field>/  files a stage config names (e.g. GNN checkpoints);
                                         inside the version (Triton takes every top-level
                                         directory for a model), so they leave with it

Stage configurations (the pipelines' ``stage_configs`` plus any overrides) are written into each
model's ``config.pbtxt`` as the JSON parameter ``taas.v<N>.stage_configs`` of its version N, so a
served model runs exactly what the direct pipeline runs; ``taas.v<N>.identity`` records what the
version computes (``taas.service.versions``), and the ``version_policy`` which versions Triton
serves.

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
from taas.pipeline.reconstruct import FRONT_END_STAGES, spacepoint_pipeline
from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.service import pbtxt
from taas.service.graph import PipelineGraph, model_name
from taas.service.python_model import (
    DEVICE_SPEC,
    PARAM_DETECTOR,
    PARAM_KIND,
    PARAM_MAX_ROWS,
    PARAM_PIPELINE,
    PARAM_STEPS,
    format_steps,
)
from taas.service.versions import (
    CONFIGS_KEY,
    IDENTITY_KEY,
    ModelIdentity,
    VersionPolicy,
    format_identity,
    pipeline_identity,
    version_key,
    versioned_parameters,
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


def serves_spacepoints(spec: PipelineSpec) -> bool:
    """Whether ``spacepoints`` builds a space-point model for ``spec``: it has a front end to
    leave out (a spec without one already starts from space points), and none of its steps
    runs on the FPGA backend, whose emulated GNN blocks exist for the cell-feature models only
    (docs/spacepoint_input.md)."""
    return (any(stage in FRONT_END_STAGES for stage, _ in spec.steps)
            and all(backend != "fpga" for _, backend in spec.steps))


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
    add_version: bool = False,
    policy: VersionPolicy | None = None,
    spacepoints: bool = False,
) -> Path:
    """Write a model repository to ``out_dir`` and return it.

    ``stages`` defaults to every registered (stage, backend); ``pipelines`` to every servable
    pipeline of ``PIPELINES`` (names or ``PipelineSpec`` objects). Stage models needed by an
    ensemble are added even when ``stages`` leaves them out. Existing model directories of the
    same names are replaced (unless ``add_version``); other files in ``out_dir`` are left
    alone. ``stage_configs``
    overrides fields of the pipelines' stage configs (``{stage: {field: value}}``); a stage
    model shared by two pipelines must get the same config from both.

    ``add_version``: keep the existing models and write each as a new version beside them when
    what it computes changed (its ``ModelIdentity``, see ``taas.service.versions``), keeping
    the versions ``policy`` serves (default: the newest one); an unchanged model keeps its
    latest version number. Without it, every model is written afresh as version 1.

    ``spacepoints``: also write, for each pipeline that ``serves_spacepoints``, the
    whole-pipeline model of ``spacepoint_pipeline(spec)`` (``pipeline_<name>_spacepoints``),
    which ``taas reconstruct`` calls for events without cells. Opt-in: each model is one more
    stub process per instance that loads torch and the GNN weights at every server start,
    which repositories serving cell events (the workflow's throughput and service-option
    servers) would pay for nothing. No ensemble and no stage models come with it: its GNN
    stage models would need the positions-only models under the names the cell models' take.
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
    writer = _ModelWriter(out, add_version=add_version, policy=policy or VersionPolicy(),
                          instances=instances, kind=kind)

    for stage, backend in wanted:
        writer.python_model(model_name(stage, backend), [(stage, backend)], {
            PARAM_KIND: "stage", PARAM_STEPS: format_steps([(stage, backend)]), **limits},
            stage_models[(stage, backend)])
    for spec in specs:
        identity = writer.python_model(pipeline_model_name(spec.name), spec.steps, {
            PARAM_KIND: "pipeline", PARAM_PIPELINE: spec.name,
            PARAM_STEPS: format_steps(spec.steps), **limits}, spec.stage_configs)
        if ensembles:
            writer.ensemble(ensemble_model_name(spec.name), spec.steps, identity)
    derived = [spacepoint_pipeline(spec) for spec in specs
               if spacepoints and serves_spacepoints(spec)]
    for spec in derived:
        writer.python_model(pipeline_model_name(spec.name), spec.steps, {
            PARAM_KIND: "pipeline", PARAM_PIPELINE: spec.name,
            PARAM_STEPS: format_steps(spec.steps), **limits}, spec.stage_configs)
    log.info("model repository %s: %d stage models, %d pipelines (%d for space points)", out,
             len(wanted), len(specs) + len(derived), len(derived))
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


class _ModelWriter:
    """Writes models as new versions beside the existing ones (``add_version``) or afresh.

    A new version is added only when what the model computes changed (its identity differs
    from the latest version's), so rebuilding an unchanged repository is idempotent; versions
    the policy no longer serves are removed with their files.
    """

    def __init__(self, out: Path, *, add_version: bool, policy: VersionPolicy, instances: int,
                 kind: str) -> None:
        self.out, self.add_version, self.policy = out, add_version, policy
        self.instances, self.kind = instances, kind

    def python_model(self, name: str, steps: Sequence[tuple[str, str]],
                     shared: dict[str, str], configs: Mapping[str, Mapping[str, object]]
                     ) -> tuple[ModelIdentity, ...]:
        """Write a version of one Python-backend model; return its identity."""
        graph = PipelineGraph.from_steps(steps)
        identity = pipeline_identity(steps, configs)
        version, kept = self._plan(name, shared, identity, self.policy)
        copied = _copy_files(self.out, f"{name}/{version}", configs)
        kept[version] = {IDENTITY_KEY: format_identity(identity),
                         CONFIGS_KEY: json.dumps(copied, sort_keys=True)}
        config = pbtxt.python_model_config(
            name, graph.inputs, (*graph.outputs, DEVICE_SPEC),
            parameters={**shared, **_flatten(kept)}, instances=self.instances, kind=self.kind,
            policy=self.policy)
        _write(self.out / name / "config.pbtxt", config)
        adapter = resources.files("taas.service").joinpath("templates/model.py").read_text()
        _write(self.out / name / str(version) / "model.py", adapter)
        return identity

    def ensemble(self, name: str, steps: Sequence[tuple[str, str]],
                 identity: tuple[ModelIdentity, ...]) -> None:
        """An ensemble calls the latest version of each step's model, so it serves only its
        own latest version (one identity: the steps' latest ones)."""
        graph = PipelineGraph.from_steps(steps)
        policy = VersionPolicy()
        version, kept = self._plan(name, {PARAM_KIND: "ensemble"}, identity, policy)
        kept[version] = {IDENTITY_KEY: format_identity(identity)}
        _write(self.out / name / "config.pbtxt", pbtxt.ensemble_config(
            name, graph.inputs, graph.outputs, graph.ensemble_steps(),
            parameters={PARAM_KIND: "ensemble", **_flatten(kept)}, policy=policy))
        (self.out / name / str(version)).mkdir(exist_ok=True)  # Triton wants the directory

    def _plan(self, name: str, shared: Mapping[str, str], identity: tuple[ModelIdentity, ...],
              policy: VersionPolicy) -> tuple[int, dict[int, dict[str, str]]]:
        """The version to write (its directory emptied) and the per-version parameters of the
        earlier versions that stay."""
        model_dir = self.out / name
        config = model_dir / "config.pbtxt"
        if not self.add_version or not config.is_file():
            _clear(model_dir)
            return 1, {}
        old = pbtxt.read_parameters(config.read_text())
        for key in (PARAM_KIND, PARAM_STEPS, PARAM_PIPELINE):
            if old.get(key, "") != shared.get(key, ""):
                raise TaasError(f"model {name}: {key} was {old.get(key, '')!r}, now "
                                f"{shared.get(key, '')!r}; all versions of a model share its "
                                f"tensors, so a changed model needs a new name")
        kept = versioned_parameters(old)
        latest = max(kept, default=0)
        same = latest and kept[latest].get(IDENTITY_KEY) == format_identity(identity)
        version = latest if same else latest + 1
        served = policy.served([*kept, version])
        if version not in served:
            raise TaasError(f"model {name}: the new version {version} would not be served by "
                            f"its version policy {policy}")
        for dropped in set(kept) - served:
            del kept[dropped]
            _clear(model_dir / str(dropped))
        _clear(model_dir / str(version))
        log.info("model %s: version %d (%s), keeping versions %s", name, version,
                 "unchanged" if same else "new", sorted(kept))
        return version, kept


def _flatten(per_version: Mapping[int, Mapping[str, str]]) -> dict[str, str]:
    return {version_key(v, key): value for v in sorted(per_version)
            for key, value in per_version[v].items()}


def _clear(model_dir: Path) -> None:
    """Remove a model or version directory of an earlier build (its files may be stale)."""
    if model_dir.exists():
        shutil.rmtree(model_dir)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
