"""Start the real ``tritonserver`` on a model repository, wait until it serves, stop it cleanly.

The binary, the Python backend and its stub come from the ``nvidia-pytriton`` wheel unless
``binary`` or ``$TRITONSERVER`` names another server. Three environment facts make the stub work
(found with the wheel's tritonserver 2.51 under a pyenv CPython): the running interpreter's LIBDIR
first on ``LD_LIBRARY_PATH`` (else the stub links the system libpython against our standard
library, and model initialisation dies in ``threading``), the wheel's bundled libraries next (the
stub needs their ``libcudart``), and the running interpreter's ``bin`` first on ``PATH`` (the
stub imports the packages of the first ``python3`` there, so models see taas; ``PYTHONPATH``
alone does not do it).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from taas.errors import TaasError
from taas.service.security import ServerSecurity

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ServerError(TaasError, RuntimeError):
    """The server could not be found, did not start, or died; carries the log's tail."""


def _pytriton_root() -> Path:
    """The wheel's ``tritonserver`` folder, found without importing pytriton (installed with
    --no-deps, its ``__init__`` fails on missing client dependencies we do not need)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("no tritonserver: install nvidia-pytriton (pip install --no-deps "
                          "nvidia-pytriton) or set TRITONSERVER to a server binary")
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def find_binary(binary: str | Path | None = None) -> Path:
    """``binary``, else ``$TRITONSERVER``, else ``tritonserver`` on PATH, else the wheel's."""
    for candidate in (binary, os.environ.get("TRITONSERVER"), shutil.which("tritonserver")):
        if candidate:
            path = Path(candidate)
            if not path.is_file():
                raise ServerError(f"tritonserver binary {path} does not exist")
            return path
    path = _pytriton_root() / "bin" / "tritonserver"
    if not path.is_file():
        raise ServerError(f"the nvidia-pytriton wheel has no server binary at {path}")
    return path


def prepare_backend_dir(target: Path) -> Path:
    """``target/python`` with the Python backend and the stub for the running interpreter."""
    root = _pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton ships no Python-backend stub for Python {version}")
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in (root / "backends" / "python" / "libtriton_python.so",
                   root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        shutil.copy2(source, python_dir / source.name)
    return target


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the server and its Python stubs need (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    libs = [sysconfig.get_config_var("LIBDIR") or ""]
    with contextlib.suppress(ServerError):
        libs.append(str(_pytriton_root().parent.parent / "nvidia_pytriton.libs"))
    previous = env.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + ([previous] if previous
                                                                           else []))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on ``host`` (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_prctl: Callable[..., int] | None
try:  # resolved here, not in the child: between fork and exec only a plain C call is safe
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the context manager still stops the server
    _prctl = None


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float, name: str, *,
                 group: bool = False) -> None:
    """Send ``sig`` (the program's own graceful shutdown) to a running ``process``, wait up to
    ``timeout`` seconds, then SIGKILL it if it lingers (``group``: with every process of its
    process group, see ``kill_group``)."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0f s; killing it", name, timeout)
        if group:
            kill_group(process)
        else:
            process.kill()
        process.wait()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started as the leader of its own process group, and the group: a
    killed tritonserver cannot stop its Python-backend stubs, which would otherwise live on
    as orphans holding hundreds of MB each."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM the server when its parent dies.

    Linux delivers it when the *thread* that started the server exits, so start servers from a
    thread that outlives them (the main thread in tests and ``taas serve``).
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class TritonServer:
    """A running ``tritonserver`` on loopback (by default), as a context manager.

    ``url`` is the gRPC address for clients. The server dies with this process (``PDEATHSIG``)
    so a crashed test or Ctrl-C never leaves it holding ports and memory.
    """

    def __init__(
        self,
        model_repository: str | Path,
        *,
        binary: str | Path | None = None,
        host: str = "127.0.0.1",
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        log_path: str | Path | None = None,
        ready_timeout: float = 120.0,
        security: ServerSecurity | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        if not self.model_repository.is_dir():
            raise ServerError(f"model repository {self.model_repository} does not exist")
        self.binary = find_binary(binary)
        self.host = host
        self.grpc_port = grpc_port or free_port(host)
        self.http_port = http_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self._log_path = Path(log_path) if log_path is not None else None
        self.ready_timeout = ready_timeout
        self.security = security or ServerSecurity()
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._final_log = ""

    @property
    def url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise ServerError("server not started")
        return self._log_path

    def command(self, backend_dir: Path) -> list[str]:
        args = [str(self.binary), f"--model-repository={self.model_repository}",
                f"--backend-directory={backend_dir}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}"]
        return args + self.security.server_args() + list(self.extra_args)

    def start(self) -> TritonServer:
        """Launch and block until every model is ready; ``ServerError`` with the log otherwise."""
        if self._process is not None:
            raise ServerError("server already started")
        self._workdir = tempfile.TemporaryDirectory(prefix="taas-triton-")
        backend_dir = prepare_backend_dir(Path(self._workdir.name) / "backends")
        if self._log_path is None:
            self._log_path = Path(self._workdir.name) / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %s on %s (log %s)", self.binary, self.url, self._log_path)
        with open(self._log_path, "wb") as sink:
            self._process = subprocess.Popen(
                self.command(backend_dir), stdout=sink, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=server_environment(),
                start_new_session=True,  # its own group, with its stubs: see kill_group
                preexec_fn=_die_with_parent)  # noqa: PLW1509 - one pre-resolved C call
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self, timeout: float = 2.0) -> bool:
        """Triton's HTTP readiness endpoint, as a probe sees it.

        HTTP, not gRPC: the health group stays open whatever ``security`` says, so this works
        without the token and without a client certificate, like a Kubernetes or load-balancer
        probe; Triton starts its gRPC service before its HTTP one, so HTTP ready means both.
        """
        url = f"http://{self.host}:{self.http_port}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:  # 400: up, but not ready yet
            exc.close()
            return False
        except OSError:  # refused, reset: not up
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise ServerError(f"tritonserver exited with code {code} before it was "
                                  f"ready:\n{self.log_tail()}")
            if self.is_ready():
                log.info("tritonserver ready on %s%s", self.url,
                         " (TLS)" if self.security.tls else "")
                return
            time.sleep(0.2)
        raise ServerError(f"tritonserver not ready on {self.url} after {self.ready_timeout:.0f} "
                          f"s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The server log's last lines, without the CUDA/NVML noise of a GPU-less host."""
        if self._log_path is None or not self._log_path.is_file():
            return "\n".join(self._final_log.splitlines()[-lines:]) or "(no log)"
        text = self._log_path.read_text(errors="replace").splitlines()
        noise = ("CUDA", "NVML", "DCGM", "cuda", "GPU metrics")
        kept = [line for line in text if not any(n in line for n in noise)]
        return "\n".join(kept[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (Triton's graceful shutdown), then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, signal.SIGINT, timeout, "tritonserver", group=True)
        if self._workdir is not None:
            self._final_log = self.log_tail(200)  # the default log goes with the work dir
            self._workdir.cleanup()
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL, no shutdown: what clients see when a node crashes (fault tests); its
        stubs go with it, as with a crashed node."""
        if self._process is not None and self._process.poll() is None:
            kill_group(self._process)
            self._process.wait()
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id (for signals from outside: fault tests, operators)."""
        if self._process is None:
            raise ServerError("server not started")
        return self._process.pid

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
