"""The FPGA front-end kernels through AMD's tools and on a board, where those exist.

* Synthesis (skips without ``v++``/``vitis-run`` or ``vitis_hls`` on PATH): each kernel project
  written by ``backends.fpga.projects`` runs its testbench in the vendor's C simulation and is
  synthesized for the project's part; the synthesis report must exist and meet the clock.
  Expect minutes per kernel.
* Board (skips without ``xbutil`` and ``pyxrt``, or without ``TAAS_FPGA_XCLBIN``): a board is
  found, and an xclbin linked from these projects (``v++ -l``, hours, not done here) loads on
  it and holds both kernels. The kernels stream (AXI4-Stream), so driving them with data needs a
  data-mover kernel in the link; that host code is not part of taas yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from taas.optional import missing_modules

if missing_modules("fpga"):
    pytest.skip("writing the HLS projects needs hls4ml: pip install 'taas[fpga]'",
                allow_module_level=True)

from backends.fpga.projects import KERNELS, HlsProjectConfig, write_kernel_project

pytestmark = pytest.mark.fpga

UNIFIED = shutil.which("v++") and shutil.which("vitis-run")
CLASSIC = shutil.which("vitis_hls")
needs_vitis = pytest.mark.skipif(
    not (UNIFIED or CLASSIC),
    reason="AMD Vitis HLS is not on PATH (needs v++ and vitis-run, or vitis_hls)")


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False,
                            timeout=3 * 3600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-3000:]}" \
                                   f"\n{result.stderr[-3000:]}"


def _synthesis_report(project: Path) -> Path:
    reports = sorted(project.rglob("csynth.xml"))
    assert reports, f"no csynth.xml under {project}"
    return reports[0]


@needs_vitis
@pytest.mark.parametrize("kernel", [k.name for k in KERNELS])
def test_kernel_passes_vendor_csim_and_synthesizes(kernel: str, tmp_path: Path):
    """Front-end and graph kernels (the graph ones at the default section size: expect long
    synthesis runs)."""
    config = HlsProjectConfig()
    project = write_kernel_project(next(k for k in KERNELS if k.name == kernel), tmp_path, config)
    if UNIFIED:
        _run(["vitis-run", "--mode", "hls", "--csim", "--config", "hls_config.cfg",
              "--work_dir", "work"], project)
        _run(["v++", "-c", "--mode", "hls", "--config", "hls_config.cfg", "--work_dir", "work"],
             project)
    else:
        _run(["vitis_hls", "-f", "build.tcl"], project)
    root = ET.parse(_synthesis_report(project)).getroot()
    estimated = root.findtext(".//EstimatedClockPeriod")
    assert estimated is not None, "the report has no estimated clock period"
    assert float(estimated) <= config.clock_ns, (
        f"{kernel}: estimated clock {estimated} ns misses the {config.clock_ns} ns target")


@pytest.mark.skipif(shutil.which("xbutil") is None,
                    reason="no FPGA board runtime (xbutil of AMD XRT) on PATH")
def test_board_is_present_and_loads_the_front_end_xclbin():
    pyxrt = pytest.importorskip("pyxrt", reason="XRT's Python binding pyxrt is not importable")
    xclbin = os.environ.get("TAAS_FPGA_XCLBIN")
    if not xclbin:
        pytest.skip("set TAAS_FPGA_XCLBIN to an xclbin linked (v++ -l) from the projects that "
                    "backends.fpga.projects writes")
    examine = subprocess.run(["xbutil", "examine"], capture_output=True, text=True, check=False,
                             timeout=300)
    assert examine.returncode == 0, examine.stderr
    device = pyxrt.device(0)
    image = pyxrt.xclbin(xclbin)
    device.load_xclbin(image)
    names = {k.get_name() for k in image.get_kernels()}
    assert {"cluster_module", "spacepoints"} <= names, f"kernels in {xclbin}: {sorted(names)}"
