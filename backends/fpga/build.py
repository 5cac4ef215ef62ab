"""Build HLS C++ into shared libraries for C simulation, once, and share them across processes.

Any FPGA block written as HLS C++ (the front-end kernels here; graph kernels may use it too)
is compiled by g++ against the ``ap_types`` headers that ship inside hls4ml, exactly as hls4ml
builds its own C simulation (``-O3 -fPIC``), and loaded with ``ctypes``. ``ctypes.CDLL`` calls
release the GIL, so threads over modules or graph sections run the simulation in parallel.

Cache: a library is stored under ``cache_dir()`` with a name carrying the SHA-256 of everything
that determines its machine code: the contents of its sources and headers, the ap_types headers,
the compiler flags and the compiler's full version. Any process asking for the same build finds
the file and loads it without compiling (a Triton model instance, a Snakemake job, a test); a
changed source gives a new key and a new build. A build takes a per-key file lock
(``fcntl.flock``), compiles into a private temporary directory and publishes the library with
an atomic rename, so concurrent processes never see a half-written file and never compile the
same thing twice. A cache entry that was deleted or damaged is rebuilt, never loaded broken.

Usage (for another FPGA block)::

    build = CppBuild("my_kernel", sources=(HLS_DIR / "my_kernel.cpp",),
                     headers=(HLS_DIR / "my_kernel.h",))
    lib = load_library(build)          # ctypes.CDLL, compiled at most once per content
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from taas.errors import TaasError

log = logging.getLogger(__name__)

#: HLS C++ sources of the FPGA backend.
HLS_DIR = Path(__file__).resolve().parent / "hls"
#: Environment variable naming the cache directory (default: ``$XDG_CACHE_HOME/taas/fpga``).
CACHE_ENV = "TAAS_FPGA_CACHE"
#: hls4ml's own C-simulation flags (``templates/vivado/build_lib.sh``) plus a fixed standard;
#: HLS pragmas mean nothing to g++, hence the silenced warning.
DEFAULT_FLAGS = ("-O3", "-fPIC", "-std=c++17", "-Wno-unknown-pragmas")


class BuildError(TaasError):
    """The C++ compiler failed or is missing; the message carries its diagnostics."""


@dataclass(frozen=True)
class CppBuild:
    """One shared library: ``sources`` are compiled, ``headers`` only enter the cache key."""

    name: str
    sources: tuple[Path, ...]
    headers: tuple[Path, ...] = ()
    flags: tuple[str, ...] = DEFAULT_FLAGS
    compiler: str = "g++"

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"name must be a non-empty identifier, got {self.name!r}")
        if not self.sources:
            raise ValueError("sources must name at least one C++ file")
        missing = [str(p) for p in (*self.sources, *self.headers) if not Path(p).is_file()]
        if missing:
            raise ValueError(f"sources/headers not found: {missing}")


@dataclass(frozen=True)
class BuiltLibrary:
    """A library file in the cache, and whether this call had to compile it."""

    path: Path
    compiled: bool


def ap_types_dir() -> Path:
    """hls4ml's copy of the ``ap_int`` / ``ap_fixed`` / ``hls_stream`` headers."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the FPGA C simulation needs the ap_types headers of hls4ml: "
                         "pip install 'taas[fpga]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "templates/vivado/ap_types"
    if not (path / "ap_fixed.h").is_file():
        raise BuildError(f"hls4ml is installed but {path} has no ap_fixed.h")
    return path


def cache_dir() -> Path:
    """Where compiled libraries live (created on demand)."""
    if given := os.environ.get(CACHE_ENV):
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "taas" / "fpga"


@cache
def compiler_version(compiler: str) -> str:
    """The compiler's own description of itself (its first ``--version`` line)."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"C++ compiler {compiler!r} is not usable: {exc}") from exc
    return out.stdout.splitlines()[0].strip()


def build_key(build: CppBuild) -> str:
    """SHA-256 of everything that determines the library's machine code."""
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(f"{label}:{len(data)}:".encode())
        digest.update(data)

    feed("name", build.name.encode())
    feed("compiler", compiler_version(build.compiler).encode())
    feed("flags", "\0".join(build.flags).encode())
    for path in (*build.sources, *build.headers):
        feed(f"file {Path(path).name}", Path(path).read_bytes())
    ap_types = ap_types_dir()
    for path in sorted(ap_types.rglob("*.h")):
        feed(f"ap_types {path.relative_to(ap_types)}", path.read_bytes())
    return digest.hexdigest()


def shared_library(build: CppBuild) -> BuiltLibrary:
    """The cached library of ``build``, compiled first if no process has done so yet."""
    key = build_key(build)
    directory = cache_dir()
    path = directory / f"{build.name}-{key[:20]}.so"
    if path.is_file():
        return BuiltLibrary(path, compiled=False)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{path.stem}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be compiling this very key
        if path.is_file():
            return BuiltLibrary(path, compiled=False)
        _compile(build, path)
    return BuiltLibrary(path, compiled=True)


def load_library(build: CppBuild) -> ctypes.CDLL:
    """``ctypes.CDLL`` of the cached library; a damaged cache entry is rebuilt once."""
    built = shared_library(build)
    try:
        return ctypes.CDLL(str(built.path))
    except OSError as exc:
        if built.compiled:
            raise BuildError(f"freshly built {built.path} does not load: {exc}") from exc
        log.warning("cached %s does not load (%s): rebuilding", built.path, exc)
        built.path.unlink(missing_ok=True)
        return ctypes.CDLL(str(shared_library(build).path))


def _compile(build: CppBuild, target: Path) -> None:
    """Compile each source to an object in parallel, link, publish atomically at ``target``."""
    include = [f"-I{ap_types_dir()}", *sorted({f"-I{Path(p).parent}" for p in build.sources})]
    log.info("compiling %s (%d sources) for C simulation", build.name, len(build.sources))
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{build.name}-") as tmp:
        objects = [Path(tmp) / f"{i}-{Path(s).stem}.o" for i, s in enumerate(build.sources)]
        commands = [[build.compiler, *build.flags, *include, "-c", str(src), "-o", str(obj)]
                    for src, obj in zip(build.sources, objects, strict=True)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(_run_compiler, commands))
        linked = Path(tmp) / target.name
        _run_compiler([build.compiler, *build.flags, "-shared", *map(str, objects), "-o",
                       str(linked)])
        os.replace(linked, target)
    log.info("compiled %s -> %s", build.name, target)


def _run_compiler(command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        raise BuildError(f"C++ compiler {command[0]!r} not found on PATH")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
