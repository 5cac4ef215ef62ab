"""A short soak: 64 independent clients (64 gRPC connections) against one real tritonserver.

The benchmark (``benchmarks/soak.py``) runs the same for minutes; here ten seconds prove the
server holds 64 clients without a single failed request and that every latency percentile is
recorded. No time is asserted: a loaded 2-core box is no benchmark.
"""

from __future__ import annotations

import numpy as np
import pytest

from taas.service.model_repo import pipeline_model_name
from tests.service.conftest import FRONT_END

pytestmark = pytest.mark.triton

CLIENTS = 64


def test_64_clients_soak_without_a_failed_request(triton, tiny_event: dict[str, np.ndarray]):
    from taas.service.loadgen import run_load

    report = run_load(triton.url, pipeline_model_name(FRONT_END.name), [tiny_event],
                      concurrency=CLIENTS, clients=CLIENTS, max_requests=10**9,
                      max_seconds=10.0, timeout_s=60.0)
    assert report.errors == 0, report.first_error
    assert report.clients == CLIENTS
    assert report.requests >= CLIENTS  # every client got at least one answer's worth of turns
    lat = report.latency_ms
    assert set(lat) == {"p50", "p90", "p95", "p99", "max", "mean"}
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    # the server answered exactly the requests the clients counted: none lost, none doubled
    assert report.server_requests == report.requests
