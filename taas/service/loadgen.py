"""Drive a served model with concurrent events and report throughput, latency and server time.

``perf_analyzer`` needs a newer glibc than these machines have, so this is our own: asyncio and
tritonclient's ``grpc.aio``, N requests in flight, bounded by a request count and a time limit.
Server-side queue and compute times come from Triton's statistics, which are cumulative
counters sent as strings: we diff a snapshot taken before and after the run. Loopback only: a
load test is not something to point at someone else's server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from taas.errors import TaasError
from taas.service.pbtxt import triton_dtype
from taas.service.python_model import instance_count

_STAT_KEYS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class LoadReport:
    """One load run at one concurrency; times in milliseconds."""

    model: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float  # events per second
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p95, p99, mean
    server_ms: dict[str, float] = field(default_factory=dict)   # mean per request, by phase
    first_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lat = self.latency_ms
        srv = self.server_ms
        return (f"{self.model} c={self.concurrency}: {self.throughput:.1f} events/s, latency "
                f"p50 {lat.get('p50', 0):.1f} p95 {lat.get('p95', 0):.1f} "
                f"p99 {lat.get('p99', 0):.1f} ms; server queue {srv.get('queue', 0):.1f} "
                f"compute {srv.get('compute_infer', 0):.1f} ms; {self.errors} errors")


def _stats(raw: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(count, ns) per phase, summed over model versions (Triton sends strings)."""
    out = dict.fromkeys(_STAT_KEYS, (0, 0))
    for model in raw.get("model_stats", []):
        inference = model.get("inference_stats", {})
        for key in _STAT_KEYS:
            entry = inference.get(key, {})
            c, ns = out[key]
            out[key] = (c + int(entry.get("count", 0)), ns + int(entry.get("ns", 0)))
    return out


def server_time_ms(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """Mean milliseconds per request in each phase between two statistics snapshots."""
    b, a = _stats(before), _stats(after)
    requests = a["success"][0] - b["success"][0]
    if requests <= 0:
        return {}
    return {key: (a[key][1] - b[key][1]) / requests / 1e6 for key in _STAT_KEYS
            if key not in ("success", "fail")}


async def _load(url: str, model: str, events: Sequence[Mapping[str, np.ndarray]],
                concurrency: int, max_requests: int, max_seconds: float) -> LoadReport:
    import tritonclient.grpc.aio as aioclient

    client = aioclient.InferenceServerClient(url)
    try:
        metadata = await client.get_model_metadata(model, as_json=True)
        names = [t["name"] for t in metadata["inputs"]]
        requests = []
        for event in events:
            inputs = []
            for name in names:
                array = np.ascontiguousarray(event[name])
                item = aioclient.InferInput(name, list(array.shape), triton_dtype(array.dtype))
                item.set_data_from_numpy(array)
                inputs.append(item)
            requests.append(inputs)
        # warm-up, not counted: one request per instance at once, so that no instance pays
        # its first-call costs (caches, lazy initialisation) inside the measurement
        config = (await client.get_model_config(model, as_json=True))["config"]
        await asyncio.gather(*(client.infer(model, requests[i % len(requests)])
                               for i in range(max(concurrency, instance_count(config)))))
        before = await client.get_inference_statistics(model, as_json=True)
        latencies: list[float] = []
        errors: list[str] = []
        sent = 0
        deadline = time.perf_counter() + max_seconds

        async def worker() -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                inputs = requests[sent % len(requests)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    await client.infer(model, inputs)
                    latencies.append(time.perf_counter() - t0)
                except Exception as exc:  # counted and reported, the run goes on
                    errors.append(str(exc))

        t_start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t_start
        after = await client.get_inference_statistics(model, as_json=True)
    finally:
        await client.close()
    lat = np.array(latencies) * 1e3
    latency = ({f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)}
               | {"mean": float(lat.mean())}) if lat.size else {}
    return LoadReport(model, concurrency, len(latencies), len(errors), seconds,
                      len(latencies) / seconds if seconds > 0 else 0.0, latency,
                      server_time_ms(before, after), errors[0] if errors else "")


def run_load(url: str, model: str, events: Sequence[Mapping[str, np.ndarray]], *,
             concurrency: int = 1, max_requests: int = 100,
             max_seconds: float = 30.0) -> LoadReport:
    """Send ``events`` (cycled) to ``model`` with ``concurrency`` requests in flight."""
    if concurrency < 1 or max_requests < 1 or not events:
        raise TaasError("need concurrency >= 1, max_requests >= 1 and at least one event")
    return asyncio.run(_load(url, model, events, concurrency, max_requests, max_seconds))


def sweep(url: str, model: str, events: Sequence[Mapping[str, np.ndarray]],
          concurrencies: Sequence[int] = (1, 2, 4), **limits: Any) -> list[LoadReport]:
    """``run_load`` at each concurrency, in order."""
    return [run_load(url, model, events, concurrency=c, **limits) for c in concurrencies]
