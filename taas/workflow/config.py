"""Validate the workflow configuration after ``--config`` overrides, coercing their strings.

Snakemake parses ``--config key=value`` as int, float, bool or YAML, else a plain string, so
``pipelines=cpu`` arrives as ``'cpu'``, ``instances=[1,2]`` as ``['1', '2']``,
``allow_cpu_device=true`` possibly as ``'true'`` and ``routing=clustering:gpu`` as a string. This
module coerces such values to the schema's types, then validates against
``workflow/schemas/config.schema.yaml`` and fills in defaults, so the rules read one checked
dict. The pipeline names are taken from ``taas.pipeline.spec.PIPELINES`` here, not written into
the schema, so registering a pipeline is all it takes to make it selectable.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from taas.errors import TaasError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class ConfigError(TaasError):
    """A workflow configuration value is invalid; the message names the key."""


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _with_registered_names(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with ``pipelines`` restricted to the pipelines registered right now."""
    from taas.pipeline.spec import PIPELINES

    out = copy.deepcopy(dict(schema))
    items = out["properties"].get("pipelines", {}).get("items")
    if isinstance(items, dict) and "enum" not in items:
        items["enum"] = sorted(PIPELINES)
    return out


def _coerce_scalar(value: Any, kind: str | None) -> Any:
    if kind == "string" and value is not None and not isinstance(value, str):
        return str(value)
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "integer" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if kind == "boolean" and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return value


def _coerce_array(value: Any, items: Mapping[str, Any]) -> Any:
    item_kind = items.get("type")
    if isinstance(value, str):
        match = _RANGE.match(value) if item_kind == "integer" else None
        if match:  # "1-4": an inclusive range of integers
            lo, hi = int(match[1]), int(match[2])
            value = list(range(lo, hi + 1)) if lo <= hi else [value]
        else:
            value = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
    elif not isinstance(value, list | tuple):
        value = [value]
    return [_coerce_scalar(v, item_kind) for v in value]


def _coerce_mapping(value: Any) -> Any:
    """``"clustering:gpu,spacepoints:gpu"`` (the command-line form) -> a dict."""
    if value is None:
        return {}
    if not isinstance(value, str):
        return value
    out: dict[str, str] = {}
    for item in (v.strip() for v in value.strip("{}").split(",")):
        if not item:
            continue
        key, sep, val = item.partition(":")
        if not sep:
            raise ConfigError(f"configuration key routing: want stage:backend pairs separated "
                              f"by commas (e.g. clustering:gpu,spacepoints:gpu), got {item!r}")
        out[key.strip()] = val.strip()
    return out


def _coerce(value: Any, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type")
    if kind == "array":
        return _coerce_array(value, spec.get("items", {}))
    if kind == "object":
        return _coerce_mapping(value)
    return _coerce_scalar(value, kind)


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None,
                    ) -> dict[str, Any]:
    """The configuration coerced, validated and completed with defaults."""
    schema = _with_registered_names(schema or load_schema())
    props = schema["properties"]
    unknown = sorted(set(config) - set(props))
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {unknown}; valid: {sorted(props)}")
    out = {k: _coerce(v, props[k]) for k, v in config.items()}
    for key, spec in props.items():
        out.setdefault(key, copy.deepcopy(spec.get("default")))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(out), key=str)
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"configuration key {where}: {first.message}")
    return out
