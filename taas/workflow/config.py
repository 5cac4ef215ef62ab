"""Validate the workflow configuration after ``--config`` overrides, coercing their strings.

Snakemake parses ``--config key=value`` as int, float, bool or YAML, else a plain string, so
``pipelines=cpu`` arrives as ``'cpu'`` and ``pt_min=1`` as an int. This module coerces such
values to the schema's types, then validates against ``workflow/schemas/config.schema.yaml``
and fills in defaults, so the rules read one checked dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from taas.errors import TaasError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(TaasError):
    """A workflow configuration value is invalid; the message names the key."""


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _coerce(value: Any, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type")
    if kind == "array" and isinstance(value, str):
        return [v.strip() for v in value.strip("[]").split(",") if v.strip()]
    if kind == "string" and value is not None and not isinstance(value, str):
        return str(value)
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None,
                    ) -> dict[str, Any]:
    """The configuration coerced, validated and completed with defaults."""
    schema = dict(schema or load_schema())
    props = schema["properties"]
    unknown = sorted(set(config) - set(props))
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {unknown}; valid: {sorted(props)}")
    out = {k: _coerce(v, props[k]) for k, v in config.items()}
    for key, spec in props.items():
        out.setdefault(key, spec.get("default"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(out), key=str)
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"configuration key {where}: {first.message}")
    return out
