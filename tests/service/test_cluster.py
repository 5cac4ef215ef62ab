"""Several tritonservers behind nginx: a valid generated config, requests spread over the
replicas, a killed replica routed around with no failed request, results equal to direct ones."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from taas.pipeline.runner import Pipeline
from taas.service.client import ModelClient
from taas.service.cluster import (
    LoadBalancerConfig,
    LoadBalancerError,
    NginxBalancer,
    TritonCluster,
    find_nginx,
)
from taas.service.model_repo import pipeline_model_name
from tests.service.conftest import FRONT_END, assert_same

pytestmark = pytest.mark.triton

MODEL = pipeline_model_name(FRONT_END.name)


@pytest.fixture(scope="module")
def nginx() -> Path:
    try:
        return find_nginx()
    except LoadBalancerError as exc:
        pytest.skip(f"no nginx for the load balancer: {exc}")


@pytest.fixture(scope="module")
def cluster(nginx: Path, served_repo: Path) -> Iterator[TritonCluster]:
    from taas.service.server import ServerError, find_binary

    try:
        find_binary()
    except ServerError as exc:
        pytest.skip(f"no tritonserver: {exc}")
    with TritonCluster(served_repo, replicas=2, models=[MODEL], ready_timeout=180) as running:
        yield running


@pytest.fixture(scope="module")
def direct_result(tiny_sim_dir: Path, tiny_event: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    from taas.events.dataset import open_dataset

    return Pipeline(FRONT_END, open_dataset(tiny_sim_dir).detector).run(tiny_event).tensors


def _successes(url: str) -> int:
    """Requests this one server has answered for MODEL (its own cumulative statistics)."""
    with ModelClient(MODEL, url, shared_memory=False) as client:
        stats = client.statistics()["model_stats"]
    return sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a self-signed certificate")
    cert, key = directory / "lb.crt", directory / "lb.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_config_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="next_upstream"):  # Envoy's word, not nginx's
        LoadBalancerConfig(replicas=("127.0.0.1:1",), next_upstream=("unavailable",))
    with pytest.raises(ValueError, match="replicas"):
        LoadBalancerConfig(replicas=("127.0.0.1",))
    with pytest.raises(ValueError, match="tls_certificate"):
        LoadBalancerConfig(replicas=("127.0.0.1:1",), tls_certificate=Path("x.crt"))


def test_generated_config_passes_nginx_test(nginx: Path, tmp_path: Path) -> None:
    config = LoadBalancerConfig(replicas=("127.0.0.1:18001", "127.0.0.1:18002"),
                                listen="127.0.0.1:18000", tries=2, max_fails=3)
    conf = NginxBalancer(config, tmp_path, binary=nginx).write_config().read_text()
    assert "server 127.0.0.1:18001 max_fails=3 fail_timeout=10s;" in conf
    assert "server 127.0.0.1:18002 max_fails=3" in conf
    assert "grpc_next_upstream error timeout;" in conf
    assert "grpc_next_upstream_tries 2;" in conf
    assert "listen 127.0.0.1:18000 http2;" in conf


def test_tls_listener_config_passes_nginx_test(nginx: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    config = LoadBalancerConfig(replicas=("127.0.0.1:18001",), listen="127.0.0.1:18443",
                                tls_certificate=cert, tls_certificate_key=key)
    conf = NginxBalancer(config, tmp_path / "lb", binary=nginx).write_config().read_text()
    assert "listen 127.0.0.1:18443 ssl http2;" in conf
    assert f"ssl_certificate {cert};" in conf
    assert f"ssl_certificate_key {key};" in conf


def test_rejected_config_carries_nginx_test_output(nginx: Path, tmp_path: Path) -> None:
    config = LoadBalancerConfig(replicas=("127.0.0.1:18001",), listen="127.0.0.1:18443",
                                tls_certificate=tmp_path / "absent.crt",
                                tls_certificate_key=tmp_path / "absent.key")
    with pytest.raises(LoadBalancerError, match=r"nginx -t(.|\n)*absent\.crt"):
        NginxBalancer(config, tmp_path, binary=nginx).write_config()


def test_missing_nginx_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.delenv("NGINX", raising=False)
    monkeypatch.setattr("shutil.which", lambda *_a, **_k: None)
    with pytest.raises(LoadBalancerError, match="apt-get install nginx"):
        find_nginx()
    with pytest.raises(LoadBalancerError, match="does not exist"):
        find_nginx(tmp_path / "nginx")


def test_requests_are_spread_and_equal_direct(cluster: TritonCluster,
                                              tiny_event: dict[str, np.ndarray],
                                              direct_result: dict[str, np.ndarray]) -> None:
    before = [_successes(url) for url in cluster.replica_urls]
    n = 6
    # plain gRPC: a shared-memory region registered on one replica is unknown to the others
    with ModelClient(MODEL, cluster.url, shared_memory=False, retries=0) as client:
        for _ in range(n):
            got = client.infer(tiny_event)
            assert_same({**tiny_event, **got}, direct_result)
    served = [_successes(url) - b for url, b in zip(cluster.replica_urls, before, strict=True)]
    assert sum(served) == n
    assert min(served) >= 1, f"requests per replica {served}: not spread"


def test_shared_memory_client_switches_to_grpc(cluster: TritonCluster,
                                               tiny_event: dict[str, np.ndarray],
                                               direct_result: dict[str, np.ndarray]) -> None:
    """A client left to choose (loopback: shared memory) learns from the first refusal that
    the balanced address cannot see its regions, and goes on over gRPC, losing no event."""
    with ModelClient(MODEL, cluster.url, retries=0) as client:
        assert client.shared_memory
        for _ in range(4):
            assert_same({**tiny_event, **client.infer(tiny_event)}, direct_result)
        assert not client.shared_memory


def test_tls_listener_end_to_end(cluster: TritonCluster, tmp_path: Path,
                                 tiny_event: dict[str, np.ndarray],
                                 direct_result: dict[str, np.ndarray]) -> None:
    """A second nginx, TLS on its listener, in front of the same replicas: a client trusting
    the throwaway CA is served; plaintext and a client trusting another CA are refused."""
    from taas.service.client import ServiceError
    from taas.service.security import ClientSecurity
    from taas.service.server import free_port
    from tests.service.certs import have_openssl, make_test_ca

    if not have_openssl():
        pytest.skip("no openssl command for the throwaway CA")
    ca = make_test_ca(tmp_path / "ca")
    config = LoadBalancerConfig(replicas=tuple(cluster.replica_urls),
                                listen=f"127.0.0.1:{free_port()}",
                                tls_certificate=ca.server_cert, tls_certificate_key=ca.server_key)
    balancer = NginxBalancer(config, tmp_path / "lb").start()
    try:
        with ModelClient(MODEL, config.listen, shared_memory=False, retries=0,
                         security=ClientSecurity(root_cert=ca.ca)) as client:
            assert_same({**tiny_event, **client.infer(tiny_event)}, direct_result)
        for wrong in (None, ClientSecurity(root_cert=ca.other_ca)):
            with pytest.raises(ServiceError):
                ModelClient(MODEL, config.listen, shared_memory=False, retries=0,
                            security=wrong)
    finally:
        balancer.stop()


def test_tls_and_token_through_the_balancer(nginx: Path, served_repo: Path, tmp_path: Path,
                                            tiny_event: dict[str, np.ndarray],
                                            direct_result: dict[str, np.ndarray]) -> None:
    """TLS ends at nginx and the replicas require a token: nginx passes the client's token
    header through; no token or a wrong one is refused with the token error, the right one is
    served, and readiness (a probe's call) needs no token."""
    from taas.service.client import TokenRejectedError
    from taas.service.security import ClientSecurity, ServerSecurity
    from tests.service.certs import have_openssl, make_test_ca

    if not have_openssl():
        pytest.skip("no openssl command for the throwaway CA")
    ca = make_test_ca(tmp_path / "ca")
    token = "taas-lb-test-token"
    with TritonCluster(served_repo, replicas=1, models=[MODEL], ready_timeout=180,
                       tls=(ca.server_cert, ca.server_key),
                       security=ServerSecurity(token=token)) as running:
        with ModelClient(MODEL, running.url, shared_memory=False, retries=0,
                         security=ClientSecurity(root_cert=ca.ca, token=token)) as client:
            assert client._client.is_server_ready()
            assert_same({**tiny_event, **client.infer(tiny_event)}, direct_result)
        for wrong in (None, "not-the-token"):
            with ModelClient(MODEL, running.url, shared_memory=False, retries=0,
                             security=ClientSecurity(root_cert=ca.ca, token=wrong)) as client, \
                    pytest.raises(TokenRejectedError, match=running.url):
                client.infer(tiny_event)


def test_cluster_command_line() -> None:
    from taas.cli import build_parser

    args = build_parser().parse_args(["cluster", "--repo", "r", "--replicas", "3",
                                      "--port", "9001"])
    assert (args.replicas, args.port, args.model_repository) == (3, 9001, Path("r"))


def test_removed_replica_is_routed_around(cluster: TritonCluster,
                                          tiny_event: dict[str, np.ndarray],
                                          direct_result: dict[str, np.ndarray]) -> None:
    """Two clients keep sending while replica 0 is killed: every request is answered, right.

    A request in flight on the killed replica comes back UNAVAILABLE (nginx never re-sends a
    streamed gRPC body), so the clients may retry once; every other request is nginx's routing.
    Then a sequence with no client retries at all lands, whole, on the survivor."""
    survivor = cluster.replica_urls[1]
    before = _successes(survivor)
    per_client, kill_after = 10, 4
    answered: list[int] = []
    failures: list[str] = []
    done = threading.Condition()

    def send() -> None:
        with ModelClient(MODEL, cluster.url, shared_memory=False, retries=1) as client:
            for _ in range(per_client):
                try:
                    got = client.infer(tiny_event)
                    assert_same({**tiny_event, **got}, direct_result)
                except Exception as exc:  # collected, the test fails on any
                    failures.append(repr(exc))
                with done:
                    answered.append(1)
                    done.notify_all()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    with done:
        done.wait_for(lambda: len(answered) >= kill_after, timeout=120)
    cluster.remove_replica(0)
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(answered) == 2 * per_client
    assert cluster.running
    assert _successes(survivor) - before >= 2 * per_client - kill_after - 2  # 2 were in flight

    before = _successes(survivor)
    with ModelClient(MODEL, cluster.url, shared_memory=False, retries=0) as client:
        for _ in range(4):
            assert_same({**tiny_event, **client.infer(tiny_event)}, direct_result)
    assert _successes(survivor) - before == 4
