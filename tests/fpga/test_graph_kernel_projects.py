"""The GNN graph kernels written as synthesizable HLS projects, and their testbench.

Each top of ``hls/graph_kernels_top.cpp`` is a project typed and sized by an ``FpgaConfig``
through its cflags. The testbench (expected values from plain double arithmetic) is compiled
with g++ and the project's own defines and run, as a user's ``csim_design`` would; compiled with
a perturbed expectation it must fail, so the check is shown able to fail. Synthesis needs AMD's
tools (``hardware_tests/``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taas.optional import missing_modules

if missing_modules("fpga"):
    pytest.skip("the FPGA C simulation needs hls4ml's ap_types: pip install 'taas[fpga]'",
                allow_module_level=True)

from backends.fpga.build import HLS_DIR
from backends.fpga.config import FpgaConfig
from backends.fpga.projects import (
    GRAPH_KERNELS,
    KERNELS,
    HlsProjectConfig,
    run_testbench,
    write_all_projects,
    write_graph_kernel_projects,
)

pytestmark = pytest.mark.fpga

#: Not the defaults, so that a passing testbench shows the project's defines reached g++.
SMALL = FpgaConfig(data="ap_fixed<16,6>", section_nodes=256, section_edges=1024)


@pytest.fixture(scope="module")
def gather_project(tmp_path_factory: pytest.TempPathFactory, gnn_fpga_cache: Path) -> Path:
    """One project, its sources compiled once into the session's FPGA compile cache."""
    projects = write_graph_kernel_projects(tmp_path_factory.mktemp("graph_projects"), fpga=SMALL)
    return next(p for p in projects if p.name == "gnn_gather_edges")


def test_each_top_is_a_project_with_its_sources_and_config_defines(tmp_path: Path):
    config = HlsProjectConfig(clock_ns=4.0)
    projects = write_graph_kernel_projects(tmp_path, config, SMALL)
    assert [p.name for p in projects] == [k.name for k in GRAPH_KERNELS]
    top_source = (HLS_DIR / "graph_kernels_top.cpp").read_text()
    for kernel, project in zip(GRAPH_KERNELS, projects, strict=True):
        assert re.search(rf"^int {kernel.top}\(", top_source, re.MULTILINE), kernel.top
        for name in (*kernel.sources, *kernel.headers):
            assert (project / "src" / name).read_text() == (HLS_DIR / name).read_text()
        assert not (project / "src" / "graph_kernels.cpp").exists(), \
            "the ctypes host bridge is not part of a design"
        assert (project / "tb" / "testbench_graph_kernels.cpp").is_file()
        cfg = (project / "hls_config.cfg").read_text().splitlines()
        assert f"syn.top={kernel.top}" in cfg
        assert "syn.file=src/graph_kernels_top.cpp" in cfg
        assert "clock=4ns" in cfg
        syn_line = next(line for line in cfg if line.startswith("syn.cflags="))
        syn_flags = syn_line.partition("=")[2].split()
        for define in ("-DTAAS_DATA_W=16", "-DTAAS_DATA_I=6", "-DTAAS_AGG_W=20",
                       "-DTAAS_SECTION_NODES=256", "-DTAAS_SECTION_EDGES=1024"):
            assert define in syn_flags
        assert "tb.cflags=" + syn_line.partition("=")[2] in cfg  # testbench sees the same types
        assert "-DTAAS_VITIS_KERNEL" not in syn_flags  # ap_memory / ap_ctrl_hs ports
        tcl = (project / "build.tcl").read_text()
        assert f"set_top {kernel.top}" in tcl
        assert "-DTAAS_SECTION_EDGES=1024" in tcl


def test_vitis_kernel_flow_selects_the_axi_interfaces(tmp_path: Path):
    project = write_graph_kernel_projects(tmp_path, HlsProjectConfig(flow_target="vitis"))[0]
    cfg = (project / "hls_config.cfg").read_text()
    assert "-DTAAS_VITIS_KERNEL" in cfg
    assert "-DTAAS_SECTION_NODES=4096" in cfg  # FpgaConfig's default section


def test_all_projects_hold_every_kernel(tmp_path: Path):
    projects = write_all_projects(tmp_path, fpga=SMALL)
    assert [p.name for p in projects] == [k.name for k in KERNELS]
    assert {k.name for k in GRAPH_KERNELS} <= {p.name for p in projects}
    index = (tmp_path / "README.md").read_text()
    assert all(f"`{k.name}`" in index for k in GRAPH_KERNELS)
    assert "data `ap_fixed<16,6>`" in index
    assert "256 nodes / 1024 edges" in index
    aggregate = (tmp_path / "gnn_node_aggregate" / "hls_config.cfg").read_text()
    assert "-DTAAS_SECTION_NODES=256" in aggregate
    assert "-DTAAS_SECTION_NODES" not in (tmp_path / "clustering" / "hls_config.cfg").read_text()


def test_testbench_passes_with_the_projects_types_and_section(gather_project: Path):
    result = run_testbench(gather_project, timeout_s=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed (section 256 nodes / 1024 edges, data ap_fixed<16,6>)" \
        in result.stdout


def test_testbench_fails_when_an_expected_value_is_wrong(gather_project: Path):
    result = run_testbench(gather_project, timeout_s=300,
                           extra_flags=["-DTAAS_TB_PERTURB_LSB=2"])
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL:")]
    # exactly the one perturbed value of each kernel, no more
    assert [line.split(" row")[0] for line in failed] == [
        "FAIL: gather h[src]", "FAIL: aggregation", "FAIL: residual", "FAIL: layernorm+relu"]
    assert "4 check(s) failed" in result.stdout
