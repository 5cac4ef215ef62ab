"""Call served stages and pipelines with the same contract as local ones.

``RemoteStage`` is a ``Stage`` whose ``compute`` is a Triton call, so anything that drives stages
(``Pipeline``, benchmarks, Snakemake rules) runs them served without knowing. Its INPUTS and
OUTPUTS come from the server's model metadata: the client imports no backend code.

When the server is on this host, tensors travel through POSIX shared memory (registered once,
reused, grown on demand): the request carries only region names, which is what makes large events
cheap. Output sizes are not known in advance, so output regions are sized from earlier events and
a call whose outputs do not fit is repeated with the outputs over plain gRPC. Remote servers get
plain gRPC.

``security`` (``taas.service.security.ClientSecurity``) adds TLS and the token header to every
call, including the shared-memory registrations (a restricted group). Refusals are turned into
errors that say what to fix: ``TokenRejectedError`` for a missing or wrong token, and a hint
about TLS when a handshake fails, instead of gRPC's "failed to connect to all addresses".
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from itertools import count
from typing import Any

import numpy as np

from taas.detector.detector import Detector
from taas.edm.table import TensorSpec
from taas.errors import InputError, TaasError
from taas.pipeline.reconstruct import GNN_STAGES, SPACEPOINT_SUFFIX
from taas.pipeline.runner import Pipeline, PipelineResult, StageTiming
from taas.pipeline.spec import PipelineSpec
from taas.service.graph import model_name
from taas.service.model_repo import ensemble_model_name, pipeline_model_name
from taas.service.pbtxt import NUMPY_DTYPES, triton_dtype
from taas.service.python_model import DEVICE_OUTPUT
from taas.service.security import TOKEN_ENV, ClientSecurity, resolve
from taas.service.versions import (
    ModelIdentity,
    ModelMismatchError,
    VersionCheck,
    pipeline_identity,
)
from taas.stages.base import Stage

log = logging.getLogger(__name__)

DEFAULT_URL = "127.0.0.1:8001"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
_region_ids = count()


class ServiceError(TaasError, RuntimeError):
    """A served call failed; the message names the server URL and the model."""


class ServiceUnavailableError(ServiceError, ConnectionError):
    """The server cannot be reached."""


class ModelNotServedError(ServiceError, LookupError):
    """The server is up but has no model of that name: not a connection problem (another
    server may have it, so failover tries the next), and the message says how to build it."""


class TokenRejectedError(ServiceError, PermissionError):
    """The server requires a token (Triton's restricted protocol) and ours is missing or wrong.

    Not a connection problem: retrying, or failing over to a server with the same policy, cannot
    help, so nothing retries it.
    """


def token_rejected(url: str, security: ClientSecurity, what: str) -> TokenRejectedError:
    """The error for a refused token; Triton answers both cases alike, we know which it was."""
    if security.token is None:
        reason = (f"no token was sent and the server requires one (set ${TOKEN_ENV} or give a "
                  "token file)")
    else:
        reason = "the token was rejected (it does not match the server's)"
    return TokenRejectedError(f"Triton server at {url} refused {what}: {reason}")


def unreachable(url: str, security: ClientSecurity, detail: str) -> ServiceUnavailableError:
    """The error for a server we cannot talk to, with a TLS hint where the failure looks like a
    handshake (plain client on a TLS server: the server closes the socket; TLS client with the
    wrong CA or on a plain server: the handshake fails)."""
    low = detail.lower()
    hint = ""
    if not security.tls and "socket closed" in low:
        hint = (" The server closed the connection at once: it may require TLS (give its CA "
                "certificate, e.g. --server-ca).")
    elif security.tls and any(w in low for w in ("ssl", "handshake", "certificate", "tls",
                                                 "socket closed")):
        hint = (" The TLS handshake failed: check that the CA certificate signed the server's "
                "certificate, that the certificate names this host, that the server uses TLS "
                "at all, and whether it wants a client certificate (mutual TLS).")
    return ServiceUnavailableError(f"Triton server at {url} is not reachable (is it running? "
                                   f"`taas serve` starts one): {detail}.{hint}")


def is_local(url: str) -> bool:
    """True when ``url`` points at this host, so shared memory can replace the network."""
    host = url.rsplit(":", 1)[0] if url.count(":") == 1 or url.startswith("[") else url
    return host in _LOCAL_HOSTS


def _status(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return str(status()) if callable(status) else ""


class _ShmRegion:
    """One registered system shared-memory region, recreated larger when too small."""

    def __init__(self, owner: ModelClient, role: str) -> None:
        self.owner = owner
        self.client = owner._client
        self.name = f"taas_{os.getpid()}_{next(_region_ids)}_{role}"
        self.size = 0
        self.handle: Any = None

    def ensure(self, size: int) -> None:
        import tritonclient.utils.shared_memory as shm

        if self.handle is not None and size <= self.size:
            return
        self.close()
        self.size = max(size, 1 << 16)
        self.handle = shm.create_shared_memory_region(self.name, f"/{self.name}", self.size)
        self._finalizer = weakref.finalize(self, shm.destroy_shared_memory_region, self.handle)
        self.owner._call(self.client.register_system_shared_memory, self.name, f"/{self.name}",
                         self.size)

    def close(self) -> None:
        if self.handle is None:
            return
        try:
            self.client.unregister_system_shared_memory(
                self.name, headers=self.owner.security.headers())
        except Exception as exc:  # server gone: the region is ours to free regardless
            log.debug("unregistering %s: %s", self.name, exc)
        self._finalizer()  # destroys the region once, also when close() is never called
        self.handle, self.size = None, 0


def _aligned(n: int) -> int:
    return (n + 63) // 64 * 64


class ModelClient:
    """One served model: metadata, calls with retries and timeouts, optional shared memory.

    ``device``: where the model runs; from the instance groups until the first response, then
    what the model itself reports (``taas.device``, taas' Python models only; an ensemble
    keeps the instance-group answer). ``security``: TLS and token (default: what the
    environment says, see ``ClientSecurity.from_sources``; plain when it says nothing).
    ``version``: the model version to call ("": the latest ready one); ``expect``: the
    identity the served version must record (``taas.service.versions``), checked before the
    first event and whenever a rollout moves the client to another version.
    ``missing_hint``: what follows "has no model X" when the server lacks the model (how to
    build it), in the ``ModelNotServedError``.
    """

    #: Output shared memory per output: this many rows per row of the largest input (clusters
    #: never outnumber cells; seeds rarely exceed 8 per space point), plus slack, or twice the
    #: largest size seen so far. Too small only costs a gRPC round for that event.
    output_rows_factor: int = 8
    output_slack_bytes: int = 4096

    def __init__(self, model: str, url: str = DEFAULT_URL, *, shared_memory: bool | None = None,
                 timeout_s: float = 120.0, retries: int = 3,
                 security: ClientSecurity | None = None, version: str = "",
                 expect: Sequence[ModelIdentity] | None = None, missing_hint: str = "") -> None:
        import tritonclient.grpc as grpcclient

        self.model, self.url, self.version = model, url, version
        self.versions = VersionCheck(model, url, version, expect)
        self.timeout_s, self.retries = timeout_s, retries
        self.security = resolve(security)
        self._client = grpcclient.InferenceServerClient(url, **self.security.grpc_options())
        metadata = self._metadata(missing_hint)
        config = self._config(self.versions.check(metadata.get("versions", []), self._config))
        self.inputs = tuple(_spec(t) for t in metadata["inputs"])
        self.outputs = tuple(_spec(t) for t in metadata["outputs"]
                             if t["name"] != DEVICE_OUTPUT)
        self.reports_device = any(t["name"] == DEVICE_OUTPUT for t in metadata["outputs"])
        self.device = _device(config)
        self.shared_memory = is_local(url) if shared_memory is None else shared_memory
        self._in: _ShmRegion | None = None
        self._out: _ShmRegion | None = None
        self._seen_bytes: dict[str, int] = {}

    # --- public -----------------------------------------------------------------------------
    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send one event, return every declared output (copies, safe to keep)."""
        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise InputError(missing_inputs_message(self.model, self.url, missing))
        arrays = {s.name: np.ascontiguousarray(inputs[s.name], dtype=s.dtype)
                  for s in self.inputs}
        if not self.shared_memory:
            return self._infer(arrays, use_shm=False)
        try:
            return self._infer(arrays, use_shm=True)
        except ServiceError as exc:
            if "unable to find shared memory region" in str(exc).lower():
                # several servers behind one address (taas.service.cluster): the one answering
                # never saw our registration, so shared memory cannot work through it
                log.warning("%s at %s does not know this client's shared memory (a load "
                            "balancer?): gRPC from now on", self.model, self.url)
                self.shared_memory = False
                return self._infer(arrays, use_shm=False)
            if "shared memory" not in str(exc).lower() or "output" not in str(exc).lower():
                raise
            log.info("%s: outputs outgrew their shared memory; this event over gRPC", self.model)
            return self._infer(arrays, use_shm=True, outputs_over_grpc=True)

    def statistics(self) -> dict[str, Any]:
        """The server's cumulative inference statistics of this model (raw JSON)."""
        return self._call(self._client.get_inference_statistics, self.model, as_json=True)

    def close(self) -> None:
        for region in (self._in, self._out):
            if region is not None:
                region.close()
        self._in = self._out = None
        self._client.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------
    def _metadata(self, missing_hint: str) -> dict[str, Any]:
        """The model's metadata; ``ModelNotServedError`` (with ``missing_hint``) when the server
        answers but has no such model."""
        try:
            metadata: dict[str, Any] = self._call(self._client.get_model_metadata, self.model,
                                                  as_json=True)
        except ServiceError as exc:
            if type(exc) is not ServiceError or not _is_unknown_model(str(exc)):
                raise
            raise ModelNotServedError(
                f"Triton server at {self.url} has no model {self.model}{missing_hint}") from None
        return metadata

    def _config(self, version: str) -> dict[str, Any]:
        """The served model config of ``version`` ("" for the latest), as JSON."""
        config: dict[str, Any] = self._call(self._client.get_model_config, self.model,
                                            model_version=version, as_json=True)["config"]
        return config

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` with the token header and retries on UNAVAILABLE, and on a model with no
        ready version (what a replica that is shutting down answers while it unloads its
        models: behind a balancer the next try reaches another one; a model the server does
        not have at all, "is not found", is not retried); errors become ``ServiceError``s
        naming the URL (``TokenRejectedError`` for a refused token, which Triton also answers
        with UNAVAILABLE but which no retry can fix)."""
        from tritonclient.utils import InferenceServerException

        kwargs.setdefault("client_timeout", self.timeout_s)  # no call may wait for ever
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, headers=self.security.headers(), **kwargs)
            except InferenceServerException as exc:
                detail = exc.message() or str(exc)
                if "protocol is restricted" in detail:
                    raise token_rejected(self.url, self.security,
                                         f"a request to {self.model}") from None
                unavailable = "UNAVAILABLE" in _status(exc) or "failed to connect" in detail
                unloading = "has no available versions" in detail
                if (unavailable or unloading) and attempt < self.retries:
                    time.sleep(0.2 * 2**attempt)
                    continue
                if unavailable:
                    raise unreachable(self.url, self.security, detail) from None
                if "DEADLINE_EXCEEDED" in _status(exc) or "Deadline Exceeded" in detail:
                    raise ServiceError(
                        f"{self.model} at {self.url}: no answer within "
                        f"{kwargs['client_timeout']:g} s (server hung or overloaded; the "
                        "client's timeout_s sets this limit)") from None
                raise ServiceError(f"{self.model} at {self.url}: {detail}") from None
        raise AssertionError("unreachable")

    def _infer(self, arrays: dict[str, np.ndarray], *, use_shm: bool,
               outputs_over_grpc: bool = False) -> dict[str, np.ndarray]:
        import tritonclient.grpc as grpcclient

        request = []
        for spec in self.inputs:
            a = arrays[spec.name]
            request.append(grpcclient.InferInput(spec.name, list(a.shape), triton_dtype(a.dtype)))
        outputs = [grpcclient.InferRequestedOutput(s.name) for s in self.outputs]
        if use_shm:
            self._place_inputs(request, arrays)
        else:
            for item, spec in zip(request, self.inputs, strict=True):
                item.set_data_from_numpy(arrays[spec.name])
        out_offsets = {} if not use_shm or outputs_over_grpc else self._place_outputs(
            outputs, arrays)
        if self.reports_device:  # a few bytes: always over gRPC, never in shared memory
            outputs.append(grpcclient.InferRequestedOutput(DEVICE_OUTPUT))
        result = self._call(self._client.infer, self.model, request,
                            model_version=self.version, outputs=outputs,
                            client_timeout=self.timeout_s)
        self.versions.check_response(result.get_response().model_version, self._config)
        if self.reports_device:
            self.device = result.as_numpy(DEVICE_OUTPUT).tobytes().decode()
        return self._read(result, out_offsets)

    def _place_inputs(self, request: list[Any], arrays: dict[str, np.ndarray]) -> None:
        import tritonclient.utils.shared_memory as shm

        offsets, total = [], 0
        for spec in self.inputs:
            offsets.append(total)
            total += _aligned(arrays[spec.name].nbytes)
        if self._in is None:
            self._in = _ShmRegion(self, "in")
        self._in.ensure(total)
        for item, spec, offset in zip(request, self.inputs, offsets, strict=True):
            a = arrays[spec.name]
            if a.nbytes == 0:  # Triton refuses zero-byte regions; nothing to copy anyway
                item.set_data_from_numpy(a)
                continue
            shm.set_shared_memory_region(self._in.handle, [a], offset=offset)
            item.set_shared_memory(self._in.name, a.nbytes, offset=offset)

    def _place_outputs(self, outputs: list[Any],
                       arrays: dict[str, np.ndarray]) -> dict[str, int]:
        """Give each output its own slice of one region (see ``output_rows_factor``)."""
        rows = max((a.shape[0] for a in arrays.values() if a.ndim), default=0)
        capacity = {}
        for spec in self.outputs:
            row_bytes = spec.dtype.itemsize * int(np.prod(spec.shape[1:], dtype=np.int64))
            guess = self.output_rows_factor * rows * row_bytes + self.output_slack_bytes
            capacity[spec.name] = _aligned(max(guess, 2 * self._seen_bytes.get(spec.name, 0)))
        if self._out is None:
            self._out = _ShmRegion(self, "out")
        self._out.ensure(sum(capacity.values()))
        offsets, offset = {}, 0
        for item, spec in zip(outputs, self.outputs, strict=True):
            item.set_shared_memory(self._out.name, capacity[spec.name], offset=offset)
            offsets[spec.name] = offset
            offset += capacity[spec.name]
        return offsets

    def _read(self, result: Any, offsets: dict[str, int]) -> dict[str, np.ndarray]:
        import tritonclient.utils.shared_memory as shm

        out = {}
        for spec in self.outputs:
            if spec.name in offsets:
                meta = result.get_output(spec.name)
                shape = [int(d) for d in meta.shape]
                if self._out is None:
                    raise TaasError(f"{self.model}: output {spec.name!r} was placed in shared "
                                    "memory that is gone (client closed during the request?)")
                array = shm.get_contents_as_numpy(self._out.handle, NUMPY_DTYPES[meta.datatype],
                                                  shape, offset=offsets[spec.name]).copy()
            else:
                array = result.as_numpy(spec.name)
            self._seen_bytes[spec.name] = max(self._seen_bytes.get(spec.name, 0), array.nbytes)
            out[spec.name] = array
        return out


def _is_unknown_model(detail: str) -> bool:
    """Triton's answer for a model it does not have (2.51: "Request for unknown model: 'x' is
    not found")."""
    low = detail.lower()
    return "unknown model" in low or ("model" in low and "is not found" in low)


def build_hint(pipelines: str = "", stage: str = "", spacepoints: bool = False) -> str:
    """How to put a missing model into a repository (``taas model-repo build``), to follow
    the sentence that says it is missing."""
    what = (f"--pipelines {pipelines}" + (" --spacepoints" if spacepoints else "")
            if pipelines else f"--stages {stage}")
    return (f"; build it into the server's model repository with `taas model-repo build REPO "
            f"--detector DETECTOR {what}` and restart (or reload) the server")


def pipeline_hint(name: str, ensemble: bool = False) -> str:
    """``build_hint`` for the whole-pipeline model (or ensemble) of ``name``; a space-point
    pipeline (``spacepoint_pipeline``) is built from its cell-input original with
    ``--spacepoints``, as a whole-pipeline model only."""
    if name.endswith(SPACEPOINT_SUFFIX) and ensemble:
        return ("; space-point pipelines are served as whole-pipeline models only, without "
                f"an ensemble: call {pipeline_model_name(name)}")
    if name.endswith(SPACEPOINT_SUFFIX):
        base = name.removesuffix(SPACEPOINT_SUFFIX)
        return (f" (the {base} pipeline for events given as space points, without cells)"
                + build_hint(base, spacepoints=True))
    return build_hint(name)


def missing_inputs_message(model: str, url: str, missing: Sequence[str]) -> str:
    """Why an event cannot go to ``model``; for an event without cells, which model it wants."""
    message = (f"{model} at {url} takes tensor(s) {', '.join(missing)} that the event does not "
               "have")
    if any(name.startswith("cells.") for name in missing):
        message += (f" (an event given as space points, without cells, goes to a pipeline's "
                    f"space-point model, pipeline_<name>{SPACEPOINT_SUFFIX}, which `taas "
                    f"reconstruct` picks for such events)")
    return message


def _spec(meta: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(meta["name"], NUMPY_DTYPES[meta["datatype"]],
                      tuple(int(d) for d in meta["shape"]))


def _device(config: Mapping[str, Any]) -> str:
    """Where the server runs the model, from its instance groups (``cpu``, ``cuda:0``...)."""
    devices = []
    for group in config.get("instance_group", [{"kind": "KIND_CPU"}]):
        kind = group.get("kind", "KIND_CPU")
        if kind == "KIND_GPU":
            devices += [f"cuda:{g}" for g in group.get("gpus", [])] or ["cuda"]
        elif kind == "KIND_MODEL":
            devices.append("model")
        else:
            devices.append("cpu")
    return ",".join(dict.fromkeys(devices)) or "cpu"


class RemoteStage(Stage):
    """A (stage, backend) served by Triton, with the local stage contract.

    ``device`` is what the server's instance groups say the model runs on; ``url`` says where.
    """

    def __init__(self, stage: str, backend: str, url: str = DEFAULT_URL, *,
                 shared_memory: bool | None = None, timeout_s: float = 120.0,
                 retries: int = 3, security: ClientSecurity | None = None, version: str = "",
                 expect: Sequence[ModelIdentity] | None = None) -> None:
        super().__init__(detector=None)  # type: ignore[arg-type]  # the server holds it
        # a proxy takes its stage's identity and specs from the server, per instance
        self.NAME, self.BACKEND, self.url = stage, backend, url  # type: ignore[misc]
        self.client = ModelClient(model_name(stage, backend), url, shared_memory=shared_memory,
                                  timeout_s=timeout_s, retries=retries, security=security,
                                  version=version, expect=expect,
                                  missing_hint=build_hint(stage=f"{stage}/{backend}"))
        self.INPUTS, self.OUTPUTS = self.client.inputs, self.client.outputs  # type: ignore[misc]

    @property
    def device(self) -> str:
        return self.client.device

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.client.infer(inputs)

    def close(self) -> None:
        self.client.close()


class RemotePipeline:
    """A whole pipeline served as one model (``pipeline_<name>``, or ``ensemble_<name>``).

    ``name`` may be a space-point pipeline (``<name>_spacepoints``,
    ``taas.pipeline.reconstruct.spacepoint_pipeline``): its model takes space-point tensors.
    A server without the model refuses with ``ModelNotServedError``, saying how to build it.
    """

    def __init__(self, name: str, url: str = DEFAULT_URL, *, ensemble: bool = False,
                 shared_memory: bool | None = None, timeout_s: float = 300.0,
                 retries: int = 3, security: ClientSecurity | None = None, version: str = "",
                 expect: Sequence[ModelIdentity] | None = None) -> None:
        self.name = name
        self.model = ensemble_model_name(name) if ensemble else pipeline_model_name(name)
        self.client = ModelClient(self.model, url, shared_memory=shared_memory,
                                  timeout_s=timeout_s, retries=retries, security=security,
                                  version=version, expect=expect,
                                  missing_hint=pipeline_hint(name, ensemble=ensemble))

    @property
    def models(self) -> tuple[str, ...]:
        """The served model this runner calls (run.json's ``served_models``)."""
        return (self.model,)

    def run(self, inputs: Mapping[str, np.ndarray]) -> PipelineResult:
        """Like ``Pipeline.run``: the pool of inputs and outputs, one timing for the call."""
        t0 = time.perf_counter()
        outputs = self.client.infer(inputs)
        seconds = time.perf_counter() - t0
        return PipelineResult({**inputs, **outputs},
                              [StageTiming(self.model, "triton", self.client.device, seconds)])

    def close(self) -> None:
        self.client.close()


class ServedStagesPipeline(Pipeline):
    """``Pipeline`` whose stages are ``RemoteStage``s: same pool and timings, served stages.
    Each served stage must be what ``spec`` computes (its stage configs): checked up front."""

    def __init__(self, spec: PipelineSpec, url: str, **options: Any) -> None:
        self.spec = spec
        self.remote_stages: list[RemoteStage] = []
        try:
            for stage, backend in spec.steps:
                self.remote_stages.append(RemoteStage(
                    stage, backend, url, **options,
                    expect=pipeline_identity([(stage, backend)], spec.stage_configs)))
        except (ModelMismatchError, ModelNotServedError) as exc:
            self.close()
            hint = stages_for_spacepoints_hint(spec) if spec.name.endswith(
                SPACEPOINT_SUFFIX) else ""
            if not hint:
                raise
            raise type(exc)(f"{exc}\n{hint}") from None
        except BaseException:
            self.close()
            raise
        self.stages = list(self.remote_stages)

    @property
    def models(self) -> tuple[str, ...]:
        """The served stage models this runner calls (run.json's ``served_models``)."""
        return tuple(stage.client.model for stage in self.remote_stages)

    def close(self) -> None:
        for stage in self.remote_stages:
            stage.close()


def stages_for_spacepoints_hint(spec: PipelineSpec) -> str:
    """What serves a space-point pipeline's stages when the server's stage models do not:
    its GNN stage models must load the positions-only models, under the names that a
    repository for cell events gives its cell-feature models ("" for a pipeline without GNN
    stages, whose stage models are the same for both inputs)."""
    if not any(stage in GNN_STAGES for stage, _ in spec.steps):
        return ""
    base = spec.name.removesuffix(SPACEPOINT_SUFFIX)
    return (f"Events given as space points run {base}'s GNN stages on the positions-only "
            f"models (model_set \"positions\"). Serve them with the whole-pipeline model "
            f"(--served-as pipeline: {pipeline_model_name(spec.name)}, from `taas model-repo "
            f"build ... --pipelines {base} --spacepoints`), or from a repository whose stage "
            f"models were built for space points (--stage-configs setting model_set "
            f"\"positions\" on the GNN stages; the workflow builds those for event sets "
            f"without cells).")


def make_stage(stage: str, backend: str, detector: Detector | None, mode: str = "direct",
               url: str | None = None, **options: Any) -> Stage:
    """The same stage in-process (``direct``) or from a Triton server (``served``)."""
    if mode == "direct":
        from taas.stages import registry

        if detector is None:
            raise TaasError("a direct stage needs the detector")
        return registry.resolve(stage, backend)(detector)
    if mode == "served":
        return RemoteStage(stage, backend, url or DEFAULT_URL, **options)
    raise TaasError(f"unknown mode {mode!r}; choose 'direct' or 'served'")


def make_pipeline(spec: PipelineSpec, detector: Detector | None, mode: str = "direct",
                  url: str | None = None, **options: Any) -> Pipeline | RemotePipeline:
    """A pipeline run ``direct`` (in-process), ``served`` (each stage a served model) or
    ``served-pipeline`` (the whole chain in one served model); all have ``run(inputs)``."""
    if mode == "direct":
        if detector is None:
            raise TaasError("a direct pipeline needs the detector")
        return Pipeline(spec, detector)
    if mode == "served":
        return ServedStagesPipeline(spec, url or DEFAULT_URL, **options)
    if mode == "served-pipeline":
        return RemotePipeline(spec.name, url or DEFAULT_URL, **options,
                              expect=pipeline_identity(spec.steps, spec.stage_configs))
    raise TaasError(f"unknown mode {mode!r}; choose 'direct', 'served' or 'served-pipeline'")
