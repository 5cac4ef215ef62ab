"""Render Triton ``config.pbtxt`` files from tensor specs: the only place that knows the syntax.

Every generated config (a stage model, a whole-pipeline model, an ensemble) comes from the one
template file ``templates/config.pbtxt.in``; the small per-entry snippets below fill its slots.
The dtype table is shared with the client so both sides always agree on the wire types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template

import numpy as np

from taas.edm.table import TensorSpec
from taas.errors import TaasError
from taas.service.versions import VersionPolicy

#: numpy dtype -> Triton wire type (config.pbtxt says ``TYPE_`` + this; the client says this).
TRITON_DTYPES: dict[np.dtype, str] = {
    np.dtype(k): v for k, v in {
        "?": "BOOL", "u1": "UINT8", "u2": "UINT16", "u4": "UINT32", "u8": "UINT64",
        "i1": "INT8", "i2": "INT16", "i4": "INT32", "i8": "INT64",
        "f2": "FP16", "f4": "FP32", "f8": "FP64",
    }.items()
}
NUMPY_DTYPES: dict[str, np.dtype] = {v: k for k, v in TRITON_DTYPES.items()}

INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU", "KIND_AUTO")

_TENSOR = Template('  { name: "$name" data_type: TYPE_$dtype dims: [ $dims ] }')
_PARAMETER = Template('  { key: "$key" value: { string_value: "$value" } }')
_PYTHON_BODY = Template('backend: "python"\n'
                        'instance_group [ { count: $count kind: $kind } ]\n'
                        '$policy\n'
                        'parameters [\n$parameters\n]')
_ENSEMBLE_BODY = Template('platform: "ensemble"\n$policy\nparameters [\n$parameters\n]\n'
                          'ensemble_scheduling {\n  step [\n$steps\n  ]\n}')
#: One string parameter as ``_PARAMETER`` writes it (quotes and backslashes escaped).
_PARAMETER_READ = re.compile(r'key: "((?:[^"\\]|\\.)*)" value: \{ string_value: '
                             r'"((?:[^"\\]|\\.)*)" \}')
_STEP = Template('    {\n      model_name: "$model"\n      model_version: -1\n'
                 '      input_map [\n$inputs\n      ]\n'
                 '      output_map [\n$outputs\n      ]\n    }')
_MAP_ENTRY = Template('        { key: "$key" value: "$value" }')


def triton_dtype(dtype: np.dtype | str) -> str:
    """The Triton wire type of a numpy dtype (``UINT64`` for ``u8``); clear error if none."""
    try:
        return TRITON_DTYPES[np.dtype(dtype)]
    except KeyError:
        raise TaasError(f"dtype {np.dtype(dtype)} has no Triton equivalent; "
                        f"supported: {sorted(str(d) for d in TRITON_DTYPES)}") from None


def _quote(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def _tensor_entries(specs: Iterable[TensorSpec]) -> str:
    return ",\n".join(
        _TENSOR.substitute(name=_quote(s.name), dtype=triton_dtype(s.dtype),
                           dims=", ".join(str(d) for d in s.shape))
        for s in specs)


def _render(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
            body: str) -> str:
    template = Template(resources.files("taas.service").joinpath(
        "templates/config.pbtxt.in").read_text())
    return template.substitute(name=_quote(name), inputs=_tensor_entries(inputs),
                               outputs=_tensor_entries(outputs), body=body)


def _parameters(parameters: Mapping[str, str]) -> str:
    return ",\n".join(_PARAMETER.substitute(key=_quote(k), value=_quote(v))
                      for k, v in parameters.items())


def read_parameters(config_text: str) -> dict[str, str]:
    """The string ``parameters`` of a config.pbtxt this module wrote (unescaped): the builder
    reads back what older versions of a model recorded."""
    def unquote(text: str) -> str:
        return re.sub(r"\\(.)", r"\1", text)

    return {unquote(k): unquote(v) for k, v in _PARAMETER_READ.findall(config_text)}


def version_policy(policy: VersionPolicy) -> str:
    """Triton's ``version_policy`` entry: the newest ``num_versions``, or ``specific`` ones."""
    if policy.versions:
        listed = ", ".join(str(v) for v in sorted(policy.versions))
        return f"version_policy: {{ specific: {{ versions: [ {listed} ] }} }}"
    return f"version_policy: {{ latest: {{ num_versions: {policy.num_versions} }} }}"


def python_model_config(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                        *, parameters: Mapping[str, str], instances: int = 1,
                        kind: str = "KIND_CPU", policy: VersionPolicy | None = None) -> str:
    """config.pbtxt of one Python-backend model; ``parameters`` tell the generic model.py what
    to run, so one adapter file serves every stage and pipeline."""
    if kind not in INSTANCE_KINDS:
        raise TaasError(f"unknown instance kind {kind!r}; choose from {INSTANCE_KINDS}")
    if instances < 1:
        raise TaasError(f"instances must be >= 1, got {instances}")
    body = _PYTHON_BODY.substitute(count=instances, kind=kind,
                                   policy=version_policy(policy or VersionPolicy()),
                                   parameters=_parameters(parameters))
    return _render(name, inputs, outputs, body)


@dataclass(frozen=True)
class EnsembleStep:
    """One model call of an ensemble: model tensor name -> ensemble tensor name, both ways."""

    model: str
    input_map: Mapping[str, str]
    output_map: Mapping[str, str]


def ensemble_config(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                    steps: Sequence[EnsembleStep], *, parameters: Mapping[str, str],
                    policy: VersionPolicy | None = None) -> str:
    """config.pbtxt of an ensemble chaining the latest versions of other models of the same
    repository; ``parameters`` only describe it (Triton passes them to no code)."""
    rendered = ",\n".join(
        _STEP.substitute(
            model=_quote(step.model),
            inputs=",\n".join(_MAP_ENTRY.substitute(key=_quote(k), value=_quote(v))
                              for k, v in step.input_map.items()),
            outputs=",\n".join(_MAP_ENTRY.substitute(key=_quote(k), value=_quote(v))
                               for k, v in step.output_map.items()))
        for step in steps)
    body = _ENSEMBLE_BODY.substitute(policy=version_policy(policy or VersionPolicy()),
                                     parameters=_parameters(parameters), steps=rendered)
    return _render(name, inputs, outputs, body)
