"""Several ``tritonserver`` replicas behind one real gRPC load balancer (nginx), as one address.

Users who outgrow one server run N replicas of the same model repository and point clients at
one address that spreads requests over them and routes around a replica that dies. The balancer
here is nginx (``grpc_pass``, HTTP/2), because Debian packages it with the gRPC proxy built in;
its configuration is rendered from one typed source, ``LoadBalancerConfig``, whose fields map
one to one onto an Envoy cluster or a Kubernetes Service (``docs/service_cluster.md``).

nginx balances per request (each gRPC call is one HTTP/2 stream, proxied on its own upstream
connection), so consecutive calls of one client land on different replicas. That is why a client
of the balanced address must move tensors over gRPC, never through system shared memory: a region
registered on one replica is unknown to the next (``ModelClient`` switches to gRPC at the first
such refusal; ``shared_memory=False`` spares it that call).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from taas.errors import TaasError
from taas.service.security import ServerSecurity
from taas.service.server import TritonServer, _die_with_parent, free_port, stop_process

log = logging.getLogger(__name__)

#: ``grpc_next_upstream`` values nginx 1.22 accepts. (Envoy's gRPC retry condition
#: ``unavailable`` has no nginx twin: a refused or reset upstream connection is ``error``.)
NEXT_UPSTREAM_VALUES = frozenset({
    "error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504",
    "http_403", "http_404", "http_429", "non_idempotent", "off"})


class LoadBalancerError(TaasError, RuntimeError):
    """nginx is missing, refused its configuration, or did not start; carries its output."""


def _split_address(address: str, name: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name}: want host:port, got {address!r}")
    return host, int(port)


@dataclass(frozen=True)
class LoadBalancerConfig:
    """Everything the balancer does, in one place; ``render`` writes nginx's configuration.

    ``replicas``: the servers' gRPC addresses (host:port). ``listen``: the balanced address.
    ``next_upstream``: when a request moves on to the next replica: a replica that refuses the
    connection or does not accept it in ``connect_timeout_s``. nginx streams gRPC request bodies
    (it never buffers them), so a request that already reached a replica is never re-sent, even
    with ``non_idempotent``: an event in flight on a replica that crashes comes back to the
    client as UNAVAILABLE (HTTP 502), which ``ModelClient`` retries, through the balancer, on a
    live replica. ``tries``: replicas one request may try (0: all of them). ``max_fails``
    failures within ``fail_timeout_s`` take a replica out of rotation for ``fail_timeout_s``
    (nginx's passive health check).
    ``tls_certificate``/``tls_certificate_key``: serve the balanced address over TLS; the
    replicas behind it stay plain gRPC on loopback.
    """

    replicas: tuple[str, ...]
    listen: str = "127.0.0.1:8001"
    next_upstream: tuple[str, ...] = ("error", "timeout")
    tries: int = 0
    max_fails: int = 1
    fail_timeout_s: int = 10
    connect_timeout_s: float = 2.0
    request_timeout_s: int = 300
    keepalive: int = 32
    worker_processes: int = 1
    tls_certificate: Path | None = None
    tls_certificate_key: Path | None = None
    #: nginx's worker user; only meaningful (and only written) when nginx starts as root
    user: str | None = None
    upstream_name: str = "triton_replicas"

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError("replicas: need at least one server address")
        for address in self.replicas:
            _split_address(address, "replicas")
        _split_address(self.listen, "listen")
        unknown = set(self.next_upstream) - NEXT_UPSTREAM_VALUES
        if unknown or not self.next_upstream:
            raise ValueError(f"next_upstream: {sorted(unknown) or 'empty'} not among nginx's "
                             f"{sorted(NEXT_UPSTREAM_VALUES)}")
        for name in ("tries", "max_fails"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("fail_timeout_s", "connect_timeout_s", "request_timeout_s",
                     "worker_processes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.keepalive < 0:
            raise ValueError(f"keepalive: must be >= 0, got {self.keepalive}")
        if (self.tls_certificate is None) != (self.tls_certificate_key is None):
            raise ValueError("tls_certificate, tls_certificate_key: give both or neither")
        if not self.upstream_name.replace("_", "").isalnum():
            raise ValueError(f"upstream_name: letters, digits and _ only, got "
                             f"{self.upstream_name!r}")

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None

    def render(self, prefix: Path) -> str:
        """nginx's configuration; every file it writes (pid, logs, temp) lies under ``prefix``."""
        host, port = _split_address(self.listen, "listen")
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host.strip("[]")).version == 6:
                host = f"[{host.strip('[]')}]"
        servers = "\n".join(f"        server {address} max_fails={self.max_fails} "
                            f"fail_timeout={self.fail_timeout_s}s;" for address in self.replicas)
        keepalive = f"        keepalive {self.keepalive};\n" if self.keepalive else ""
        tls = (f"        ssl_certificate {self.tls_certificate};\n"
               f"        ssl_certificate_key {self.tls_certificate_key};\n" if self.tls else "")
        user = f"user {self.user};\n" if self.user else ""
        temp = "\n".join(f"    {kind}_temp_path {prefix / 'temp' / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""\
# generated by taas.service.cluster.LoadBalancerConfig: edit that, not this file
{user}worker_processes {self.worker_processes};
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format replicas '$remote_addr "$request" $status upstream=$upstream_addr '
                        'upstream_status=$upstream_status time=$request_time';
    access_log {prefix / 'access.log'} replicas;
{temp}
    client_max_body_size 0;
    upstream {self.upstream_name} {{
{servers}
{keepalive}    }}
    server {{
        listen {host}:{port}{' ssl' if self.tls else ''} http2;
{tls}        location / {{
            grpc_pass grpc://{self.upstream_name};
            grpc_next_upstream {' '.join(self.next_upstream)};
            grpc_next_upstream_tries {self.tries};
            grpc_connect_timeout {self.connect_timeout_s:g}s;
            grpc_send_timeout {self.request_timeout_s}s;
            grpc_read_timeout {self.request_timeout_s}s;
        }}
    }}
}}
"""


def find_nginx(binary: str | Path | None = None) -> Path:
    """``binary``, else ``$NGINX``, else ``nginx`` on PATH, else Debian's ``/usr/sbin/nginx``."""
    for candidate in (binary, os.environ.get("NGINX")):
        if candidate:
            path = Path(candidate)
            if not path.is_file():
                raise LoadBalancerError(f"nginx binary {path} does not exist")
            return path
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise LoadBalancerError(
            "nginx not found: the load balancer in front of the replicas is nginx with its "
            "gRPC proxy (Debian/Ubuntu: `apt-get install nginx`), or set NGINX to a binary")
    return Path(found)


class NginxBalancer:
    """nginx in the foreground (``daemon off``) with its own prefix directory; dies with us."""

    def __init__(self, config: LoadBalancerConfig, prefix: str | Path, *,
                 binary: str | Path | None = None) -> None:
        self.config = config
        self.prefix = Path(prefix).resolve()
        self.binary = find_nginx(binary)
        self.conf_path = self.prefix / "nginx.conf"
        self._process: subprocess.Popen[bytes] | None = None

    def _args(self, *extra: str) -> list[str]:
        return [str(self.binary), "-p", f"{self.prefix}/", "-e", str(self.prefix / "error.log"),
                "-c", str(self.conf_path), "-g", "daemon off;", *extra]

    def write_config(self) -> Path:
        """Render the configuration and have ``nginx -t`` accept it before anyone uses it."""
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "temp" / kind).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config.render(self.prefix))
        test = subprocess.run(self._args("-t"), capture_output=True, text=True, check=False)
        if test.returncode != 0:
            raise LoadBalancerError(f"nginx rejected the generated {self.conf_path} "
                                    f"(`nginx -t`):\n{(test.stdout + test.stderr).strip()}")
        return self.conf_path

    def start(self, ready_timeout: float = 20.0) -> NginxBalancer:
        self.write_config()
        host, port = _split_address(self.config.listen, "listen")
        log.info("starting nginx on %s for %s", self.config.listen, ", ".join(self.config.replicas))
        with open(self.prefix / "stderr.log", "wb") as sink:
            self._process = subprocess.Popen(
                self._args(), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)  # noqa: PLW1509 - one pre-resolved C call
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise LoadBalancerError(f"nginx exited before listening on {self.config.listen}:"
                                        f"\n{self.error_log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (host.strip("[]"), port), timeout=1.0):
                return self
            time.sleep(0.05)
        self.stop()
        raise LoadBalancerError(f"nginx not listening on {self.config.listen} after "
                                f"{ready_timeout:.0f} s:\n{self.error_log_tail()}")

    def reload(self, config: LoadBalancerConfig) -> None:
        """Apply a new configuration without dropping requests (nginx's SIGHUP)."""
        if self._process is None:
            raise LoadBalancerError("nginx not started")
        previous, self.config = self.config, config
        try:
            self.write_config()
        except LoadBalancerError:
            self.config = previous
            self.conf_path.write_text(previous.render(self.prefix))
            raise
        self._process.send_signal(signal.SIGHUP)

    def error_log_tail(self, lines: int = 20) -> str:
        """The last lines nginx wrote to its error log and to its standard error."""
        text: list[str] = []
        for name in ("stderr.log", "error.log"):
            path = self.prefix / name
            text += path.read_text(errors="replace").splitlines() if path.is_file() else []
        return "\n".join(text[-lines:])

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nginx's fast shutdown: master and workers), then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, signal.SIGTERM, timeout, "nginx")


class TritonCluster:
    """N ``tritonserver`` replicas of one model repository behind nginx, as a context manager.

    ``url`` is the balanced gRPC address; ``replica_urls`` the servers' own. ``models``: serve
    only these models of the repository (default: all of them). Other keywords are
    ``LoadBalancerConfig`` fields (``tries``, ``max_fails``, ...). ``security``: the replicas'
    token (``ServerSecurity`` without certificates: TLS is the balancer's, ``tls``; the replicas
    stay plain gRPC on loopback behind it, and nginx passes the client's token header through
    to them untouched). Replicas start one after the other from the calling thread (their
    ``PDEATHSIG`` is bound to it), so a crash or Ctrl-C takes every server and nginx down with
    this process.
    """

    def __init__(self, model_repository: str | Path, replicas: int = 2, *,
                 host: str = "127.0.0.1", port: int | None = None,
                 tls: tuple[str | Path, str | Path] | None = None,
                 models: Sequence[str] = (), log_dir: str | Path | None = None,
                 ready_timeout: float = 300.0, nginx: str | Path | None = None,
                 security: ServerSecurity | None = None, **balancer: Any) -> None:
        if replicas < 1:
            raise ValueError(f"replicas: need at least 1, got {replicas}")
        if security is not None and security.tls:
            raise ValueError("security: the replicas take only the token; TLS goes on the "
                             "balancer (tls=(certificate, key))")
        self.security = security
        if tls is not None and not all(tls):
            raise ValueError("tls: give the certificate and its key")
        self.model_repository = Path(model_repository)
        self.replicas = replicas
        self.host = host
        self.port = port
        self.tls = tls
        self.models = tuple(models)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.ready_timeout = ready_timeout
        self.nginx_binary = find_nginx(nginx)  # fail before starting any server
        self.balancer_options = balancer
        self.servers: list[TritonServer] = []
        self.removed: set[int] = set()
        self.balancer: NginxBalancer | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        if self.balancer is None:
            raise LoadBalancerError("cluster not started")
        return self.balancer.config.listen

    @property
    def replica_urls(self) -> list[str]:
        """Every replica's own gRPC address, removed ones included (index = replica number)."""
        return [server.url for server in self.servers]

    def balancer_config(self) -> LoadBalancerConfig:
        """The balancer over the replicas still in service."""
        live = tuple(s.url for i, s in enumerate(self.servers) if i not in self.removed)
        cert, key = (Path(self.tls[0]).resolve(), Path(self.tls[1]).resolve()) if self.tls \
            else (None, None)
        listen = f"{self.host}:{self.port or free_port(self.host)}" if self.balancer is None \
            else self.balancer.config.listen
        return LoadBalancerConfig(
            replicas=live, listen=listen, tls_certificate=cert, tls_certificate_key=key,
            user=pwd.getpwuid(0).pw_name if os.geteuid() == 0 else None,
            **self.balancer_options)

    def _model_args(self) -> tuple[str, ...]:
        """Load only ``models`` when given (each replica starts faster with fewer models)."""
        if not self.models:
            return ()
        return ("--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models))

    def start(self) -> TritonCluster:
        self._workdir = tempfile.TemporaryDirectory(prefix="taas-cluster-")
        try:
            for i in range(self.replicas):
                log_path = None if self.log_dir is None else self.log_dir / f"replica{i}.log"
                server = TritonServer(self.model_repository, log_path=log_path,
                                      ready_timeout=self.ready_timeout,
                                      security=self.security, extra_args=self._model_args())
                self.servers.append(server)
                server.start()
            prefix = Path(self._workdir.name) / "nginx"
            if self.log_dir is not None:
                prefix = self.log_dir / "nginx"
            prefix.mkdir(parents=True, exist_ok=True)
            self.balancer = NginxBalancer(self.balancer_config(), prefix,
                                          binary=self.nginx_binary)
            self.balancer.start()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("cluster of %d replicas behind %s", self.replicas, self.url)
        return self

    def _wait_ready(self) -> None:
        """The balanced address answers gRPC readiness (through nginx, from some replica)."""
        if self.tls:  # a self-signed listener: the TCP check in NginxBalancer.start suffices
            return
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        deadline = time.monotonic() + 30.0
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if client.is_server_ready(client_timeout=2.0):
                        return
                time.sleep(0.1)
        finally:
            client.close()
        raise LoadBalancerError(f"no replica answers through {self.url}:\n"
                                f"{self.balancer.error_log_tail() if self.balancer else ''}")

    def remove_replica(self, index: int, *, reconfigure: bool = False) -> None:
        """Kill replica ``index`` at once (SIGINT then SIGKILL, as a crashed node vanishes).

        nginx notices on the next request it sends there (connection refused), passes that
        request to another replica and keeps the dead one out for ``fail_timeout_s``; requests
        in flight on it fail with UNAVAILABLE for their client to retry (see
        ``LoadBalancerConfig``). With ``reconfigure`` the balancer is also reloaded without it.
        """
        if not 0 <= index < len(self.servers) or index in self.removed:
            raise ValueError(f"index: no replica {index} in service "
                             f"(replicas {len(self.servers)}, removed {sorted(self.removed)})")
        if len(self.removed) + 1 == len(self.servers):
            raise ValueError("index: cannot remove the last replica in service")
        log.info("removing replica %d (%s)", index, self.servers[index].url)
        self.servers[index].stop(timeout=0.0)
        self.removed.add(index)
        if reconfigure and self.balancer is not None:
            self.balancer.reload(self.balancer_config())

    @property
    def running(self) -> bool:
        """nginx and every replica still in service are up."""
        return (self.balancer is not None and self.balancer.running
                and all(s.running for i, s in enumerate(self.servers) if i not in self.removed))

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for server in self.servers:
            server.stop()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> TritonCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
