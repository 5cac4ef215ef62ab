"""TLS and token end to end against the real tritonserver: served results equal direct ones over
TLS; a plain client, a wrong CA, no token and a wrong token are each refused with an error that
says which; health stays open to probes without a token.

One extra server (TLS + token) on the session's repository; certificates from a throwaway CA made
here with the openssl command line.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from taas.errors import InputError
from taas.pipeline.runner import Pipeline
from taas.service.client import (
    ModelClient,
    RemotePipeline,
    ServiceUnavailableError,
    TokenRejectedError,
)
from taas.service.discovery import FailoverRunner, is_ready
from taas.service.graph import model_name
from taas.service.loadgen import run_load
from taas.service.model_repo import pipeline_model_name
from taas.service.security import (
    CA_ENV,
    GRPC_HEADER_PREFIX,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    TOKEN_HEADER,
    ClientSecurity,
    ServerSecurity,
    client_environment,
    server_security_from_sources,
)
from tests.service.certs import ThrowawayCA, have_openssl, make_test_ca
from tests.service.conftest import FRONT_END, assert_same, start_server

TOKEN = "taas-test-token-7d41"
MODEL = pipeline_model_name(FRONT_END.name)
#: The tests use the whole-pipeline model only: loading just it halves the server's start.
ONLY_THE_PIPELINE = ("--model-control-mode=explicit", f"--load-model={MODEL}")
#: ... and the workflow's served reconstruction, the per-stage models too.
PIPELINE_AND_STAGES = (*ONLY_THE_PIPELINE,
                       *(f"--load-model={model_name(*step)}" for step in FRONT_END.steps))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    if not have_openssl():
        pytest.skip("no openssl command to make test certificates")
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def secure(served_repo: Path, ca: ThrowawayCA) -> Iterator[object]:
    security = ServerSecurity(server_cert=ca.server_cert, server_key=ca.server_key,
                              token=TOKEN)
    server = start_server(served_repo, security=security, extra_args=PIPELINE_AND_STAGES)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def direct(tiny_sim_dir: Path) -> Pipeline:
    from taas.events.dataset import open_dataset

    return Pipeline(FRONT_END, open_dataset(tiny_sim_dir).detector)


def _client(ca: ThrowawayCA, token: str | None = TOKEN) -> ClientSecurity:
    return ClientSecurity(root_cert=ca.ca, token=token)


# --- the settings themselves (no server) ------------------------------------------------------
def test_server_flags_restrict_inference_not_health(ca: ThrowawayCA) -> None:
    args = ServerSecurity(server_cert=ca.server_cert, server_key=ca.server_key,
                          token=TOKEN).server_args()
    assert "--grpc-use-ssl=true" in args
    restricted = next(a for a in args if a.startswith("--grpc-restricted-protocol="))
    groups, rule = restricted.split("=", 1)[1].split(":")
    assert rule == f"{TOKEN_HEADER}={TOKEN}"
    assert "inference" in groups.split(",")
    assert "health" not in groups.split(",")
    assert any(a.startswith("--http-restricted-api=") for a in args)  # HTTP is no back door
    mutual = ServerSecurity(server_cert=ca.server_cert, server_key=ca.server_key,
                            root_cert=ca.ca, mutual=True).server_args()
    assert "--grpc-use-ssl-mutual=true" in mutual
    assert f"--grpc-root-cert={ca.ca}" in mutual


def test_token_never_in_repr_and_settings_validated(ca: ThrowawayCA, tmp_path: Path) -> None:
    assert TOKEN not in repr(ServerSecurity(token=TOKEN))
    assert TOKEN not in repr(_client(ca))
    assert _client(ca).headers() == {GRPC_HEADER_PREFIX + TOKEN_HEADER: TOKEN}
    with pytest.raises(ValueError, match="server_key"):
        ServerSecurity(server_cert=ca.server_cert)
    with pytest.raises(ValueError, match="mutual"):
        ServerSecurity(mutual=True)
    with pytest.raises(ValueError, match="token"):
        ServerSecurity(token="has:colon")
    with pytest.raises(ValueError, match="client_key"):
        ClientSecurity(client_cert=ca.client_cert)
    assert ClientSecurity(root_cert=ca.ca).tls  # a CA implies TLS


def test_token_from_file_or_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert ClientSecurity.from_sources(token_file=token_file, env={}).token == TOKEN
    from_env = ClientSecurity.from_sources(env={TOKEN_ENV: TOKEN})
    assert from_env.token == TOKEN
    assert ClientSecurity.from_sources(env={}).token is None
    assert server_security_from_sources(env={TOKEN_ENV: TOKEN}).token == TOKEN
    # the environment a workflow job exports: CA and token file, read by every client
    exported = client_environment(ca=str(tmp_path / "ca.pem"), token_file=str(token_file))
    assert exported == {CA_ENV: str(tmp_path / "ca.pem"), TOKEN_FILE_ENV: str(token_file)}
    (tmp_path / "ca.pem").write_text("not used here")
    from_job = ClientSecurity.from_sources(env=exported)
    assert (from_job.tls, from_job.root_cert, from_job.token) == (True, tmp_path / "ca.pem",
                                                                   TOKEN)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InputError, match="empty") as err:
        ClientSecurity.from_sources(token_file=tmp_path / "empty", env={})
    assert str(tmp_path / "empty") in str(err.value)


# --- against the real server ------------------------------------------------------------------



@pytest.mark.triton
@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "grpc"])
def test_tls_and_token_give_direct_results(secure, ca, direct, tiny_event,
                                           shared_memory) -> None:
    remote = RemotePipeline(FRONT_END.name, secure.url, security=_client(ca),
                            shared_memory=shared_memory)
    try:
        served = remote.run(tiny_event).tensors
    finally:
        remote.close()
    assert_same(served, direct.run(tiny_event).tensors)


@pytest.mark.triton
def test_settings_from_the_environment_reach_the_server(secure, ca, tiny_event, direct,
                                                        monkeypatch) -> None:
    """How workflow jobs configure their clients: no arguments, only the environment."""
    monkeypatch.setenv(CA_ENV, str(ca.ca))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    remote = RemotePipeline(FRONT_END.name, secure.url)
    try:
        assert_same(remote.run(tiny_event).tensors, direct.run(tiny_event).tensors)
    finally:
        remote.close()


@pytest.mark.triton
def test_plain_client_is_refused_with_a_tls_hint(secure) -> None:
    with pytest.raises(ServiceUnavailableError, match="TLS") as err:
        ModelClient(MODEL, secure.url, security=ClientSecurity(token=TOKEN), retries=0)
    assert secure.url in str(err.value)
    # discovery passes the server over, and says why when nothing else is left
    runner = FailoverRunner([secure.url], lambda url: pytest.fail("not ready, not used"),
                            security=ClientSecurity(token=TOKEN))
    with pytest.raises(ServiceUnavailableError, match="may require TLS"):
        runner.run({})


@pytest.mark.triton
def test_wrong_ca_is_refused(secure, ca) -> None:
    wrong = ClientSecurity(root_cert=ca.other_ca, token=TOKEN)
    with pytest.raises(ServiceUnavailableError, match="TLS handshake failed"):
        ModelClient(MODEL, secure.url, security=wrong, retries=0)


@pytest.mark.triton
@pytest.mark.parametrize(("token", "reason"), [(None, "no token was sent"),
                                               ("not-the-token", "token was rejected")])
def test_missing_or_wrong_token_is_refused(secure, ca, tiny_event, token, reason) -> None:
    remote = RemotePipeline(FRONT_END.name, secure.url, security=_client(ca, token))
    try:
        with pytest.raises(TokenRejectedError, match=reason) as err:
            remote.run(tiny_event)
    finally:
        remote.close()
    assert secure.url in str(err.value)
    assert "not-the-token" not in str(err.value)  # a secret, even a wrong one, is not echoed


@pytest.mark.triton
def test_health_is_open_without_token(secure, ca) -> None:
    assert is_ready(secure.url, ClientSecurity(root_cert=ca.ca))  # gRPC, TLS, no token
    assert secure.is_ready()  # HTTP, as a Kubernetes probe asks
    # ... while HTTP inference needs the token too: no plain-text back door around TLS
    request = urllib.request.Request(
        f"http://{secure.host}:{secure.http_port}/v2/models/{MODEL}/infer", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    err.value.close()
    assert err.value.code == 403


@pytest.mark.triton
def test_load_generator_speaks_tls_and_token(secure, ca, tiny_event) -> None:
    report = run_load(secure.url, MODEL, [tiny_event], concurrency=2, max_requests=4,
                      security=_client(ca))
    assert (report.requests, report.errors) == (4, 0)
    assert np.isfinite(report.latency_ms["p50"])
    with pytest.raises(TokenRejectedError, match="no token was sent"):
        run_load(secure.url, MODEL, [tiny_event], max_requests=1,
                 security=ClientSecurity(root_cert=ca.ca))


def test_workflow_reconstruction_speaks_tls_and_token(secure, ca: ThrowawayCA, tiny_sim_dir: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The workflow's served reconstruction job reaches a TLS + token server through the
    environment the Snakefile exports (``client_environment``): the same outputs as direct;
    without the token the job stops with the token error."""
    from taas.events.dataset import open_dataset
    from taas.pipeline.reconstruct import load_reco
    from taas.service.security import client_environment
    from taas.workflow.cli import main

    steps = ",".join(f"{stage}/{backend}" for stage, backend in FRONT_END.steps)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    configs = tmp_path / "stage_configs.json"  # what the served repository was built with
    configs.write_text(json.dumps(FRONT_END.stage_configs))

    def reconstruct(out: Path, *served: str) -> int:
        return main(["reconstruct", "--events", str(tiny_sim_dir), "--pipeline",
                     FRONT_END.name, "--steps", steps, "--stage-configs", str(configs),
                     "--out", str(out), *served])

    assert reconstruct(tmp_path / "direct") == 0
    for key, value in client_environment(ca=str(ca.ca), token_file=str(token_file)).items():
        monkeypatch.setenv(key, value)
    assert reconstruct(tmp_path / "served", "--mode", "served", "--server-url", secure.url) == 0
    for event_id in open_dataset(tiny_sim_dir).event_ids:
        assert_same(load_reco(tmp_path / "served", event_id),
                    load_reco(tmp_path / "direct", event_id))
    monkeypatch.delenv("TAAS_TOKEN_FILE")
    monkeypatch.delenv("TAAS_TOKEN", raising=False)
    caplog.clear()
    assert reconstruct(tmp_path / "refused", "--mode", "served", "--server-url", secure.url) == 1
    assert "no token" in caplog.text
    assert secure.url in caplog.text
