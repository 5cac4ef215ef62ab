"""Stage configurations as plain mappings: what pipelines, files and model repositories carry.

A stage's constructor takes its own config dataclass (``SeedingConfig``, ``GnnStageConfig``...).
Pipelines, the workflow and the Triton model repository need the same settings in a form that
survives JSON (a ``stage_configs.json`` file, a ``config.pbtxt`` parameter), so they carry
``{stage: {field: value}}`` and this module turns one entry into the stage's dataclass, with an
error naming the stage and the valid fields for a misspelt key. Merging is per field: a pipeline's
defaults, then the user's overrides.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from taas.errors import TaasError

T = TypeVar("T")

#: {stage name: {config field: JSON value}}
StageConfigs = Mapping[str, Mapping[str, Any]]


def config_type(stage_cls: type) -> type | None:
    """The dataclass a stage class's ``config`` argument takes, or None if it takes none."""
    init = vars(stage_cls).get("__init__") or next(
        vars(c)["__init__"] for c in stage_cls.__mro__ if "__init__" in vars(c))
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # a forward reference that cannot be resolved: treat as untyped
        hints = {}
    annotation = hints.get("config")
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def build_config(stage_cls: type, values: Mapping[str, Any]) -> object:
    """The stage's config dataclass from a mapping; unknown keys are an error."""
    cls = config_type(stage_cls)
    name = getattr(stage_cls, "NAME", stage_cls.__name__)
    if cls is None:
        raise TaasError(f"stage {name!r} ({stage_cls.__name__}) takes no configuration, "
                        f"got {sorted(values)}")
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise TaasError(f"stage {name!r}: unknown config key(s) {unknown}; "
                        f"valid keys of {cls.__name__}: {sorted(valid)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise TaasError(f"stage {name!r}: bad config {dict(values)}: {exc}") from exc


def coerce_config(cls: type[T], config: T | Mapping[str, Any] | None) -> T:
    """A config dataclass ``cls`` from None (its defaults), an instance, or a mapping of its
    fields (what workflows and model repositories carry); an unknown key is a ValueError
    listing the valid ones."""
    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, Mapping):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(config) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {sorted(unknown)}; "
                             f"valid: {sorted(names)}")
        return cls(**config)
    raise TypeError(f"config must be {cls.__name__} or a mapping, got {type(config)}")


def merge_configs(*layers: StageConfigs | None) -> dict[str, dict[str, Any]]:
    """Field-wise merge, later layers winning: ``merge(defaults, overrides)``."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for stage, values in (layer or {}).items():
            if not isinstance(values, Mapping):
                raise TaasError(f"config of stage {stage!r} must be a mapping of fields, "
                                f"got {values!r}")
            merged.setdefault(stage, {}).update(values)
    return merged


def read_stage_configs(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """``{stage: {field: value}}`` from a JSON file (None or "" -> no overrides)."""
    if not path:
        return {}
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TaasError(f"cannot read stage configs {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise TaasError(f"{path}: stage configs must be a JSON object {{stage: {{field: value}}}}")
    return merge_configs(data)


#: Config fields whose values are paths (files or directories the stage reads at construction):
#: a model repository copies them in and stores them relative to its root.
PATH_FIELDS = ("checkpoint_dir",)


def resolve_paths(configs: StageConfigs, root: str | Path) -> dict[str, dict[str, Any]]:
    """The configs with relative ``PATH_FIELDS`` made absolute against ``root``."""
    resolved = merge_configs(configs)
    for values in resolved.values():
        for key in PATH_FIELDS:
            if values.get(key) and not Path(values[key]).is_absolute():
                values[key] = str(Path(root) / values[key])
    return resolved


def takes_field(stage_cls: type, name: str) -> bool:
    """Whether the stage's config dataclass has a field ``name`` (e.g. ``checkpoint_dir``:
    the stage loads trained models)."""
    cls = config_type(stage_cls)
    return cls is not None and name in {f.name for f in dataclasses.fields(cls)}
