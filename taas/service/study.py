"""The service-option study: one pipeline run six ways, from in-process to fully served.

The ExaTrkX-as-a-service overhead study (and the SONIC/SuperSONIC talks after it) compared
where the server boundary goes. taas has every piece, so each option is a chain of existing
stages and models:

* ``S0`` direct: the whole pipeline in-process, no server (the yardstick);
* ``S1`` the neural networks served: the stages holding networks (``graph_construction``:
  embedding and filter, ``edge_classification``: the GNN) as served stage models, the rest
  in-process. taas' graph construction also holds the FRNN between embedding and filter
  (``taas.gnn.stages`` says why: the unfiltered graph is several times the filtered one), so the
  FRNN is served with the networks here;
* ``S2`` the graph building served: ``graph_construction`` alone served;
* ``S3`` every stage served as its own model, the client chaining them (``ServedStagesPipeline``);
* ``S4`` the ensemble: the server chains the stage models (``ensemble_<pipeline>``);
* ``custom``: the whole pipeline in one served model (``pipeline_<pipeline>``, the "custom
  backend" of the talks).

A pipeline without networks (the classical ``cpu`` chain) has no S1/S2; the result lists every
option left out with the reason. All options run on the same events, alternating option by
option within each event and reversing the order on every other pass, so drifting machine load
hits every option alike. Every option's outputs are compared with direct's on every timed event.

Bytes moved are the tensor bytes of every served call (request plus response): what would cross
a network. On loopback the client places them in POSIX shared memory and the gRPC messages
carry region names only; the result says which transport was used.

Throughput: ``c`` client threads in this process, each with its own chain (own gRPC clients,
own shared-memory regions, own in-process stages), pull events from one counter; events/s over
the wall time. The server's Prometheus counters (queue and compute time per model) are scraped
before and after that sweep.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from taas.detector.detector import Detector
from taas.errors import TaasError
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PipelineSpec
from taas.service.client import RemotePipeline, RemoteStage, is_local
from taas.service.model_repo import pipeline_model_name

log = logging.getLogger(__name__)

#: Stages that hold neural networks (embedding + filter; GNN) in every backend of taas.
NN_STAGES = ("graph_construction", "edge_classification")
#: The stage that builds the graph (embedding, FRNN radius search, filter).
GRAPH_STAGES = ("graph_construction",)


@dataclass(frozen=True)
class ServiceOption:
    """One way to place the server boundary; ``served`` names the served stages of a mixed
    chain (None: not a mixed chain)."""

    key: str
    name: str
    description: str
    served: tuple[str, ...] | None = None


OPTIONS: tuple[ServiceOption, ...] = (
    ServiceOption("S0", "direct", "whole pipeline in-process, no server"),
    ServiceOption("S1", "networks served", "stages with neural networks served (embedding, "
                  "FRNN and filter; GNN), the rest in-process", NN_STAGES),
    ServiceOption("S2", "graph building served", "graph construction (embedding, FRNN, filter) "
                  "served, the rest in-process", GRAPH_STAGES),
    ServiceOption("S3", "every stage served", "each stage its own served model, the client "
                  "chains them"),
    ServiceOption("S4", "ensemble", "Triton ensemble of the stage models: the server chains "
                  "them"),
    ServiceOption("custom", "pipeline model", "the whole pipeline in one served model (custom "
                  "backend)"),
)
OPTION_KEYS = tuple(o.key for o in OPTIONS)


def option(key: str) -> ServiceOption:
    for o in OPTIONS:
        if o.key == key:
            return o
    raise TaasError(f"unknown service option {key!r}; choose from {list(OPTION_KEYS)}")


def applicable(spec: PipelineSpec) -> tuple[list[ServiceOption], dict[str, str]]:
    """The options that make sense for ``spec``, and a reason for each one that does not."""
    stages = [stage for stage, _ in spec.steps]
    chosen, skipped = [], {}
    for o in OPTIONS:
        if o.served is not None:
            served = [s for s in stages if s in o.served]
            if not served:
                skipped[o.key] = f"{spec.name} has no {' or '.join(o.served)} stage"
                continue
            if len(served) == len(stages):
                skipped[o.key] = "every stage would be served: the same as S3"
                continue
            if o.key == "S1" and served == [s for s in stages if s in GRAPH_STAGES]:
                skipped[o.key] = "the only network stage is graph construction: the same as S2"
                continue
        chosen.append(o)
    return chosen, skipped


# --- chains -------------------------------------------------------------------------------


class ByteMeter:
    """Tensor bytes of served calls (request and response) and the number of calls."""

    def __init__(self) -> None:
        self.request = self.response = self.calls = 0

    def add(self, sent: Mapping[str, np.ndarray], received: Mapping[str, np.ndarray],
            names: Sequence[Any]) -> None:
        """``names``: the input specs the model declares (only those are sent, in their dtype)."""
        self.request += sum(int(sent[s.name].size) * s.dtype.itemsize for s in names
                            if s.name in sent)
        self.response += sum(int(a.nbytes) for a in received.values())
        self.calls += 1

    def take(self) -> tuple[int, int, int]:
        """(request bytes, response bytes, calls) since the last take."""
        out = (self.request, self.response, self.calls)
        self.request = self.response = self.calls = 0
        return out


class MeteredRemoteStage(RemoteStage):
    """A ``RemoteStage`` that counts the tensor bytes of its calls."""

    def __init__(self, stage: str, backend: str, url: str, meter: ByteMeter,
                 **options: Any) -> None:
        super().__init__(stage, backend, url, **options)
        self.meter = meter

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = super().compute(inputs)
        self.meter.add(inputs, out, self.client.inputs)
        return out


class Chain(Protocol):
    """One option's way to reconstruct an event: the pool of tensors out."""

    meter: ByteMeter

    def run_event(self, event: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def placement(self) -> list[dict[str, str]]: ...

    def close(self) -> None: ...


class StageChain(Pipeline):
    """Stages in order, each in-process or a served stage model (S0 to S3): a ``Pipeline``
    whose stages are made here (like ``ServedStagesPipeline``), not all from the registry."""

    def __init__(self, spec: PipelineSpec, detector: Detector, url: str,
                 served: Sequence[str], **client_options: Any) -> None:
        self.spec = spec
        self.meter = ByteMeter()
        local_steps = tuple(step for step in spec.steps if step[0] not in served)
        local = iter(Pipeline(PipelineSpec(spec.name, local_steps, stage_configs={
            k: v for k, v in spec.stage_configs.items() if k not in served}), detector).stages
            if local_steps else ())
        self.remote: list[RemoteStage] = []
        self.stages = []
        for stage, backend in spec.steps:
            if stage in served:
                self.remote.append(MeteredRemoteStage(stage, backend, url, self.meter,
                                                      **client_options))
                self.stages.append(self.remote[-1])
            else:
                self.stages.append(next(local))

    def run_event(self, event: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(event).tensors

    def placement(self) -> list[dict[str, str]]:
        return [{"stage": s.NAME, "backend": s.BACKEND,
                 "where": "served" if isinstance(s, RemoteStage) else "in-process",
                 "device": s.device} for s in self.stages]

    def close(self) -> None:
        for stage in self.remote:
            stage.close()


class ModelChain:
    """The whole pipeline as one served model: the ensemble (S4) or the pipeline model."""

    def __init__(self, spec: PipelineSpec, url: str, *, ensemble: bool,
                 **client_options: Any) -> None:
        self.meter = ByteMeter()
        self.ensemble = ensemble
        self.remote = RemotePipeline(spec.name, url, ensemble=ensemble, **client_options)

    def run_event(self, event: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.remote.run(event)
        outputs = {name: result.tensors[name] for name in (s.name for s in
                                                          self.remote.client.outputs)}
        self.meter.add(event, outputs, self.remote.client.inputs)
        return result.tensors

    def placement(self) -> list[dict[str, str]]:
        # an ensemble runs nothing itself and reports no device: its stage models do (S3)
        device = "its stage models' (S3 rows)" if self.ensemble else self.remote.client.device
        return [{"stage": self.remote.model, "backend": "triton", "where": "served",
                 "device": device}]

    def close(self) -> None:
        self.remote.close()


def make_chain(o: ServiceOption, spec: PipelineSpec, detector: Detector, url: str,
               **client_options: Any) -> Chain:
    """The chain of option ``o`` (every served part talks to ``url``)."""
    if o.key == "S0":
        return StageChain(spec, detector, url, ())
    if o.key == "S3":
        return StageChain(spec, detector, url, [s for s, _ in spec.steps], **client_options)
    if o.served is not None:
        return StageChain(spec, detector, url, o.served, **client_options)
    return ModelChain(spec, url, ensemble=o.key == "S4", **client_options)


# --- comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputTolerance:
    """Integer tensors must match exactly; float tensors within ``rtol``/``atol`` (a served
    model may run its torch with another thread count, which reorders float sums)."""

    rtol: float = 1e-5
    atol: float = 1e-6

    def __post_init__(self) -> None:
        if self.rtol < 0 or self.atol < 0:
            raise ValueError(f"OutputTolerance: rtol and atol must be >= 0, got {self}")


def compare_outputs(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
                    tolerance: OutputTolerance) -> tuple[list[str], list[str]]:
    """(names of tensors not bitwise identical, differences beyond tolerance) over the tensors
    both hold."""
    not_identical, differences = [], []
    for name, w in want.items():
        if name not in got:
            continue
        g = got[name]
        if g.shape != w.shape or g.dtype != w.dtype:
            not_identical.append(name)
            differences.append(f"{name}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}")
            continue
        floats = w.dtype.kind == "f"
        if np.array_equal(g, w, equal_nan=floats):
            continue
        not_identical.append(name)
        if not floats or not np.allclose(g, w, rtol=tolerance.rtol, atol=tolerance.atol,
                                         equal_nan=True):
            bad = int(np.count_nonzero(g != w))
            differences.append(f"{name}: {bad} of {w.size} values differ")
    return not_identical, differences


# --- Prometheus ---------------------------------------------------------------------------

#: Triton's per-model counters (microseconds, and requests) the study reads.
PROMETHEUS_COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure",
                       "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
                       "nv_inference_compute_infer_duration_us",
                       "nv_inference_compute_output_duration_us")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of the Prometheus text exposition format: (name, labels, value)."""
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise TaasError(f"not a Prometheus sample line: {line[:120]!r}")
        name, labels, value = match.groups()
        samples.append((name, {k: v.replace('\\"', '"').replace("\\\\", "\\")
                               for k, v in _LABEL.findall(labels or "")}, float(value)))
    return samples


def per_model_counters(text: str) -> dict[str, dict[str, float]]:
    """``{model: {counter: value}}`` of ``PROMETHEUS_COUNTERS``, summed over versions."""
    out: dict[str, dict[str, float]] = {}
    for name, labels, value in parse_prometheus(text):
        if name in PROMETHEUS_COUNTERS and "model" in labels:
            counters = out.setdefault(labels["model"], dict.fromkeys(PROMETHEUS_COUNTERS, 0.0))
            counters[name] += value
    return out


def scrape(metrics_url: str, timeout_s: float = 10.0) -> dict[str, dict[str, float]]:
    """The server's per-model counters now (``metrics_url``: ``http://host:port/metrics``)."""
    if not metrics_url.startswith(("http://", "https://")):
        raise TaasError(f"metrics URL must be http(s)://host:port/metrics, got {metrics_url!r}")
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
            return per_model_counters(response.read().decode())
    except OSError as exc:
        raise TaasError(f"cannot scrape Triton metrics at {metrics_url}: {exc}") from None


def queue_vs_compute(before: Mapping[str, Mapping[str, float]],
                     after: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Per model with requests between the snapshots: ms per request queued and computing."""
    rows = []
    for model, a in sorted(after.items()):
        b = before.get(model, {})

        def delta(key: str, a: Mapping[str, float] = a, b: Mapping[str, float] = b) -> float:
            return a.get(key, 0.0) - b.get(key, 0.0)

        requests = delta("nv_inference_request_success")
        if requests <= 0:
            continue
        ms = {phase: delta(f"nv_inference_{phase}_duration_us") / requests / 1e3
              for phase in ("queue", "compute_input", "compute_infer", "compute_output")}
        compute = ms["compute_input"] + ms["compute_infer"] + ms["compute_output"]
        rows.append({"model": model, "requests": int(requests),
                     "failures": int(delta("nv_inference_request_failure")),
                     **{f"{k}_ms": v for k, v in ms.items()}, "compute_ms": compute,
                     "queue_fraction": ms["queue"] / (ms["queue"] + compute)
                     if ms["queue"] + compute > 0 else None})
    return rows


# --- the study ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySettings:
    """How much to measure. ``repeats``: timed passes over the events; ``concurrency``: client
    threads per throughput point (empty: no sweep); ``requests``/``max_seconds``: the bound of
    each point; ``warmup``: one untimed event per chain first (emulated pipelines skip it: one
    event costs minutes there, and first-call costs are lost in it)."""

    repeats: int = 2
    concurrency: tuple[int, ...] = (1, 2, 4)
    requests: int = 8
    max_seconds: float = 60.0
    warmup: bool = True
    options: tuple[str, ...] = OPTION_KEYS
    tolerance: OutputTolerance = OutputTolerance()

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"StudySettings.repeats must be >= 1, got {self.repeats}")
        if any(c < 1 for c in self.concurrency):
            raise ValueError(f"StudySettings.concurrency must be >= 1, got {self.concurrency}")
        if self.requests < 1 or self.max_seconds <= 0:
            raise ValueError("StudySettings.requests must be >= 1 and max_seconds > 0")
        unknown = set(self.options) - set(OPTION_KEYS)
        if unknown or "S0" not in self.options:
            raise ValueError(f"StudySettings.options must include S0 and come from "
                             f"{list(OPTION_KEYS)}, got {list(self.options)}")


def _throughput(chains: list[Chain], events: Sequence[Mapping[str, np.ndarray]],
                requests: int, max_seconds: float) -> dict[str, Any]:
    """``len(chains)`` threads, each with its own chain, until ``requests`` events are done."""
    lock = threading.Lock()
    next_index = 0
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + max_seconds

    def worker(chain: Chain) -> None:
        nonlocal next_index
        while True:
            with lock:
                if next_index >= requests or time.perf_counter() > deadline:
                    return
                index = next_index
                next_index += 1
            t0 = time.perf_counter()
            try:
                chain.run_event(events[index % len(events)])
            except Exception as exc:  # counted and reported; the point goes on
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in chains]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t_start
    lat = np.asarray(latencies) * 1e3
    return {"concurrency": len(chains), "events": len(latencies), "errors": len(errors),
            "first_error": errors[0] if errors else "", "seconds": seconds,
            "events_per_s": len(latencies) / seconds if seconds > 0 else 0.0,
            "latency_ms": ({f"p{q}": float(np.percentile(lat, q)) for q in (50, 95)}
                           if lat.size else {})}


class _Chains:
    """Each option's chains, built on demand (chain 0 times events; the sweep adds more), all
    closed together."""

    def __init__(self, spec: PipelineSpec, detector: Detector, url: str, warmup_event:
                 Mapping[str, np.ndarray] | None, client_options: Mapping[str, Any]) -> None:
        self.spec, self.detector, self.url = spec, detector, url
        self.warmup_event, self.client_options = warmup_event, client_options
        self.pools: dict[str, list[Chain]] = {}

    def get(self, o: ServiceOption, n: int) -> list[Chain]:
        pool = self.pools.setdefault(o.key, [])
        while len(pool) < n:
            chain = make_chain(o, self.spec, self.detector, self.url, **self.client_options)
            pool.append(chain)
            if self.warmup_event is not None:
                chain.run_event(self.warmup_event)
                chain.meter.take()
        return pool[:n]

    def close(self) -> None:
        for pool in self.pools.values():
            for chain in pool:
                chain.close()


@dataclass
class _Tally:
    """What the timed passes record of one option."""

    seconds: list[float]
    traffic: list[tuple[int, int, int]]
    not_identical: set[str]
    differences: list[str]


def _timed_passes(chosen: Sequence[ServiceOption], chains: _Chains,
                  events: Sequence[Mapping[str, np.ndarray]], settings: StudySettings,
                  ) -> dict[str, _Tally]:
    """Every option on every event, in an order reversed on alternate events and passes;
    each option's outputs checked against direct's on the same event."""
    tally = {o.key: _Tally([], [], set(), []) for o in chosen}
    for r in range(settings.repeats):
        for i, event in enumerate(events):
            outputs: dict[str, dict[str, np.ndarray]] = {}
            for o in chosen if (r + i) % 2 == 0 else chosen[::-1]:
                (chain,) = chains.get(o, 1)
                t0 = time.perf_counter()
                outputs[o.key] = chain.run_event(event)
                tally[o.key].seconds.append(time.perf_counter() - t0)
                tally[o.key].traffic.append(chain.meter.take())
            for o in chosen:
                if o.key != "S0":
                    names, diff = compare_outputs(outputs[o.key], outputs["S0"],
                                                  settings.tolerance)
                    tally[o.key].not_identical.update(names)
                    tally[o.key].differences += [f"event {i}: {d}" for d in diff]
    return tally


def _option_row(o: ServiceOption, t: _Tally, direct_s: float, chain: Chain,
                sweep: list[dict[str, Any]]) -> dict[str, Any]:
    req, resp, calls = (float(np.mean([x[k] for x in t.traffic])) for k in range(3))
    median = float(np.median(t.seconds))
    return {
        "key": o.key, "name": o.name, "description": o.description,
        "seconds": t.seconds, "median_s": median, "mean_s": float(np.mean(t.seconds)),
        "overhead_vs_direct": median / direct_s if direct_s > 0 else None,
        "request_bytes_per_event": req, "response_bytes_per_event": resp,
        "bytes_per_event": req + resp, "served_calls_per_event": calls,
        "outputs_equal": not t.differences, "outputs_identical": not t.not_identical,
        "not_identical": sorted(t.not_identical), "differences": t.differences[:20],
        "placement": chain.placement(), "throughput": sweep}


def run_study(spec: PipelineSpec, detector: Detector,
              events: Sequence[Mapping[str, np.ndarray]], url: str, *,
              settings: StudySettings = StudySettings(), metrics_url: str = "",
              skip_reasons: Mapping[str, str] | None = None,
              **client_options: Any) -> dict[str, Any]:
    """Measure every applicable option of ``spec`` on ``events`` against the server at ``url``.

    ``skip_reasons``: options to leave out for a stated reason (e.g. the emulation budget).
    ``metrics_url``: the server's Prometheus endpoint, scraped around the throughput sweep.
    ``client_options`` go to every served model's client (``shared_memory``, ``timeout_s``).
    """
    if not events:
        raise TaasError("the service-option study needs at least one event")
    chosen, skipped = applicable(spec)
    skipped |= {k: v for k, v in (skip_reasons or {}).items()
                if k != "S0" and any(o.key == k for o in chosen)}
    skipped |= {o.key: "not requested" for o in chosen
                if o.key not in settings.options and o.key not in skipped}
    chosen = [o for o in chosen if o.key not in skipped]
    chains = _Chains(spec, detector, url, events[0] if settings.warmup else None,
                     client_options)
    sweep: dict[str, list[dict[str, Any]]] = {o.key: [] for o in chosen}
    prometheus: dict[str, Any] = {"reason": "no throughput sweep"}
    try:
        tally = _timed_passes(chosen, chains, events, settings)
        if settings.concurrency:
            for o in chosen:  # built and warmed before the first scrape: not counted
                chains.get(o, max(settings.concurrency))
            before = scrape(metrics_url) if metrics_url else {}
            for c in settings.concurrency:
                for o in chosen:
                    sweep[o.key].append(_throughput(chains.get(o, c), events,
                                                    settings.requests, settings.max_seconds))
                    log.info("%s %s c=%d: %.2f events/s", spec.name, o.key, c,
                             sweep[o.key][-1]["events_per_s"])
            prometheus = ({"metrics_url": metrics_url,
                           "rows": queue_vs_compute(before, scrape(metrics_url))}
                          if metrics_url else
                          {"reason": "no metrics endpoint (a server this job did not start)"})
        direct_s = float(np.median(tally["S0"].seconds))
        rows = [_option_row(o, tally[o.key], direct_s, chains.get(o, 1)[0], sweep[o.key])
                for o in chosen]
    finally:
        chains.close()
    for row in rows:
        if row["differences"]:
            log.warning("%s %s: outputs differ from direct: %s", spec.name, row["key"],
                        "; ".join(row["differences"][:5]))
    shared_memory = client_options.get("shared_memory")
    local = is_local(url) if shared_memory is None else shared_memory
    return {
        "pipeline": spec.name, "steps": [list(s) for s in spec.steps], "url": url,
        "transport": "shared memory" if local else "gRPC", "events": len(events),
        "repeats": settings.repeats, "warmup": settings.warmup, "requests": settings.requests,
        "concurrency": list(settings.concurrency),
        "tolerance": {"rtol": settings.tolerance.rtol, "atol": settings.tolerance.atol},
        "cells_per_event": [len(e["cells.ch0"]) for e in events],
        "options": rows, "skipped": [{"key": k, "name": option(k).name, "reason": v}
                                     for k, v in skipped.items()],
        "prometheus": prometheus,
    }


def served_vs_direct_view(study: Mapping[str, Any]) -> dict[str, Any]:
    """The served-vs-direct summary of a study: direct (S0) against the pipeline model
    (custom), mean time per event."""
    rows = {r["key"]: r for r in study["options"]}
    direct, served = rows["S0"], rows["custom"]
    return {
        "pipeline": study["pipeline"], "steps": study["steps"],
        "model": pipeline_model_name(study["pipeline"]),
        "transport": study["transport"], "events": study["events"],
        "repeats": study["repeats"], "cells_per_event": study["cells_per_event"],
        "direct_s_per_event": direct["mean_s"], "served_s_per_event": served["mean_s"],
        "direct_median_s": direct["median_s"], "served_median_s": served["median_s"],
        "ratio": served["mean_s"] / direct["mean_s"] if direct["mean_s"] > 0 else None,
        "outputs_identical": served["outputs_identical"],
        "differing_outputs": served["not_identical"],
        "machine_before": study.get("machine_before"),
        "machine_after": study.get("machine_after"),
    }
