"""Write the FPGA blocks as HLS projects that a user with AMD Vitis HLS can synthesize.

The C simulation in taas runs the very sources written here; this module packages them for the
vendor tool. Each kernel project holds

* ``src/``: the kernel's synthesizable C++ and headers (no host bridge),
* ``tb/``: a testbench with hand-made inputs and expected outputs (exit code 0 = pass),
* ``hls_config.cfg``: a Vitis unified (2023.2+) HLS configuration
  (``vitis-run --mode hls --csim --config hls_config.cfg --work_dir work`` for C simulation,
  ``v++ -c --mode hls --config hls_config.cfg --work_dir work`` for synthesis),
* ``build.tcl``: the same for the classic ``vitis_hls -f build.tcl``.

``write_all_projects`` writes the front-end kernels and, through ``ProjectWriter`` callables,
any other block (the hls4ml GNN blocks write themselves with hls4ml's ``write()``), plus a README
indexing them. ``run_testbench`` compiles and runs a project's testbench with g++ and the ap_types
headers of hls4ml, for a check without vendor tools.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.fpga.build import DEFAULT_FLAGS, HLS_DIR, ap_types_dir

log = logging.getLogger(__name__)

#: Writes one block's project into the given parent directory and returns the project folder.
ProjectWriter = Callable[[Path], Path]


@dataclass(frozen=True)
class HlsProjectConfig:
    """Target of the written projects: ``part`` (default the VU9P of the published FPGA GNN
    tracking designs, as on an Alveo U200), clock period and the Vitis flow target."""

    part: str = "xcvu9p-flga2104-2L-e"
    clock_ns: float = 5.0
    flow_target: str = "vivado"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"x[A-Za-z0-9-]+", self.part):
            raise ValueError(f"part must be an AMD part name such as xcvu9p-flga2104-2L-e, "
                             f"got {self.part!r}")
        if not 0.5 <= self.clock_ns <= 100:
            raise ValueError(f"clock_ns must be within 0.5 .. 100 ns, got {self.clock_ns!r}")
        if self.flow_target not in ("vivado", "vitis"):
            raise ValueError(f"flow_target must be 'vivado' (IP) or 'vitis' (kernel), got "
                             f"{self.flow_target!r}")


@dataclass(frozen=True)
class KernelProject:
    """One HLS C++ kernel of ``backends/fpga/hls``: its top function and files."""

    name: str
    top: str
    sources: tuple[str, ...]
    headers: tuple[str, ...]
    testbench: str

    def files(self) -> list[Path]:
        return [HLS_DIR / f for f in (*self.sources, *self.headers, self.testbench)]


#: The front-end kernels (graph kernels may add their own ``KernelProject`` to a writer).
FRONTEND_KERNELS = (
    KernelProject("clustering", top="cluster_module", sources=("clustering.cpp",),
                  headers=("clustering.h",), testbench="testbench_clustering.cpp"),
    KernelProject("spacepoints", top="spacepoints", sources=("spacepoints.cpp",),
                  headers=("spacepoints.h", "clustering.h"),
                  testbench="testbench_spacepoints.cpp"),
)


def write_kernel_project(kernel: KernelProject, parent: Path,
                         config: HlsProjectConfig | None = None) -> Path:
    """Write ``kernel`` as ``parent/<name>/`` (replacing an older copy); returns that folder."""
    config = config or HlsProjectConfig()
    project = Path(parent) / kernel.name
    if project.exists():
        shutil.rmtree(project)
    (project / "src").mkdir(parents=True)
    (project / "tb").mkdir()
    for name in (*kernel.sources, *kernel.headers):
        shutil.copy2(HLS_DIR / name, project / "src" / name)
    shutil.copy2(HLS_DIR / kernel.testbench, project / "tb" / kernel.testbench)
    clock = f"{config.clock_ns:g}ns"
    cfg = [f"part={config.part}", "", "[hls]", f"flow_target={config.flow_target}",
           f"syn.top={kernel.top}",
           *(f"syn.file=src/{s}" for s in kernel.sources),
           "syn.cflags=-Isrc -std=c++14",
           f"tb.file=tb/{kernel.testbench}", "tb.cflags=-Isrc -std=c++14",
           f"clock={clock}", "csim.code_analyzer=0",
           "package.output.format=" + ("xo" if config.flow_target == "vitis" else "ip_catalog"),
           ""]
    (project / "hls_config.cfg").write_text("\n".join(cfg))
    tcl = [f"open_project -reset {kernel.name}_prj", f"set_top {kernel.top}",
           *(f'add_files src/{s} -cflags "-Isrc -std=c++14"' for s in kernel.sources),
           f'add_files -tb tb/{kernel.testbench} -cflags "-Isrc -std=c++14"',
           f"open_solution -reset solution1 -flow_target {config.flow_target}",
           f"set_part {config.part}", f"create_clock -period {config.clock_ns:g} -name default",
           "csim_design", "csynth_design", "exit", ""]
    (project / "build.tcl").write_text("\n".join(tcl))
    log.info("wrote HLS project %s (top %s, part %s, %s)", project, kernel.top, config.part, clock)
    return project


def write_frontend_projects(parent: Path, config: HlsProjectConfig | None = None) -> list[Path]:
    """Every front-end kernel as a project under ``parent``."""
    return [write_kernel_project(k, parent, config) for k in FRONTEND_KERNELS]


def write_all_projects(parent: Path, writers: Sequence[ProjectWriter] = (),
                       config: HlsProjectConfig | None = None) -> list[Path]:
    """The front-end kernels plus whatever ``writers`` produce (e.g. each hls4ml block's
    ``write()`` into ``parent/<block>``), indexed by ``parent/README.md``."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    config = config or HlsProjectConfig()
    projects = write_frontend_projects(parent, config)
    projects += [Path(write(parent)) for write in writers]
    lines = ["# taas FPGA blocks as HLS projects", "",
             f"Target part `{config.part}`, clock {config.clock_ns:g} ns. In each kernel "
             "folder: `vitis-run --mode hls --csim --config hls_config.cfg --work_dir work` "
             "(C simulation), `v++ -c --mode hls --config hls_config.cfg --work_dir work` "
             "(synthesis), or `vitis_hls -f build.tcl` (both, classic flow). hls4ml projects: "
             "`vitis_hls -f build_prj.tcl` as hls4ml documents.", ""]
    lines += [f"- `{p.relative_to(parent)}`" for p in projects]
    (parent / "README.md").write_text("\n".join(lines) + "\n")
    return projects


def run_testbench(project: Path, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """Compile a kernel project's ``src`` + ``tb`` with g++ and the ap_types of hls4ml, run it.

    The result carries the testbench's exit code (0 = every check passed) and its output."""
    project = Path(project)
    sources = sorted((project / "src").glob("*.cpp")) + sorted((project / "tb").glob("*.cpp"))
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "testbench"
        subprocess.run(["g++", *DEFAULT_FLAGS, f"-I{ap_types_dir()}", f"-I{project / 'src'}",
                        *map(str, sources), "-o", str(binary)], check=True, capture_output=True,
                       text=True, timeout=timeout_s)
        return subprocess.run([str(binary)], capture_output=True, text=True, check=False,
                              timeout=timeout_s)
