"""A server that dies or hangs mid-run gives the client a clear ``TaasError`` naming the server
within the client's timeout: never a hang, never a raw gRPC trace.

One extra real tritonserver on the session's repository, its own so it can be stopped and killed
without touching the session's server; the tests run in file order on it: first frozen and
woken, then killed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taas.errors import TaasError
from taas.service.client import RemotePipeline, ServiceError, ServiceUnavailableError
from tests.service.conftest import FRONT_END, start_server

pytestmark = pytest.mark.triton

TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def victim(served_repo: Path) -> Iterator[object]:
    server = start_server(served_repo)
    try:
        yield server
    finally:
        if server.running:
            os.kill(server.pid, signal.SIGCONT)  # a stopped server cannot take SIGINT
        server.stop()


def test_hung_server_gives_a_timeout_error_naming_it(victim, tiny_event):
    client = RemotePipeline(FRONT_END.name, victim.url, timeout_s=TIMEOUT_S, retries=1)
    try:
        client.run(tiny_event)
        os.kill(victim.pid, signal.SIGSTOP)  # alive and listening, answering nothing
        t0 = time.monotonic()
        with pytest.raises(ServiceError, match=victim.url) as caught:
            client.run(tiny_event)
        waited = time.monotonic() - t0
        assert waited < 2 * TIMEOUT_S + 2, f"the client waited {waited:.1f} s"
        assert f"no answer within {TIMEOUT_S:g} s" in str(caught.value)
        # a client connecting to the frozen server (metadata, config) gives up alike
        t0 = time.monotonic()
        with pytest.raises(ServiceError, match="no answer within"):
            RemotePipeline(FRONT_END.name, victim.url, timeout_s=TIMEOUT_S, retries=1)
        assert time.monotonic() - t0 < 2 * TIMEOUT_S + 2
        os.kill(victim.pid, signal.SIGCONT)  # the server wakes: the same client goes on
        assert len(client.run(tiny_event).tensors["seeds.quality"]) > 0
    finally:
        client.close()


def test_server_killed_mid_run_gives_unavailable_error(victim, tiny_event):
    client = RemotePipeline(FRONT_END.name, victim.url, timeout_s=TIMEOUT_S, retries=2)
    answered, failures = [], []
    stop_at = time.monotonic() + 60

    def send() -> None:  # events back to back, as a reconstruction job sends them
        try:
            while time.monotonic() < stop_at:
                client.run(tiny_event)
                answered.append(time.monotonic())
        except Exception as exc:  # what the job would see: kept for the assertions below
            failures.append((time.monotonic(), exc))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        while len(answered) < 3 and sender.is_alive():
            time.sleep(0.01)
        assert len(answered) >= 3, failures
        # freeze first, so that the next request is surely in flight when the server dies
        os.kill(victim.pid, signal.SIGSTOP)
        time.sleep(0.5)
        in_flight = len(answered)
        killed_at = time.monotonic()
        victim.kill()  # SIGKILL, its stubs with it
        sender.join(timeout=60)
        assert not sender.is_alive(), "the client hangs on a dead server"
    finally:
        client.close()
    assert len(failures) == 1
    assert len(answered) == in_flight  # the request in flight at the kill was not answered
    failed_at, error = failures[0]
    assert isinstance(error, ServiceUnavailableError)
    assert isinstance(error, TaasError)
    assert victim.url in str(error)
    assert "Traceback" not in str(error)
    # within the client's budget: the retries' back-off and one timeout at most
    assert failed_at - killed_at < TIMEOUT_S + 5
