"""Discovery and failover: candidates from config, ``$TAAS_SERVERS`` and a discovery file; the
first ready server is used; a server killed mid-run fails over with no event lost; with every
server gone the run stops clearly, or, only when configured, falls back to direct reconstruction
that is logged and recorded in run.json.

One extra real tritonserver (the one that gets killed) beside the session's server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.pipeline.reconstruct import load_reco
from taas.pipeline.runner import Pipeline
from taas.service.client import ServiceUnavailableError
from taas.service.discovery import (
    FELL_BACK,
    SERVERS_ENV,
    DiscoveryConfig,
    FailoverRunner,
    candidates,
    is_ready,
    served_runner,
)
from taas.service.server import free_port
from tests.service.conftest import FRONT_END, assert_same, start_server
from tests.service.test_tls_token import ONLY_THE_PIPELINE

#: Fewer in-client retries than the default: a dead server is detected in ~0.2 s, not 1.4 s.
RETRIES = 1


def _dead() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


# --- candidates (no server) -------------------------------------------------------------------
def test_candidates_from_config_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"servers": ["c:3", "a:1"]}))
    config = DiscoveryConfig(("a:1",), discovery_file=path)
    env = {SERVERS_ENV: "b:2, a:1,"}
    assert candidates(config, env) == ["a:1", "b:2", "c:3"]  # in order, no repeats
    assert candidates(DiscoveryConfig(("a:1",), use_env=False), env) == ["a:1"]


@pytest.mark.parametrize("content", ["not json", '{"hosts": []}', '{"servers": ["nohost"]}'])
def test_malformed_discovery_file_names_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "servers.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        candidates(DiscoveryConfig(discovery_file=path), {})
    assert str(path) in str(err.value)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="fallback"):
        DiscoveryConfig(fallback="silently")
    with pytest.raises(ValueError, match="servers"):
        DiscoveryConfig(("localhost",))
    with pytest.raises(InputError, match="no Triton server given"):
        FailoverRunner([], lambda url: None)  # type: ignore[arg-type,return-value]


def test_reconstruct_command_line_options(tmp_path: Path, monkeypatch) -> None:
    from taas.cli import build_parser
    from taas.service.discovery import discovery_from_args
    from taas.service.security import client_security_from_args

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    monkeypatch.delenv(SERVERS_ENV, raising=False)
    base = ["reconstruct", "--events", "e", "--out", "o"]
    direct = build_parser().parse_args(base)
    assert discovery_from_args(direct) is None  # no server anywhere: in-process
    args = build_parser().parse_args([*base, "--server", "a:1,b:2", "--server", "c:3",
                                      "--fallback", "direct", "--token-file", str(token)])
    config = discovery_from_args(args)
    assert config is not None
    assert (config.servers, config.fallback) == (("a:1", "b:2", "c:3"), "direct")
    assert client_security_from_args(args).token == "s3cret"
    monkeypatch.setenv(SERVERS_ENV, "d:4")
    assert discovery_from_args(build_parser().parse_args(base)) is not None


def test_reconstruct_without_a_ready_server_stops_clearly(tiny_sim_dir, tmp_path,
                                                          capsys) -> None:
    from taas.cli import main

    dead = _dead()
    code = main(["reconstruct", "--events", str(tiny_sim_dir), "--out", str(tmp_path / "o"),
                 "--server", dead, "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert dead in err
    assert "fallback to direct reconstruction is off" in err


# --- against real servers ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def victim(served_repo: Path) -> Iterator[object]:
    """A server of our own, to kill."""
    server = start_server(served_repo, extra_args=ONLY_THE_PIPELINE)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def events(tiny_sim_dir: Path) -> list[dict[str, np.ndarray]]:
    dataset = open_dataset(tiny_sim_dir)
    return [dataset.read(i).cells.to_tensors() for i in dataset.event_ids]


@pytest.fixture(scope="module")
def direct(tiny_sim_dir: Path) -> Pipeline:
    return Pipeline(FRONT_END, open_dataset(tiny_sim_dir).detector)


def _runner(servers: tuple[str, ...], direct: Pipeline, fallback: str = "none",
            record: dict[str, object] | None = None) -> FailoverRunner:
    return served_runner(FRONT_END, direct.stages[0].detector,
                         config=DiscoveryConfig(servers, use_env=False, fallback=fallback,
                                                probe_timeout_s=1.0),
                         record=record, retries=RETRIES)


@pytest.mark.triton
def test_picks_the_first_ready_server(triton, direct, events) -> None:
    dead = _dead()
    assert not is_ready(dead, timeout_s=1.0)
    runner = _runner((dead, triton.url), direct)
    try:
        assert runner.url == triton.url
        assert_same(runner.run(events[0]).tensors, direct.run(events[0]).tensors)
    finally:
        runner.close()
    assert runner.record["served_by"] == {triton.url: 1}


def _children(pid: int | None) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.triton
def test_kill_mid_run_fails_over_then_stops_or_falls_back(triton, victim, direct, events,
                                                          caplog, tmp_path) -> None:
    """Three clients start on the victim; it is killed between their events, its Python-backend
    stubs with it (no orphans). The one with a second server loses nothing; the one without
    stops with a clear error; the one configured to fall back reconstructs the rest in-process,
    says so in the log and its record."""
    stream = [events[i % len(events)] for i in range(6)]  # a run of six events
    fail_over = _runner((victim.url, triton.url), direct)
    stopping = _runner((victim.url, _dead()), direct)
    falling_back = _runner((victim.url, _dead()), direct, fallback="direct")
    runners = (fail_over, stopping, falling_back)
    assert all(r.url == victim.url for r in runners)
    results = {id(r): [r.run(stream[0]).tensors] for r in runners}

    stubs = _children(victim.pid)
    assert stubs  # the pipeline model's Python-backend stub
    victim.kill()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in stubs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in stubs), "a killed server left its stubs running"
    try:
        with caplog.at_level(logging.WARNING, logger="taas.service.discovery"):
            for event in stream[1:]:
                results[id(fail_over)].append(fail_over.run(event).tensors)
                results[id(falling_back)].append(falling_back.run(event).tensors)
            with pytest.raises(ServiceUnavailableError) as err:
                stopping.run(stream[1])
    finally:
        for r in runners:
            r.close()

    # zero lost events: every one of the six served (or reconstructed) and right
    for runner in (fail_over, falling_back):
        got = results[id(runner)]
        assert len(got) == len(stream)
        for tensors, event in zip(got, stream, strict=True):
            assert_same(tensors, direct.run(event).tensors)
    assert fail_over.record["served_by"] == {victim.url: 1, triton.url: 5}
    assert [f["from"] for f in fail_over.record["failovers"]] == [victim.url]
    assert fail_over.record["failovers"][0]["to"] == triton.url
    assert fail_over.record["fell_back_to_direct"] == 0

    message = str(err.value)
    assert victim.url in message
    assert "fallback to direct reconstruction is off" in message

    assert falling_back.record["fell_back_to_direct"] == 5
    assert falling_back.record["status"] == f"{FELL_BACK} for 5 of 6 event runs"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(FELL_BACK in w for w in warnings) >= 5


def test_fallback_is_recorded_in_run_json_and_labelled_in_the_report(tiny_sim_dir,
                                                                     tmp_path) -> None:
    """The workflow's served reconstruction with its server down and ``--fallback direct``:
    every event's outputs written, run.json says it fell back to direct and for how many event
    runs, and the report's label says so instead of "served"."""
    from taas.report.sections import _served_label
    from taas.workflow.cli import main

    steps = ",".join(f"{stage}/{backend}" for stage, backend in FRONT_END.steps)
    out = tmp_path / "reco"
    assert main(["reconstruct", "--events", str(tiny_sim_dir), "--pipeline", FRONT_END.name,
                 "--steps", steps, "--mode", "served", "--server-url", _dead(),
                 "--fallback", "direct", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    event_ids = open_dataset(tiny_sim_dir).event_ids
    runs = len(event_ids) + 1  # the workflow's untimed warm-up run is one of them
    assert run["service"]["fell_back_to_direct"] == runs
    assert run["service"]["status"] == f"{FELL_BACK} for {runs} of {runs} event runs"
    for event_id in event_ids:
        assert load_reco(out, event_id)
    assert FELL_BACK in _served_label(run["service"])
    assert _served_label({"fell_back_to_direct": 0, "runs": 3}) == "served (per-stage models)"
