"""Bad requests get clear errors and the server serves the next good request normally."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import numpy as np
import pytest

from taas.service.client import ModelClient, ServiceError
from tests.service.conftest import MAX_ROWS

pytestmark = pytest.mark.triton

MODEL = "clustering_cpu"


def _raw_infer(url: str, tensors: dict[str, np.ndarray], datatypes: dict[str, str] | None = None,
               shapes: dict[str, list[int]] | None = None) -> None:
    """Send exactly what we are told, bypassing the client's own checks."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        inputs = []
        for name, array in tensors.items():
            dtype = (datatypes or {}).get(name) or _wire_type(array)
            item = grpcclient.InferInput(name, (shapes or {}).get(name, list(array.shape)), dtype)
            if dtype == "BYTES":
                item.set_data_from_numpy(array.astype(object))
            else:
                item.set_data_from_numpy(array)
            inputs.append(item)
        client.infer(MODEL, inputs, client_timeout=60)
    finally:
        client.close()


def _wire_type(array: np.ndarray) -> str:
    from taas.service.pbtxt import triton_dtype

    return triton_dtype(array.dtype)


def _garbage_bytes(url: str) -> None:
    host, port = url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(np.random.default_rng(1).bytes(4096))
        s.settimeout(2)
        with contextlib.suppress(TimeoutError, ConnectionError):
            s.recv(1024)


def _cases(event: dict[str, np.ndarray]) -> dict[str, tuple[Callable[[str], None], str]]:
    wrong_name = {("cells.chX" if k == "cells.ch0" else k): v for k, v in event.items()}
    missing = {k: v for k, v in event.items() if k != "cells.value"}
    wrong_dtype = {**event, "cells.ch0": event["cells.ch0"].astype(np.float32)}
    wrong_rank = {**event, "cells.ch0": event["cells.ch0"].reshape(-1, 1)}
    ragged = {**event, "cells.ch1": event["cells.ch1"][:-1]}
    huge = {k: np.zeros(MAX_ROWS + 1, v.dtype) for k, v in event.items()}
    strings = {**event, "cells.ch0": np.array([b"\x00\xff garbage"] * len(event["cells.ch0"]))}
    return {
        "wrong name": (lambda url: _raw_infer(url, wrong_name), "cells.chX"),
        "missing tensor": (lambda url: _raw_infer(url, missing), "cells.value"),
        "wrong dtype": (lambda url: _raw_infer(url, wrong_dtype), "FP32"),
        "wrong rank": (lambda url: _raw_infer(url, wrong_rank), "cells.ch0"),
        "ragged columns": (lambda url: _raw_infer(url, ragged), "differ in length"),
        "huge event": (lambda url: _raw_infer(url, huge), "event too large"),
        "bytes tensor": (lambda url: _raw_infer(url, strings, {"cells.ch0": "BYTES"}), "BYTES"),
        "garbage bytes": (_garbage_bytes, ""),
    }


@pytest.mark.parametrize("case", ["wrong name", "missing tensor", "wrong dtype", "wrong rank",
                                  "ragged columns", "huge event", "bytes tensor",
                                  "garbage bytes"])
def test_bad_request_then_good_one(triton, tiny_event, case) -> None:
    from tritonclient.utils import InferenceServerException

    send, message = _cases(tiny_event)[case]
    if case == "garbage bytes":
        send(triton.url)
    else:
        with pytest.raises(InferenceServerException, match=message):
            send(triton.url)
    assert triton.running
    with ModelClient(MODEL, triton.url, shared_memory=False) as client:
        out = client.infer(tiny_event)
    assert len(out["clusters.cluster_id"]) == len(tiny_event["cells.ch0"])


def test_client_errors_name_model_and_url(triton, tiny_event) -> None:
    ragged = {**tiny_event, "cells.ch1": tiny_event["cells.ch1"][:-1]}
    with ModelClient(MODEL, triton.url) as client, \
            pytest.raises(ServiceError, match=rf"{MODEL} at {triton.url}.*differ in length"):
        client.infer(ragged)


def test_a_replica_unloading_its_models_is_retried_a_missing_model_is_not(triton) -> None:
    """What a replica answers between SIGINT and exit, while it unloads its models (seen from
    behind the balancer: tests/service/test_cluster.py), is worth another try, which reaches
    a live replica; a model the server does not have fails at once, with Triton's words."""
    from tritonclient.utils import InferenceServerException

    calls: list[int] = []

    def answer(message: str) -> Callable[..., bool]:
        def call(**kwargs: object) -> bool:
            calls.append(1)
            if len(calls) == 1:
                raise InferenceServerException(msg=message)
            return bool(client._client.is_server_ready(**kwargs))
        return call

    with ModelClient(MODEL, triton.url, shared_memory=False, retries=1) as client:
        unloading = f"Request for unknown model: '{MODEL}' has no available versions"
        assert client._call(answer(unloading)) is True
        assert len(calls) == 2
        calls.clear()
        missing = "Request for unknown model: 'nothing_here' is not found"
        with pytest.raises(ServiceError, match="is not found"):
            client._call(answer(missing))
        assert len(calls) == 1
