"""Write the FPGA blocks as HLS projects that a user with AMD Vitis HLS can synthesize.

The C simulation in taas runs the very sources written here; this module packages them for the
vendor tool. Each kernel project holds

* ``src/``: the kernel's synthesizable C++ and headers (no host bridge),
* ``tb/``: a testbench with hand-made inputs and expected outputs (exit code 0 = pass),
* ``hls_config.cfg``: a Vitis unified (2023.2+) HLS configuration
  (``vitis-run --mode hls --csim --config hls_config.cfg --work_dir work`` for C simulation,
  ``v++ -c --mode hls --config hls_config.cfg --work_dir work`` for synthesis),
* ``build.tcl``: the same for the classic ``vitis_hls -f build.tcl``.

``KERNELS`` lists every kernel of our own: the front end (``FRONTEND_KERNELS``: clustering, space
points) and the GNN graph kernels (``GRAPH_KERNELS``: gather, aggregation, residual add,
LayerNorm + ReLU, one project per top of ``hls/graph_kernels_top.cpp``, all checked by the one
testbench ``hls/testbench_graph_kernels.cpp``). The graph kernels' section size and fixed-point
types are compile-time constants: their projects' cflags define them from the ``FpgaConfig``
given (``TAAS_DATA_W`` ... ``TAAS_SECTION_EDGES``, the same defines as the C simulation's build,
``backends.fpga.graph_kernels.kernel_build``), so the synthesized design has the arithmetic the
emulation ran. ``write_all_projects`` writes every kernel and, through ``ProjectWriter``
callables, any other block (the hls4ml GNN blocks write themselves with hls4ml's ``write()``),
plus a README indexing them. ``run_testbench`` compiles and runs a project's testbench with g++,
the ap_types headers of hls4ml and the project's own defines, for a check without vendor tools
(the project's sources through the backend's compile cache).
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.fpga.build import DEFAULT_FLAGS, HLS_DIR, CppBuild, ap_types_dir, shared_library
from backends.fpga.config import FpgaConfig
from backends.fpga.graph_kernels import kernel_build

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
    """One HLS C++ kernel of ``backends/fpga/hls``: its top function and files.

    ``fpga_typed``: the kernel's types and array sizes come from an ``FpgaConfig`` (the graph
    kernels), so its project's cflags carry that config's defines."""

    name: str
    top: str
    sources: tuple[str, ...]
    headers: tuple[str, ...]
    testbench: str
    fpga_typed: bool = False

    def files(self) -> list[Path]:
        return [HLS_DIR / f for f in (*self.sources, *self.headers, self.testbench)]

    def defines(self, config: HlsProjectConfig, fpga: FpgaConfig) -> tuple[str, ...]:
        """The ``-D`` flags this kernel's project compiles with (synthesis and testbench)."""
        typed = tuple(f for f in kernel_build(fpga).flags if f.startswith("-D")) \
            if self.fpga_typed else ()
        # the Vitis kernel flow takes no ap_memory / ap_ctrl_hs top ports (graph_kernels_top.h)
        return (*typed, *(("-DTAAS_VITIS_KERNEL",) if config.flow_target == "vitis" else ()))


#: The front-end kernels: streaming clustering and space-point formation.
FRONTEND_KERNELS = (
    KernelProject("clustering", top="cluster_module", sources=("clustering.cpp",),
                  headers=("clustering.h",), testbench="testbench_clustering.cpp"),
    KernelProject("spacepoints", top="spacepoints", sources=("spacepoints.cpp",),
                  headers=("spacepoints.h", "clustering.h"),
                  testbench="testbench_spacepoints.cpp"),
)


def _graph_kernel(top: str) -> KernelProject:
    """A top of ``graph_kernels_top.cpp`` as its own project (why one project per top: see
    ``graph_kernels_top.h``); every one carries the testbench of all four tops."""
    return KernelProject(top, top=top, sources=("graph_kernels_top.cpp",),
                         headers=("graph_kernels_top.h", "graph_kernels.h"),
                         testbench="testbench_graph_kernels.cpp", fpga_typed=True)


#: The interaction GNN's graph kernels on a fixed-size section.
GRAPH_KERNELS = tuple(_graph_kernel(top) for top in (
    "gnn_gather_edges", "gnn_node_aggregate", "gnn_residual_add", "gnn_layernorm_relu"))

#: Every HLS C++ kernel of our own, in the order ``write_all_projects`` writes them.
KERNELS = FRONTEND_KERNELS + GRAPH_KERNELS


def write_kernel_project(kernel: KernelProject, parent: Path,
                         config: HlsProjectConfig | None = None,
                         fpga: FpgaConfig | None = None) -> Path:
    """Write ``kernel`` as ``parent/<name>/`` (replacing an older copy); returns that folder.

    ``fpga`` (default ``FpgaConfig()``) sets the types and section size of an ``fpga_typed``
    kernel."""
    config = config or HlsProjectConfig()
    cflags = shlex.join(["-Isrc", "-std=c++14", *kernel.defines(config, fpga or FpgaConfig())])
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
           f"syn.cflags={cflags}",
           f"tb.file=tb/{kernel.testbench}", f"tb.cflags={cflags}",
           f"clock={clock}", "csim.code_analyzer=0",
           "package.output.format=" + ("xo" if config.flow_target == "vitis" else "ip_catalog"),
           ""]
    (project / "hls_config.cfg").write_text("\n".join(cfg))
    tcl = [f"open_project -reset {kernel.name}_prj", f"set_top {kernel.top}",
           *(f'add_files src/{s} -cflags "{cflags}"' for s in kernel.sources),
           f'add_files -tb tb/{kernel.testbench} -cflags "{cflags}"',
           f"open_solution -reset solution1 -flow_target {config.flow_target}",
           f"set_part {config.part}", f"create_clock -period {config.clock_ns:g} -name default",
           "csim_design", "csynth_design", "exit", ""]
    (project / "build.tcl").write_text("\n".join(tcl))
    log.info("wrote HLS project %s (top %s, part %s, %s)", project, kernel.top, config.part, clock)
    return project


def write_kernel_projects(kernels: Sequence[KernelProject], parent: Path,
                          config: HlsProjectConfig | None = None,
                          fpga: FpgaConfig | None = None) -> list[Path]:
    """Each of ``kernels`` as a project under ``parent``."""
    return [write_kernel_project(k, parent, config, fpga) for k in kernels]


def write_frontend_projects(parent: Path, config: HlsProjectConfig | None = None) -> list[Path]:
    """Every front-end kernel as a project under ``parent``."""
    return write_kernel_projects(FRONTEND_KERNELS, parent, config)


def write_graph_kernel_projects(parent: Path, config: HlsProjectConfig | None = None,
                                fpga: FpgaConfig | None = None) -> list[Path]:
    """Every graph-kernel top as a project under ``parent``, typed and sized by ``fpga``."""
    return write_kernel_projects(GRAPH_KERNELS, parent, config, fpga)


def write_all_projects(parent: Path, writers: Sequence[ProjectWriter] = (),
                       config: HlsProjectConfig | None = None,
                       fpga: FpgaConfig | None = None) -> list[Path]:
    """Every kernel of ``KERNELS`` (graph kernels typed and sized by ``fpga``) plus whatever
    ``writers`` produce (e.g. each hls4ml block's ``write()`` into ``parent/<block>``), indexed
    by ``parent/README.md``."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    config, fpga = config or HlsProjectConfig(), fpga or FpgaConfig()
    projects = write_kernel_projects(KERNELS, parent, config, fpga)
    projects += [Path(write(parent)) for write in writers]
    lines = ["# taas FPGA blocks as HLS projects", "",
             f"Target part `{config.part}`, clock {config.clock_ns:g} ns. In each kernel "
             "folder: `vitis-run --mode hls --csim --config hls_config.cfg --work_dir work` "
             "(C simulation), `v++ -c --mode hls --config hls_config.cfg --work_dir work` "
             "(synthesis), or `vitis_hls -f build.tcl` (both, classic flow). hls4ml projects: "
             "`vitis_hls -f build_prj.tcl` as hls4ml documents.", "",
             f"Graph kernels (`gnn_*`, one top each, one shared testbench): data `{fpga.data}`, "
             f"aggregation `{fpga.aggregation}`, LayerNorm input `{fpga.norm_input}`, sections "
             f"of {fpga.section_nodes} nodes / {fpga.section_edges} edges (set in each "
             "project's cflags).", ""]
    lines += [f"- `{p.relative_to(parent)}`" for p in projects]
    (parent / "README.md").write_text("\n".join(lines) + "\n")
    return projects


def project_defines(project: Path) -> list[str]:
    """The ``-D`` flags of a written project's testbench (``tb.cflags`` of its config)."""
    for line in (Path(project) / "hls_config.cfg").read_text().splitlines():
        if line.startswith("tb.cflags="):
            return [f for f in shlex.split(line.partition("=")[2]) if f.startswith("-D")]
    return []


def run_testbench(project: Path, timeout_s: float = 900, extra_flags: Sequence[str] = ()
                  ) -> subprocess.CompletedProcess[str]:
    """Compile a kernel project's ``src`` + ``tb`` with g++, the ap_types of hls4ml and the
    project's own defines, run the testbench.

    ``src`` is built as a shared library through the FPGA backend's content-addressed compile
    cache (``backends.fpga.build``), so testbenches of the same sources and defines (another
    project of the same kernel file, a rerun) compile only their own file; ``extra_flags``
    (e.g. a testbench's own ``-D`` switches) apply to the testbench alone. The result carries
    the testbench's exit code (0 = every check passed) and its output."""
    project = Path(project)
    kernel = CppBuild("hls_project", sources=tuple(sorted((project / "src").glob("*.cpp"))),
                      headers=tuple(sorted((project / "src").glob("*.h"))),
                      flags=(*DEFAULT_FLAGS, *project_defines(project)))
    library = shared_library(kernel).path
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "testbench"
        subprocess.run(["g++", *kernel.flags, *extra_flags, f"-I{ap_types_dir()}",
                        f"-I{project / 'src'}", *map(str, sorted((project / "tb").glob("*.cpp"))),
                        str(library), f"-Wl,-rpath,{library.parent}", "-o", str(binary)],
                       check=True, capture_output=True, text=True, timeout=timeout_s)
        return subprocess.run([str(binary)], capture_output=True, text=True, check=False,
                              timeout=timeout_s)
