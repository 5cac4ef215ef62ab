"""The compile cache of the hls4ml blocks: zero recompilations across processes, one compile
when two processes race for the same entry, a moved or damaged entry rebuilt (never the
library's exit(1) on missing weight files)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fpga.conftest import FPGA_MISSING

if FPGA_MISSING:
    pytest.skip("the FPGA GNN needs hls4ml and torch: pip install 'taas[fpga,gnn]'",
                allow_module_level=True)

from backends.fpga.build import CACHE_ENV
from backends.fpga.hls4ml_models import CACHE_SUBDIR

pytestmark = pytest.mark.fpga

ROOT = Path(__file__).resolve().parents[2]

#: A fresh interpreter loads the whole shipped GNN chain and reports how much it compiled.
CHAIN_PROBE = """
import json
from backends.fpga.build import shared_library
from backends.fpga.config import FpgaConfig
from backends.fpga.gnn_emulation import FixedPointGnnChain
from backends.fpga.graph_kernels import kernel_build
from backends.fpga.hls4ml_models import compile_count
from taas.gnn.checkpoint import SHIPPED, load_shipped
config = FpgaConfig()
chain = FixedPointGnnChain([(n, load_shipped(n).model) for n in SHIPPED], config)
print(json.dumps({"blocks": len(chain.blocks), "compiled": compile_count(),
                  "kernels_compiled": shared_library(kernel_build(config)).compiled}))
"""

#: A fresh interpreter builds (or loads) a small MLP block and runs it on fixed inputs.
BLOCK_PROBE = """
import json
import numpy as np, torch
from backends.fpga.config import FpgaConfig
from backends.fpga.hls4ml_models import FixedPointBlock
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
block = FixedPointBlock("probe", net, FpgaConfig())
out = block(np.linspace(-1, 1, 12).reshape(3, 4))
print(json.dumps({"compiled": block.compiled, "out": out.tolist()}))
"""


def run_probe(code: str, cache: Path) -> dict:
    env = {**os.environ, CACHE_ENV: str(cache), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_chain_without_compiling(gnn_fpga_chain, gnn_fpga_cache):
    assert gnn_fpga_chain.blocks  # this session compiled (or found) every block
    report = run_probe(CHAIN_PROBE, gnn_fpga_cache)
    assert report == {"blocks": 7, "compiled": 0, "kernels_compiled": False}


def test_racing_builds_compile_once_and_a_moved_or_damaged_entry_is_rebuilt(tmp_path: Path):
    """One sequence, to pay for few fresh interpreters: two processes race for one entry (the
    lock lets one compile, the other loads its result), then the whole cache moves (the
    library's compiled-in weight path is gone: without the check before loading it would
    exit(1) and take the process with it), then an entry loses its weight files."""
    env = {**os.environ, CACHE_ENV: str(tmp_path / "a"), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", BLOCK_PROBE], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["compiled"] for r in reports) == [0, 1]
    assert reports[0]["out"] == reports[1]["out"]
    first = {**reports[0], "compiled": 1}

    shutil.move(tmp_path / "a", tmp_path / "b")
    assert run_probe(BLOCK_PROBE, tmp_path / "b") == first

    (entry,) = (p for p in (tmp_path / "b" / CACHE_SUBDIR).iterdir() if p.is_dir())
    for weights in (entry / "project/firmware/weights").glob("*.txt"):
        weights.unlink()
    assert run_probe(BLOCK_PROBE, tmp_path / "b") == first
