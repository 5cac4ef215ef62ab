"""The front-end kernels written as synthesizable HLS projects, and their testbenches.

Synthesis itself needs AMD's tools (``hardware_tests/test_fpga_synthesis.py``); here the written
projects are checked for completeness and their testbenches (hand-made inputs, expected outputs)
are compiled with g++ and run, which is the C simulation a user's ``csim_design`` would run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taas.optional import missing_modules

if missing_modules("fpga"):
    pytest.skip("the FPGA C simulation needs hls4ml's ap_types: pip install 'taas[fpga]'",
                allow_module_level=True)

from backends.fpga.projects import (
    FRONTEND_KERNELS,
    KERNELS,
    HlsProjectConfig,
    run_testbench,
    write_all_projects,
    write_frontend_projects,
)

pytestmark = pytest.mark.fpga


def test_projects_hold_sources_testbench_and_tool_scripts(tmp_path: Path):
    config = HlsProjectConfig(part="xcu250-figd2104-2L-e", clock_ns=4.0)
    projects = write_frontend_projects(tmp_path, config)
    assert [p.name for p in projects] == [k.name for k in FRONTEND_KERNELS]
    for kernel, project in zip(FRONTEND_KERNELS, projects, strict=True):
        for name in (*kernel.sources, *kernel.headers):
            assert (project / "src" / name).read_text() == (kernel.files()[0].parent /
                                                            name).read_text()
        assert (project / "tb" / kernel.testbench).is_file()
        assert not list(project.rglob("*_csim.cpp")), "host bridges are not part of a design"
        cfg = (project / "hls_config.cfg").read_text().splitlines()
        assert "part=xcu250-figd2104-2L-e" in cfg
        assert f"syn.top={kernel.top}" in cfg
        assert "clock=4ns" in cfg
        tcl = (project / "build.tcl").read_text()
        assert f"set_top {kernel.top}" in tcl
        assert "create_clock -period 4" in tcl


def test_all_projects_take_other_blocks_writers_and_are_indexed(tmp_path: Path):
    def write_gnn_block(parent: Path) -> Path:  # stands in for an hls4ml model's write()
        folder = parent / "gnn_edge_network"
        folder.mkdir()
        (folder / "build_prj.tcl").write_text("# written by hls4ml\n")
        return folder

    projects = write_all_projects(tmp_path, [write_gnn_block])
    assert [p.name for p in projects] == [*(k.name for k in KERNELS), "gnn_edge_network"]
    index = (tmp_path / "README.md").read_text()
    assert all(f"`{p.name}`" in index for p in projects)
    again = write_all_projects(tmp_path)  # rewriting replaces, never nests
    assert not (again[0] / "clustering").exists()


@pytest.mark.parametrize("bad", [{"part": "vu9p"}, {"clock_ns": 0}, {"flow_target": "quartus"}])
def test_project_config_is_validated(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        HlsProjectConfig(**bad)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [k.name for k in FRONTEND_KERNELS])
def test_written_testbench_passes_in_c_simulation(kernel: str, tmp_path: Path):
    project = next(p for p in write_frontend_projects(tmp_path) if p.name == kernel)
    result = run_testbench(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
