"""The logic behind every generated ``model.py``: load a stage or pipeline once, serve events.

Triton's Python backend runs ``model.py`` in a stub process; the generated file only subclasses
``TritonAdapter`` and sets ``pb`` to the stub's ``triton_python_backend_utils``. Keeping the logic
here means it is importable, readable and testable like the rest of taas.

Tensors cross the boundary with DLPack (zero-copy, and the only path that works with numpy 2 in
the 2.51 stub; see ``docs/triton.md``, "Known behaviour of the 2.51 Python backend"). Each
request gets exactly one response; a bad event gets a response carrying a ``TritonError`` with
the reason, and the instance serves on.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from taas.edm.table import TensorSpec
from taas.errors import InputError, TaasError
from taas.service.versions import CONFIGS_KEY, version_key
from taas.stages.configs import resolve_paths

log = logging.getLogger(__name__)

#: Keys of config.pbtxt ``parameters`` that the generator writes and the adapter reads.
PARAM_KIND = "taas.kind"          # "stage" or "pipeline"
PARAM_STEPS = "taas.steps"        # "clustering/cpu,spacepoints/cpu"
PARAM_DETECTOR = "taas.detector"  # path relative to the repository root
PARAM_MAX_ROWS = "taas.max_rows"  # reject events whose tensors have more rows than this
PARAM_PIPELINE = "taas.pipeline"  # pipeline name (pipeline models only)
# Per version (``taas.versions.version_key``): ``taas.v<N>.stage_configs``, JSON
# {stage: {field: value}} with paths relative to the root, and ``taas.v<N>.identity``.

#: Extra output of every generated Python model: the device its stages actually ran on, as
#: UTF-8 bytes. Triton's instance kind says where the server placed the model, not where the
#: stage's code ended up (a gpu stage on a machine without CUDA runs on the CPU device), and the
#: 2.51 Python stub has no response parameters, so the model says it in its response. UINT8
#: rather than BYTES: the stub returns BYTES tensors built from numpy 2 arrays empty.
DEVICE_OUTPUT = "taas.device"
DEVICE_SPEC = TensorSpec(DEVICE_OUTPUT, np.dtype(np.uint8), (-1,),
                         "device the model's stages ran on, UTF-8 (not part of any stage "
                         "contract)")


def format_steps(steps: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    return ",".join(f"{stage}/{backend}" for stage, backend in steps)


def parse_steps(text: str) -> tuple[tuple[str, str], ...]:
    steps = []
    for item in text.split(","):
        stage, sep, backend = item.strip().partition("/")
        if not sep or not stage or not backend:
            raise TaasError(f"malformed {PARAM_STEPS} entry {item!r}; want stage/backend")
        steps.append((stage, backend))
    return tuple(steps)


@dataclass(frozen=True)
class ModelSettings:
    """What one version of a generated model runs, read from its config.pbtxt parameters."""

    kind: str
    steps: tuple[tuple[str, str], ...]
    detector: Path
    max_rows: int
    pipeline: str = ""
    stage_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], model_dir: Path,
                    version: int = 1) -> ModelSettings:
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        missing = [k for k in (PARAM_KIND, PARAM_STEPS, PARAM_DETECTOR) if k not in params]
        if missing:
            raise TaasError(f"model {config.get('name')!r}: config.pbtxt lacks parameters "
                            f"{missing}; regenerate it with `taas model-repo build`")
        kind = params[PARAM_KIND]
        if kind not in ("stage", "pipeline"):
            raise TaasError(f"{PARAM_KIND} must be 'stage' or 'pipeline', got {kind!r}")
        root = model_dir.parent
        detector = Path(params[PARAM_DETECTOR])
        if not detector.is_absolute():  # relocatable: relative to the repository root
            detector = root / detector
        configs_key = version_key(version, CONFIGS_KEY)
        if configs_key not in params and "taas.stage_configs" in params:
            raise TaasError(f"model {config.get('name')!r}: config.pbtxt is from before model "
                            f"versions (taas.stage_configs, no {configs_key}); regenerate it "
                            f"with `taas model-repo build`")
        try:
            configs = json.loads(params.get(configs_key) or "{}")
        except json.JSONDecodeError as exc:
            raise TaasError(f"model {config.get('name')!r}: {configs_key} is not JSON: "
                            f"{exc}") from None
        return cls(kind, parse_steps(params[PARAM_STEPS]), detector,
                   int(params.get(PARAM_MAX_ROWS, "0") or 0), params.get(PARAM_PIPELINE, ""),
                   resolve_paths(configs, root))


def build_runner(settings: ModelSettings) -> tuple[Callable[[dict[str, np.ndarray]],
                                                            dict[str, np.ndarray]], str]:
    """A function event tensors -> output tensors, and the device it runs on."""
    from taas.events.dataset import load_detector
    from taas.pipeline.runner import Pipeline
    from taas.pipeline.spec import PipelineSpec
    from taas.service.graph import PipelineGraph

    detector = load_detector(settings.detector)
    spec = PipelineSpec(settings.pipeline or "served", settings.steps,
                        stage_configs=settings.stage_configs)
    if settings.kind == "stage":
        stage, = Pipeline(spec, detector).stages
        return stage.run, stage.device
    pipeline = Pipeline(spec, detector)
    wanted = [s.name for s in PipelineGraph.from_steps(settings.steps).outputs]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = pipeline.run(inputs, outputs=wanted).tensors  # the rest may stay on a GPU
        return {name: tensors[name] for name in wanted}

    devices = sorted({s.device for s in pipeline.stages})
    return run, ",".join(devices)


def check_limits(inputs: Mapping[str, np.ndarray], max_rows: int) -> None:
    """Refuse events beyond the configured size before any work is spent on them."""
    if max_rows <= 0:
        return
    for name, array in inputs.items():
        if array.ndim and array.shape[0] > max_rows:
            raise InputError(f"event too large: tensor {name!r} has {array.shape[0]} rows, "
                             f"more than this model's limit of {max_rows} "
                             f"(parameter {PARAM_MAX_ROWS} in config.pbtxt)")


_pycapsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_pycapsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_pycapsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_pycapsule_set_name.argtypes = [ctypes.py_object, ctypes.c_void_p]
#: The name numpy's capsule destructor expects once a consumer owns the tensor. Kept alive here:
#: a capsule stores the pointer, not a copy.
_NUMPY_USED_NAME = ctypes.create_string_buffer(b"used_dltensor")


def _mark_consumed(capsule: object) -> None:
    """Rename a capsule the stub consumed so numpy's destructor stays silent.

    The 2.51 stub renames consumed capsules ``used_dlpack``; numpy only recognises
    ``used_dltensor`` and otherwise prints an "unraisable" traceback per tensor into the server
    log (harmless: the stub frees the tensor either way, but it buries real errors).
    """
    if _pycapsule_is_valid(capsule, b"used_dlpack"):
        _pycapsule_set_name(capsule, ctypes.addressof(_NUMPY_USED_NAME))


def instance_count(config: Mapping[str, Any]) -> int:
    """Instances of a model across its instance groups (at least 1), from its config JSON."""
    return sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1


def threads_per_instance(config: Mapping[str, Any], cores: int | None = None) -> int:
    """CPU threads one instance of a model may use: the machine's cores shared out among the
    model's instances. Each Python-backend instance is a process of its own; left alone, torch
    gives every one of them all cores, and N instances then oversubscribe the machine N times
    (measured: 2 acorn instances at concurrency 2 ran at half the events/s of one instance)."""
    return max(1, (cores or os.cpu_count() or 1) // instance_count(config))


def limit_threads(threads: int) -> None:
    """Cap torch's intra-op threads, if the model's stages use torch (the CPU stages are
    single-threaded numba/numpy and need no cap)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


class TritonAdapter:
    """Base of the generated ``TritonPythonModel``; ``pb`` is the stub's utils module."""

    pb: ClassVar[Any] = None

    def initialize(self, args: dict[str, str]) -> None:
        """Load the detector and build the stage or pipeline once per model instance."""
        config = json.loads(args["model_config"])
        self.name = args["model_name"]
        self.version = int(args.get("model_version") or 1)
        self.settings = ModelSettings.from_config(config, Path(args["model_repository"]),
                                                  self.version)
        self.input_names = [t["name"] for t in config.get("input", [])]
        self.output_names = [t["name"] for t in config.get("output", [])]
        t0 = time.perf_counter()
        self.runner, self.device = build_runner(self.settings)
        threads = threads_per_instance(config)
        limit_threads(threads)
        self._log("info", f"{self.name} v{self.version}: {self.settings.kind} "
                          f"{format_steps(self.settings.steps)} on {self.device}, "
                          f"{threads} thread(s) "
                          f"(instance {args.get('model_instance_name')}, "
                          f"{args.get('model_instance_kind')}) ready in "
                          f"{time.perf_counter() - t0:.1f} s")

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; a failure is that request's error response only."""
        return [self._respond(request) for request in requests]

    def finalize(self) -> None:
        self._log("info", f"{self.name}: unloaded")

    # --- internals --------------------------------------------------------------------------
    def _respond(self, request: Any) -> Any:
        pb = self.pb
        try:
            inputs = {}
            for name in self.input_names:
                tensor = pb.get_input_tensor_by_name(request, name)
                if tensor is None:
                    raise InputError(f"{self.name}: missing input tensor {name!r}")
                inputs[name] = np.from_dlpack(tensor)
            check_limits(inputs, self.settings.max_rows)
            outputs = self.runner(inputs)
            outputs[DEVICE_OUTPUT] = np.frombuffer(self.device.encode(), np.uint8)
            return pb.InferenceResponse([self._to_triton(n, outputs[n])
                                         for n in self.output_names])
        except InputError as exc:
            return pb.InferenceResponse(error=self._error(f"{self.name}: bad event: {exc}",
                                                          "INVALID_ARG"))
        except Exception as exc:  # a bug must not take the instance down: report, keep serving
            log.exception("%s failed", self.name)
            return pb.InferenceResponse(error=self._error(
                f"{self.name}: {type(exc).__name__}: {exc}", "INTERNAL"))

    def _to_triton(self, name: str, array: np.ndarray) -> Any:
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # e.g. a view of an input: legacy DLPack cannot say so
            array = array.copy()
        if array.size == 0:  # the stub rejects zero-size DLPack; an empty copy carries no data
            return self.pb.Tensor(name, array)
        capsule = array.__dlpack__()
        tensor = self.pb.Tensor.from_dlpack(name, capsule)
        _mark_consumed(capsule)
        return tensor

    def _error(self, message: str, code: str) -> Any:
        error_cls = self.pb.TritonError
        code_value = getattr(error_cls, code, None)
        return error_cls(message) if code_value is None else error_cls(message, code_value)

    def _log(self, level: str, message: str) -> None:
        logger = getattr(self.pb, "Logger", None)
        if logger is None:
            getattr(log, level)(message)
        else:
            getattr(logger, f"log_{level}")(message)
