"""The C-simulation build cache: built once per content, loaded by any process, safe to race.

Most checks use a one-function C++ file so that they compile in about a second; the last one
asks a fresh process for the real front-end library this test session already built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taas.optional import missing_modules

if missing_modules("fpga"):
    pytest.skip("the FPGA C simulation needs hls4ml's ap_types: pip install 'taas[fpga]'",
                allow_module_level=True)

from backends.fpga.build import CACHE_ENV, BuildError, CppBuild, build_key, load_library

pytestmark = pytest.mark.fpga

ROOT = Path(__file__).resolve().parents[2]
SOURCE = 'extern "C" int answer() {{ return {value}; }}\n'

#: Run in a fresh interpreter: build (or find) the library, call it, report what happened.
PROBE = """
import json, sys
from pathlib import Path
from backends.fpga.build import CppBuild, shared_library, load_library
build = CppBuild("probe", sources=(Path(sys.argv[1]),), flags=("-O1", "-fPIC"))
built = shared_library(build)
print(json.dumps({"compiled": built.compiled, "path": str(built.path),
                  "answer": load_library(build).answer()}))
"""


def probe(source: Path, cache: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(source)], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=_env(cache), timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, CACHE_ENV: str(cache), "PYTHONPATH": str(ROOT)}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "probe.cpp"
    path.write_text(SOURCE.format(value=42))
    return path


def test_second_process_loads_without_compiling(source: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    first, second = probe(source, cache), probe(source, cache)
    assert first["compiled"]
    assert not second["compiled"]
    assert first["path"] == second["path"]
    assert first["answer"] == second["answer"] == 42


def test_concurrent_builds_compile_once(source: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    runs = [subprocess.Popen([sys.executable, "-c", PROBE, str(source)], cwd=ROOT,
                             env=_env(cache), stdout=subprocess.PIPE, text=True)
            for _ in range(3)]
    results = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in runs]
    assert sorted(r["compiled"] for r in results) == [False, False, True]
    assert {r["answer"] for r in results} == {42}
    assert len(list(cache.glob("probe-*.so"))) == 1


def test_changed_source_is_a_new_build_and_a_removed_entry_is_rebuilt(source: Path,
                                                                       tmp_path: Path):
    cache = tmp_path / "cache"
    old = probe(source, cache)
    source.write_text(SOURCE.format(value=7))
    new = probe(source, cache)
    assert new["compiled"]
    assert new["path"] != old["path"]
    assert new["answer"] == 7
    Path(new["path"]).unlink()
    again = probe(source, cache)
    assert again["compiled"]
    assert again["answer"] == 7


def test_damaged_entry_is_rebuilt_not_loaded(source: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "cache"
    path = Path(probe(source, cache)["path"])
    path.write_bytes(b"not a shared object")
    monkeypatch.setenv(CACHE_ENV, str(cache))
    lib = load_library(CppBuild("probe", sources=(source,), flags=("-O1", "-fPIC")))
    assert lib.answer() == 42


def test_key_covers_flags_and_compile_errors_are_reported(source: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    base = CppBuild("probe", sources=(source,), flags=("-O1", "-fPIC"))
    assert build_key(base) != build_key(CppBuild("probe", sources=(source,),
                                                 flags=("-O2", "-fPIC")))
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(BuildError, match=r"broken\.cpp"):
        load_library(CppBuild("broken", sources=(broken,)))


def test_front_end_library_is_reused_by_a_new_process():
    from backends.fpga.build import shared_library
    from backends.fpga.frontend import FRONTEND_BUILD, frontend_library

    frontend_library()  # built (or found) by this session, in the shared cache
    script = ("import json; from backends.fpga.build import shared_library; "
              "from backends.fpga.frontend import FRONTEND_BUILD, frontend_library; "
              "frontend_library(); "
              "print(json.dumps(shared_library(FRONTEND_BUILD).compiled))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False
    assert shared_library(FRONTEND_BUILD).path.is_file()
