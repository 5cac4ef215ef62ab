"""Find a ready Triton server, fail over when it dies mid-run, fall back to direct only if told.

Where servers come from, in this order, duplicates dropped: the configuration's list, the
``TAAS_SERVERS`` environment variable (comma-separated ``host:port``), and a discovery file that
a cluster writes (JSON ``{"servers": ["host:port", ...]}``: what a Kubernetes endpoints watcher,
a Slurm prolog or ``taas serve`` on several nodes can produce without taas knowing about them).

A client takes the first candidate that answers Triton's readiness RPC (the health group, open
without a token so that probes need no secret). When its server dies mid-run, the event that
failed is sent once more to the next ready server. That retry is safe because every taas model
is stateless per event (no sequence batching, no state carried between requests): a request that
the dead server may or may not have finished has no side effect to duplicate, and its outputs
are only ever written by the client, once. A second failure of the same event is not retried
again: something is wrong beyond one dead node.

When no server is ready the run stops with an error naming every candidate, unless the
configuration says ``fallback: direct``: then the event is reconstructed in-process (what SONIC
calls the local fallback), logged at WARNING, counted, and the run record says "fell back to
direct" with the number of events, so no report can pass fallback events off as served ones.
Before each fallback event the candidates are probed again, so a restarted server takes over.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from taas.detector.detector import Detector
from taas.errors import InputError
from taas.pipeline.runner import Pipeline, PipelineResult
from taas.pipeline.spec import PipelineSpec
from taas.service.client import (
    ModelNotServedError,
    ServiceError,
    ServiceUnavailableError,
    TokenRejectedError,
    make_pipeline,
    unreachable,
)
from taas.service.security import ClientSecurity, resolve

log = logging.getLogger(__name__)

#: Environment variable with comma-separated ``host:port`` candidates.
SERVERS_ENV = "TAAS_SERVERS"
#: ``none``: no server ready stops the run; ``direct``: reconstruct in-process, labelled.
FALLBACKS = ("none", "direct")
FELL_BACK = "fell back to direct"


def parse_address(text: str, where: str = "server") -> str:
    """``host:port`` (IPv6 as ``[addr]:port``), stripped; ``ValueError`` naming ``where``."""
    address = text.strip()
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{where}: {text!r} is not host:port")
    return address


@dataclass(frozen=True)
class DiscoveryConfig:
    """Where a client looks for servers and what it does when none is ready.

    ``servers``: candidates in order of preference; ``discovery_file``: a cluster-written JSON;
    ``use_env``: also read ``$TAAS_SERVERS``; ``fallback``: one of ``FALLBACKS``;
    ``probe_timeout_s``: how long a readiness probe may take.
    """

    servers: tuple[str, ...] = ()
    discovery_file: Path | None = None
    use_env: bool = True
    fallback: str = "none"
    probe_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", tuple(parse_address(s, "servers")
                                                  for s in self.servers))
        if self.discovery_file is not None:
            object.__setattr__(self, "discovery_file", Path(self.discovery_file))
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback: {self.fallback!r} is not one of {', '.join(FALLBACKS)}")
        if not self.probe_timeout_s > 0:
            raise ValueError(f"probe_timeout_s: must be > 0, got {self.probe_timeout_s}")


def read_discovery_file(path: str | Path) -> list[str]:
    """The ``servers`` of a discovery file; ``InputError`` naming the file when malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"cannot read the discovery file: {exc.strerror}", path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg} at line {exc.lineno}", path=path) from None
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        raise InputError('want {"servers": ["host:port", ...]}', path=path, column="servers")
    try:
        return [parse_address(s, "servers") for s in servers]
    except ValueError as exc:
        raise InputError(str(exc), path=path, column="servers") from None


def candidates(config: DiscoveryConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """Every candidate server in preference order (config, environment, file), no repeats."""
    env = os.environ if env is None else env
    found = list(config.servers)
    if config.use_env and env.get(SERVERS_ENV, "").strip():
        try:
            found += [parse_address(s, SERVERS_ENV) for s in env[SERVERS_ENV].split(",")
                      if s.strip()]
        except ValueError as exc:
            raise InputError(str(exc)) from None
    if config.discovery_file is not None:
        found += read_discovery_file(config.discovery_file)
    return list(dict.fromkeys(found))


def probe(url: str, security: ClientSecurity | None = None, timeout_s: float = 2.0,
          ) -> str | None:
    """``None`` when ``url`` answers Triton's server-ready RPC with "ready" within
    ``timeout_s``, else why not (with a TLS hint where the failure looks like a handshake)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    security = resolve(security)
    client = grpcclient.InferenceServerClient(url, **security.grpc_options())
    try:
        if client.is_server_ready(headers=security.headers(), client_timeout=timeout_s):
            return None
        return "up but not ready"
    except InferenceServerException as exc:
        return str(unreachable(url, security, exc.message() or str(exc)))
    except Exception as exc:  # any other failure also means "not this one"
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


def is_ready(url: str, security: ClientSecurity | None = None, timeout_s: float = 2.0) -> bool:
    """Whether ``url`` answers Triton's server-ready RPC with "ready" within ``timeout_s``."""
    return probe(url, security, timeout_s) is None


class ServedRunner(Protocol):
    """What a failover runner drives on one server (``RemotePipeline``, served stages)."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> PipelineResult: ...

    def close(self) -> None: ...


class DirectRunner(Protocol):
    def run(self, inputs: Mapping[str, np.ndarray]) -> PipelineResult: ...


@dataclass
class FailoverRecord:
    """What happened, for run.json and the report: who served how many event runs, every
    failover, and how many runs fell back to direct (never silent). ``runs`` counts every
    ``run`` call, so an untimed warm-up run of ``reconstruct`` is one of them."""

    servers: list[str]
    fallback: str
    served_by: dict[str, int] = field(default_factory=dict)
    failovers: list[dict[str, Any]] = field(default_factory=list)
    fell_back_to_direct: int = 0
    runs: int = 0
    models: list[str] = field(default_factory=list)  # the served models the runs called

    def as_dict(self) -> dict[str, Any]:
        status = "served"
        if self.fell_back_to_direct:
            status = f"{FELL_BACK} for {self.fell_back_to_direct} of {self.runs} event runs"
        elif self.failovers:
            status = f"served, {len(self.failovers)} failover(s)"
        return {"status": status, "servers": self.servers, "fallback": self.fallback,
                "served_by": dict(self.served_by), "failovers": list(self.failovers),
                "fell_back_to_direct": self.fell_back_to_direct, "runs": self.runs,
                "models": list(self.models)}


class FailoverRunner:
    """Runs events on the first ready server of ``servers``, failing over as described in the
    module docstring; ``record`` (a dict, updated after every event) is what run.json gets."""

    def __init__(self, servers: Sequence[str], connect: Callable[[str], ServedRunner], *,
                 security: ClientSecurity | None = None, probe_timeout_s: float = 2.0,
                 direct: Callable[[], DirectRunner] | None = None,
                 record: dict[str, Any] | None = None) -> None:
        if not servers:
            raise InputError("no Triton server given: list some (servers, --server, "
                             f"${SERVERS_ENV} or a discovery file)")
        self.servers = list(servers)
        self._connect = connect
        self.security, self.probe_timeout_s = resolve(security), probe_timeout_s
        self._make_direct = direct
        self._direct: DirectRunner | None = None
        self._runner: ServedRunner | None = None
        self._not_ready: dict[str, str] = {}  # why each candidate was passed over, last probe
        self._missing: dict[str, ModelNotServedError] = {}  # ready, but without our model
        self.url: str | None = None
        self._log = FailoverRecord(self.servers, "direct" if direct else "none")
        self.record = {} if record is None else record
        self._publish()
        self._attach(start=0)

    # --- public -----------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, np.ndarray]) -> PipelineResult:
        """One event: on the current server, once more on the next ready one if that dies."""
        event = self._log.runs
        self._log.runs += 1
        try:
            for attempt in range(2):
                if self._runner is None:
                    self._attach(start=0)
                runner, url = self._runner, self.url
                if runner is None or url is None:
                    break
                try:
                    result = runner.run(inputs)
                except TokenRejectedError:
                    raise
                except ServiceError as exc:
                    if isinstance(exc, ServiceUnavailableError) or not is_ready(
                            url, self.security, self.probe_timeout_s):
                        self._fail_over(event, exc, retrying=attempt == 0)
                        continue
                    raise  # the server is fine: the event itself was refused
                self._log.served_by[url] = self._log.served_by.get(url, 0) + 1
                return result
            return self._run_direct(event, inputs)
        finally:
            self._publish()

    @property
    def models(self) -> list[str]:
        """The served models the runs called (run.json's ``served_models``)."""
        return list(self._log.models)

    def close(self) -> None:
        if self._log.fell_back_to_direct:
            log.warning("%s for %d of %d event runs", FELL_BACK, self._log.fell_back_to_direct,
                        self._log.runs)
        self._detach()

    # --- internals --------------------------------------------------------------------------
    def _publish(self) -> None:
        self.record.clear()
        self.record.update(self._log.as_dict())

    def _attach(self, start: int) -> bool:
        """Connect to the first ready server from ``start`` on (wrapping); False if none."""
        order = self.servers[start:] + self.servers[:start]
        for url in order:
            reason = probe(url, self.security, self.probe_timeout_s)
            if reason is not None:
                self._not_ready[url] = reason
                self._missing.pop(url, None)
                log.debug("%s passed over: %s", url, reason)
                continue
            try:
                self._runner = self._connect(url)
            except TokenRejectedError:
                raise
            except ServiceError as exc:  # ready but unusable (models missing, died again)
                self._not_ready[url] = str(exc)
                if isinstance(exc, ModelNotServedError):
                    self._missing[url] = exc
                log.warning("skipping %s: %s", url, exc)
                continue
            self._missing.pop(url, None)
            self.url = url
            models = getattr(self._runner, "models", ())
            self._log.models = list(dict.fromkeys([*self._log.models, *models]))
            log.info("using the Triton server at %s", url)
            return True
        return False

    def _detach(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner, self.url = None, None

    def _fail_over(self, event: int, exc: Exception, *, retrying: bool) -> None:
        dead = self.url
        self._detach()
        start = (self.servers.index(dead) + 1) if dead in self.servers else 0
        found = self._attach(start) if retrying else False
        self._log.failovers.append({"event": event, "from": dead, "to": self.url,
                                    "error": str(exc)})
        log.warning("Triton server %s failed during event %d (%s); %s", dead, event, exc,
                    f"retrying it on {self.url}" if found else "no other server takes it")

    def _run_direct(self, event: int, inputs: Mapping[str, np.ndarray]) -> PipelineResult:
        if self._make_direct is None and set(self._missing) >= set(self.servers):
            # every server is up and lacks the model: say that, not "no server is ready"
            first = self._missing[self.servers[0]]
            others = (f" (the other servers, {', '.join(self.servers[1:])}, lack it too)"
                      if len(self.servers) > 1 else "")
            raise ModelNotServedError(f"{first}{others}")
        if self._make_direct is None:
            why = "; ".join(f"{url}: {self._not_ready.get(url, 'failed')}"
                            for url in self.servers)
            raise ServiceUnavailableError(
                f"no Triton server is ready among {', '.join(self.servers)} for event run "
                f"{event}, and fallback to direct reconstruction is off (fallback: direct "
                f"enables it). Last probes: {why}")
        if self._direct is None:
            self._direct = self._make_direct()
        self._log.fell_back_to_direct += 1
        log.warning("no Triton server is ready among %s: event %d reconstructed in-process "
                    "(%s, %d so far)", ", ".join(self.servers), event, FELL_BACK,
                    self._log.fell_back_to_direct)
        return self._direct.run(inputs)


def served_runner(spec: PipelineSpec, detector: Detector, *, config: DiscoveryConfig,
                  mode: str = "served-pipeline", security: ClientSecurity | None = None,
                  record: dict[str, Any] | None = None,
                  env: Mapping[str, str] | None = None, **options: Any) -> FailoverRunner:
    """A ``reconstruct`` factory: ``spec`` served (``mode`` as in ``make_pipeline``) by the
    candidates of ``config``, with its fallback; ``record`` receives the ``FailoverRecord``."""

    def connect(url: str) -> ServedRunner:
        # served modes only: every one of them has close()
        return cast(ServedRunner, make_pipeline(spec, None, mode=mode, url=url,
                                                security=security, **options))

    security = resolve(security)
    direct = (lambda: Pipeline(spec, detector)) if config.fallback == "direct" else None
    return FailoverRunner(candidates(config, env), connect, security=security,
                          probe_timeout_s=config.probe_timeout_s, direct=direct, record=record)


def add_discovery_args(parser: argparse.ArgumentParser) -> None:
    """``--server`` (repeatable, comma-separated), ``--discovery-file`` and ``--fallback``."""
    group = parser.add_argument_group("servers")
    group.add_argument("--server", action="append", default=[], metavar="HOST:PORT[,...]",
                       help="reconstruct through these tritonservers (gRPC; repeatable, first "
                            f"ready one used, the next on failure; ${SERVERS_ENV} adds more, "
                            "or alone selects served mode) "
                            "instead of in-process; models from taas model-repo build")
    group.add_argument("--discovery-file", type=Path, metavar="JSON",
                       help='servers from a file a cluster writes: {"servers": ["host:port"]}')
    group.add_argument("--fallback", choices=FALLBACKS, default="none",
                       help="when no server is ready: stop (none, default) or reconstruct "
                            "in-process (direct; logged, and run.json says 'fell back to "
                            "direct' with the number of events)")


def discovery_from_args(args: argparse.Namespace) -> DiscoveryConfig | None:
    """The discovery configuration, or ``None`` when no server was asked for (direct run)."""
    servers = [s for text in args.server for s in text.split(",") if s.strip()]
    if not servers and args.discovery_file is None and not os.environ.get(SERVERS_ENV):
        return None
    try:
        return DiscoveryConfig(tuple(servers), args.discovery_file, fallback=args.fallback)
    except ValueError as exc:
        raise InputError(str(exc)) from None
