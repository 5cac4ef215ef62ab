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
from taas.service.client import token_rejected, unreachable
from taas.service.pbtxt import triton_dtype
from taas.service.python_model import instance_count
from taas.service.security import PLAIN, ClientSecurity, resolve

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
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 p90 p95 p99 max mean
    server_ms: dict[str, float] = field(default_factory=dict)   # mean per request, by phase
    first_error: str = ""
    clients: int = 1  # gRPC connections the requests were spread over
    server_requests: int = 0  # successful requests the server's statistics counted meanwhile

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


def latency_percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p95, p99, max and mean of per-request latencies, in milliseconds."""
    lat = np.asarray(seconds, dtype=np.float64) * 1e3
    if not lat.size:
        return {}
    return ({f"p{q}": float(np.percentile(lat, q)) for q in (50, 90, 95, 99)}
            | {"max": float(lat.max()), "mean": float(lat.mean())})


def _requests(aioclient: Any, names: Sequence[str],
              events: Sequence[Mapping[str, np.ndarray]]) -> list[list[Any]]:
    """One list of ``InferInput`` per event, built once and reused by every request."""
    requests = []
    for event in events:
        inputs = []
        for name in names:
            array = np.ascontiguousarray(event[name])
            item = aioclient.InferInput(name, list(array.shape), triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            inputs.append(item)
        requests.append(inputs)
    return requests


async def _load(url: str, model: str, events: Sequence[Mapping[str, np.ndarray]],
                concurrency: int, max_requests: int, max_seconds: float,
                clients: int = 1, timeout_s: float | None = None,
                security: ClientSecurity = PLAIN) -> LoadReport:
    import tritonclient.grpc.aio as aioclient
    from tritonclient.utils import InferenceServerException

    # each client its own channel *and* its own connection: gRPC shares one TCP connection
    # between channels of equal arguments unless a channel keeps a local subchannel pool
    channel_args = [("grpc.use_local_subchannel_pool", 1)] if clients > 1 else None
    pool = [aioclient.InferenceServerClient(url, channel_args=channel_args,
                                            **security.grpc_options())
            for _ in range(clients)]
    client = pool[0]
    headers = security.headers()  # the token, on every request
    try:
        metadata = await client.get_model_metadata(model, headers=headers, as_json=True)
        requests = _requests(aioclient, [t["name"] for t in metadata["inputs"]], events)
        # warm-up, not counted: one request per instance at once, so that no instance pays
        # its first-call costs (caches, lazy initialisation) inside the measurement
        config = (await client.get_model_config(model, headers=headers, as_json=True))["config"]
        base = await client.get_inference_statistics(model, headers=headers, as_json=True)
        warm_up = max(concurrency, instance_count(config))
        await asyncio.gather(*(pool[i % clients].infer(model, requests[i % len(requests)],
                                                       headers=headers)
                               for i in range(warm_up)))
        before = await _settled(client, model, headers, base, warm_up)
        latencies: list[float] = []
        errors: list[str] = []
        sent = 0
        deadline = time.perf_counter() + max_seconds

        async def worker(own: Any) -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                inputs = requests[sent % len(requests)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    await own.infer(model, inputs, headers=headers, client_timeout=timeout_s)
                    latencies.append(time.perf_counter() - t0)
                except Exception as exc:  # counted and reported, the run goes on
                    errors.append(str(exc))

        t_start = time.perf_counter()
        await asyncio.gather(*(worker(pool[i % clients]) for i in range(concurrency)))
        seconds = time.perf_counter() - t_start
        after = await _settled(client, model, headers, before, len(latencies))
        served = _stats(after)["success"][0] - _stats(before)["success"][0]
    except InferenceServerException as exc:  # before or after the timed part: stop, clearly
        detail = exc.message() or str(exc)
        if "protocol is restricted" in detail:
            raise token_rejected(url, security, f"the load of {model}") from None
        if "UNAVAILABLE" in str(exc.status()):
            raise unreachable(url, security, detail) from None
        raise TaasError(f"{model} at {url}: {detail}") from None
    finally:
        for each in pool:
            await each.close()
    return LoadReport(model, concurrency, len(latencies), len(errors), seconds,
                      len(latencies) / seconds if seconds > 0 else 0.0,
                      latency_percentiles(latencies), server_time_ms(before, after),
                      errors[0] if errors else "", clients, served)


async def _settled(client: Any, model: str, headers: dict[str, str] | None, since: Any,
                   answered: int) -> dict[str, Any]:
    """The model's statistics once they count the ``answered`` successes after ``since``
    (or after a second without them). Triton counts a request once its response is sent,
    which may be just after the client has it: read too early, the warm-up's last answers
    would land in the measurement, or the measurement's last ones be missing."""
    settle = time.perf_counter() + 1.0
    while True:
        now = await client.get_inference_statistics(model, headers=headers, as_json=True)
        if (_stats(now)["success"][0] - _stats(since)["success"][0] >= answered
                or time.perf_counter() > settle):
            return dict(now)
        await asyncio.sleep(0.05)


def run_load(url: str, model: str, events: Sequence[Mapping[str, np.ndarray]], *,
             concurrency: int = 1, max_requests: int = 100, max_seconds: float = 30.0,
             clients: int = 1, timeout_s: float | None = None,
             security: ClientSecurity | None = None) -> LoadReport:
    """Send ``events`` (cycled) to ``model`` with ``concurrency`` requests in flight.

    ``clients``: independent gRPC connections the requests are spread over (a soak with 64
    clients is 64 connections, not 64 streams on one); ``timeout_s``: per-request deadline,
    a request past it counts as failed; ``security``: TLS and token, as for ``ModelClient``.
    """
    if concurrency < 1 or max_requests < 1 or not events:
        raise TaasError("need concurrency >= 1, max_requests >= 1 and at least one event")
    if not 1 <= clients <= concurrency:
        raise TaasError(f"need 1 <= clients <= concurrency, got clients={clients} "
                        f"concurrency={concurrency}")
    return asyncio.run(_load(url, model, events, concurrency, max_requests, max_seconds,
                             clients, timeout_s, resolve(security)))


def sweep(url: str, model: str, events: Sequence[Mapping[str, np.ndarray]],
          concurrencies: Sequence[int] = (1, 2, 4), **limits: Any) -> list[LoadReport]:
    """``run_load`` at each concurrency, in order."""
    return [run_load(url, model, events, concurrency=c, **limits) for c in concurrencies]
