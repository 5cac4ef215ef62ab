"""The MLP blocks of the GNN chain as hls4ml models, compiled once into a content-addressed cache.

Each learned block (``nn.Sequential`` of Linear, activation and LayerNorm, see
``taas.gnn.models.make_mlp``) becomes a :class:`FixedPointBlock`: a chain of steps, each a
bit-accurate C simulation:

* a *dense segment* -- a maximal run of Linear and activation layers -- is one hls4ml model
  (Vitis backend, ``io_parallel``, precisions and reuse factor from ``FpgaConfig``);
* a *LayerNorm + ReLU* pair runs in our HLS kernel (``hls/graph_kernels.h``): hls4ml 1.3's
  LayerNorm takes 1/sqrt(var) from a table that only covers variances up to 1 (and needs a
  3-D input that its Linear layers do not accept), which is not faithful for these blocks.

So the embedding (Linear/Tanh only) is one hls4ml model, and a block with LayerNorm is
``[Linear] LN+ReLU [Linear] LN+ReLU ... [Linear]``.

Compile cache. An hls4ml C simulation reads its weights at its first call from ``.txt`` files at
an absolute path compiled into the library, and calls ``exit(1)`` if they are missing. Embedding
the weights instead (``write_weights_txt=False``) makes g++ compile a 192x64 Linear in 155 s of
CPU instead of 2.5 s (measured here, g++ 12.2 -O3). So each cache entry is a directory holding
the written hls4ml project (the synthesizable sources), its weight files and the library, the
weights path compiled to point inside the entry. An entry's name carries the SHA-256 of the
weights, the hls4ml configuration, the hls4ml version, the compiler and the bridge source;
before loading, the manifest's compiled-in weights path must be this entry's and every weight
file must exist, else the entry is rebuilt -- a moved or deleted entry never reaches the
library's ``exit(1)``. The library is then called once at load time, which reads the weights
into memory for good. Builds take a per-entry file lock, happen in a temporary directory beside
the entry and are published by an atomic rename.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from backends.fpga.build import DEFAULT_FLAGS, HLS_DIR, BuildError, cache_dir, compiler_version
from backends.fpga.config import FixedPoint, FpgaConfig, weight_integer_bits
from backends.fpga.graph_kernels import GraphKernels, graph_kernels, require_finite
from taas.errors import TaasError
from taas.gnn.models import EdgeFilter, EmbeddingMLP, InteractionGNN

log = logging.getLogger(__name__)

#: Subdirectory of the FPGA cache holding the hls4ml entries.
CACHE_SUBDIR = "hls4ml"
#: hls4ml's C-simulation flags plus no unique-symbol binding between the many block libraries
#: of one process (hls4ml's build_lib.sh adds it for the same reason).
BLOCK_FLAGS = (*DEFAULT_FLAGS, "-fno-gnu-unique")
BRIDGE = HLS_DIR / "graph_block_bridge.cpp"
PROJECT = "block"
COMPILER = "g++"

_DOUBLE_P = ctypes.POINTER(ctypes.c_double)
_counter_lock = threading.Lock()
_convert_lock = threading.Lock()
_counters: Counter[str] = Counter()


def compile_count() -> int:
    """hls4ml libraries this process has compiled (the tests count recompilations)."""
    return _counters["compiles"]


def quantize_to(values: np.ndarray, precision: FixedPoint) -> np.ndarray:
    """``values`` on ``precision``'s grid, rounded half to even (``AP_RND_CONV``) and saturated
    (``AP_SAT``), as ``ap_fixed``'s conversion does."""
    scale = 2.0 ** precision.fractional
    top = 2.0 ** (precision.width - 1)
    return np.clip(np.rint(np.asarray(values, np.float64) * scale), -top, top - 1) / scale


def weight_precision(values: np.ndarray, width: int) -> FixedPoint:
    """``width`` bits with as many integer bits as the largest magnitude needs."""
    peak = float(np.abs(values).max()) if values.size else 0.0
    return FixedPoint(width, min(weight_integer_bits(peak), width))


# ------------------------------------------------------------------------------------------
# one hls4ml model in the cache


@dataclass(frozen=True)
class DenseSegment:
    """A run of Linear/activation layers of block ``block`` at indices ``layers``."""

    block: str
    layers: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.block}.{self.layers[0]}-{self.layers[-1]}"


def _hls_config(segment: DenseSegment, net: nn.Sequential, config: FpgaConfig
                ) -> dict[str, object]:
    """The per-layer hls4ml settings of ``segment`` (JSON-able; it is also the cache key)."""
    layers: dict[str, dict[str, object]] = {}
    for rel, index in enumerate(segment.layers):
        module = net[index]
        feeds_norm = index + 1 < len(net) and isinstance(net[index + 1], nn.LayerNorm)
        result = config.data_for(f"{segment.block}.{index}", feeds_norm=feeds_norm).hls
        if isinstance(module, nn.Linear):
            w = module.weight.detach().double().numpy()
            b = module.bias.detach().double().numpy()  # make_mlp's Linear layers have biases
            layers[f"_{rel}"] = {"type": "Linear", "n_in": module.in_features,
                                 "n_out": module.out_features,
                                 "weight": weight_precision(w, config.weight_width).hls,
                                 "bias": weight_precision(b, config.weight_width).hls,
                                 "result": result}
        elif isinstance(module, (nn.ReLU, nn.Tanh)):
            layers[f"_{rel}"] = {"type": type(module).__name__, "result": result,
                                 "table": FixedPoint(config.data.width + 2, 2).hls,
                                 "table_size": config.tanh_table_size}
        else:
            raise TaasError(f"{segment.name}: layer {index} ({type(module).__name__}) has no "
                            "hls4ml conversion in the FPGA backend")
    return {"input": config.data.hls, "layers": layers, "reuse_factor": config.reuse_factor,
            "strategy": config.strategy, "backend": "Vitis", "io_type": "io_parallel"}


def _segment_module(segment: DenseSegment, net: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*(net[i] for i in segment.layers)).eval()


def entry_key(segment: DenseSegment, net: nn.Sequential, config: FpgaConfig) -> str:
    """SHA-256 of weights + hls4ml config + hls4ml version + compiler + bridge + flags."""
    import hls4ml

    digest = hashlib.sha256()
    settings = {"hls": _hls_config(segment, net, config), "hls4ml": hls4ml.__version__,
                "compiler": compiler_version(COMPILER), "flags": list(BLOCK_FLAGS)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(BRIDGE.read_bytes())
    for name, tensor in _segment_module(segment, net).state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().double().numpy().tobytes())
    return digest.hexdigest()


class Hls4mlLibrary:
    """A loaded block library: ``run`` maps ``(n, n_in)`` to ``(n, n_out)`` in C simulation."""

    def __init__(self, entry: Path, manifest: dict[str, object]) -> None:
        self.entry = entry
        self.n_in = int(manifest["n_in"])  # type: ignore[call-overload]
        self.n_out = int(manifest["n_out"])  # type: ignore[call-overload]
        self._lib = ctypes.CDLL(str(entry / "block.so"))
        self._lib.taas_block_run.argtypes = [_DOUBLE_P, _DOUBLE_P, ctypes.c_long]
        self._lib.taas_block_run.restype = ctypes.c_int
        # the first call reads the weight files: do it now, while they are known to exist
        self.run(np.zeros((1, self.n_in)))

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"{self.entry.name}: input shape {x.shape}, expected (n, "
                             f"{self.n_in})")
        out = np.empty((len(x), self.n_out))
        self._lib.taas_block_run(x.ctypes.data_as(_DOUBLE_P), out.ctypes.data_as(_DOUBLE_P),
                                 len(x))
        return out


def _entry_usable(entry: Path, key: str) -> dict[str, object] | None:
    """The manifest of a complete entry whose compiled-in weight files exist, else None."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    weights = Path(str(manifest.get("weights_dir", "")))
    files = manifest.get("weight_files", [])
    if (manifest.get("key") != key or weights != entry / "project/firmware/weights"
            or not (entry / "block.so").is_file() or not isinstance(files, list)
            or not all((weights / str(f)).is_file() for f in files)):
        return None
    return manifest


def load_segment(segment: DenseSegment, net: nn.Sequential, config: FpgaConfig
                 ) -> tuple[Hls4mlLibrary, bool]:
    """The library of ``segment`` from the cache (compiled first when no usable entry exists)
    and whether this call compiled it."""
    key = entry_key(segment, net, config)
    root = cache_dir() / CACHE_SUBDIR
    entry = root / f"{segment.name}-{key[:20]}"
    manifest = _entry_usable(entry, key)
    compiled = False
    if manifest is None:
        root.mkdir(parents=True, exist_ok=True)
        with (root / f"{entry.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building this entry
            manifest = _entry_usable(entry, key)
            if manifest is None:
                manifest = _build_entry(segment, net, config, key, entry)
                compiled = True
    return Hls4mlLibrary(entry, manifest), compiled


def _build_entry(segment: DenseSegment, net: nn.Sequential, config: FpgaConfig, key: str,
                 entry: Path) -> dict[str, object]:
    """Convert, write and compile ``segment`` into a temporary directory, then rename it to
    ``entry`` (replacing a broken one)."""
    import hls4ml

    module = _segment_module(segment, net)
    settings = _hls_config(segment, net, config)
    first = module[0]
    assert isinstance(first, nn.Linear)
    n_in = first.in_features
    n_out = next(int(m.out_features) for m in reversed(module) if isinstance(m, nn.Linear))
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}-"))
    try:
        cfg = hls4ml.utils.config_from_pytorch_model(
            module, input_shape=(n_in,), granularity="name", backend="Vitis",
            default_precision=config.data.hls, default_reuse_factor=config.reuse_factor)
        cfg["Model"]["Strategy"] = config.strategy
        cfg["LayerName"]["input_1"]["Precision"]["result"] = settings["input"]
        for name, layer in settings["layers"].items():  # type: ignore[attr-defined]
            precision = cfg["LayerName"][name]["Precision"]
            if layer["type"] == "Linear":
                precision.update(weight=layer["weight"], bias=layer["bias"],
                                 result=layer["result"], accum="auto")
            else:
                precision.update(result=layer["result"])
                # the ``_t`` key sets the lookup table's type (``Precision.table`` is not read)
                cfg["LayerName"][name].update(table_t=layer["table"],
                                              table_size=layer["table_size"])
        # hls4ml warns about every setting that differs from its defaults and prints its
        # progress: both go to the log, not to the user's terminal or pytest's warning filter
        # torch.fx tracing (inside hls4ml's parser) patches torch globally: one at a time; the
        # compilations below run in parallel
        chatter = io.StringIO()
        with _convert_lock, warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore", UserWarning)
            model = hls4ml.converters.convert_from_pytorch_model(
                module, hls_config=cfg, output_dir=str(tmp / "project"), project_name=PROJECT,
                backend="Vitis", io_type="io_parallel")
            model.write()
        log.debug("hls4ml on %s: %s", segment.name, chatter.getvalue())
        weights = entry / "project/firmware/weights"
        firmware = tmp / "project/firmware"
        command = [COMPILER, *BLOCK_FLAGS, f"-I{firmware / 'ap_types'}", f"-I{firmware}",
                   f'-DWEIGHTS_DIR="{weights}"', f"-DTAAS_TOP={PROJECT}",
                   f"-DTAAS_N_IN={n_in}", f"-DTAAS_N_OUT={n_out}",
                   "-include", str(firmware / f"{PROJECT}.h"), "-shared",
                   str(firmware / f"{PROJECT}.cpp"), str(BRIDGE), "-o", str(tmp / "block.so")]
        log.info("compiling hls4ml C simulation of %s", segment.name)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"compiling {segment.name} failed:\n{result.stderr[-4000:]}")
        manifest = {"key": key, "segment": segment.name, "n_in": n_in, "n_out": n_out,
                    "weights_dir": str(weights),
                    "weight_files": sorted(p.name for p in (firmware / "weights").glob("*.txt")),
                    "hls4ml": hls4ml.__version__, "compiler": compiler_version(COMPILER),
                    "hls": settings}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if entry.exists():  # a broken or stale entry: move it aside, then publish ours
            trash = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".trash-{entry.name}-"))
            os.replace(entry, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with _counter_lock:
        _counters["compiles"] += 1
    return manifest


# ------------------------------------------------------------------------------------------
# a whole block


@dataclass(frozen=True)
class NormStep:
    """LayerNorm (``index``) then ReLU in our kernel; scale and offset on the weight grid."""

    index: int
    gamma: np.ndarray
    beta: np.ndarray
    eps: float


def plan_block(block: str, net: nn.Sequential, config: FpgaConfig
               ) -> list[DenseSegment | NormStep]:
    """Split ``net`` into hls4ml dense segments and LayerNorm + ReLU steps."""
    steps: list[DenseSegment | NormStep] = []
    run: list[int] = []
    i = 0
    layers = list(net)
    while i < len(layers):
        module = layers[i]
        if isinstance(module, nn.LayerNorm):
            if i + 1 >= len(layers) or not isinstance(layers[i + 1], nn.ReLU):
                raise TaasError(f"{block}: LayerNorm at {i} is not followed by ReLU; the FPGA "
                                "kernel implements LayerNorm + ReLU only")
            if run:
                steps.append(DenseSegment(block, tuple(run)))
                run = []
            gamma = module.weight.detach().double().numpy()
            beta = module.bias.detach().double().numpy()
            steps.append(NormStep(
                i, quantize_to(gamma, weight_precision(gamma, config.weight_width)),
                quantize_to(beta, weight_precision(beta, config.weight_width)),
                float(module.eps)))
            i += 2
            continue
        run.append(i)
        i += 1
    if run:
        steps.append(DenseSegment(block, tuple(run)))
    if not steps or not isinstance(steps[0], DenseSegment):
        raise TaasError(f"{block}: a block must start with a Linear layer")
    return steps


class FixedPointBlock:
    """One MLP block in C simulation: hls4ml dense segments and our LayerNorm + ReLU kernel.

    ``compiled``: how many of its hls4ml libraries this construction had to compile (0 when
    the cache had them all).
    """

    def __init__(self, block: str, net: nn.Sequential, config: FpgaConfig,
                 kernels: GraphKernels | None = None) -> None:
        self.block = block
        self.steps: list[Hls4mlLibrary | NormStep] = []
        self.compiled = 0
        plan = plan_block(block, net, config)
        if kernels is None and any(isinstance(step, NormStep) for step in plan):
            kernels = graph_kernels(config)
        self.kernels = kernels
        for step in plan:
            if isinstance(step, DenseSegment):
                library, compiled = load_segment(step, net, config)
                self.steps.append(library)
                self.compiled += int(compiled)
            else:
                self.steps.append(step)
        first = self.steps[0]
        assert isinstance(first, Hls4mlLibrary)
        self.n_in = first.n_in

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_in)`` inputs (quantized to ``data`` on entry) -> ``(n, n_out)`` outputs."""
        x = np.asarray(x, dtype=np.float64)
        require_finite(f"{self.block} input", x)
        if len(x) == 0:
            last = next(s for s in reversed(self.steps) if isinstance(s, Hls4mlLibrary))
            return np.zeros((0, last.n_out))
        for step in self.steps:
            if isinstance(step, Hls4mlLibrary):
                x = step.run(x)
            else:
                assert self.kernels is not None
                x = self.kernels.layernorm_relu(x, step.gamma, step.beta, step.eps)
        return x


def block_nets(models: Sequence[tuple[str, nn.Module]]) -> dict[str, nn.Sequential]:
    """The MLP blocks of loaded models by block name: ``embedding``, ``filter``, and
    ``gnn.node_encoder``, ``gnn.edge_encoder``, ``gnn.edge_net[.k]``, ``gnn.node_net[.k]``,
    ``gnn.classifier`` (``k`` only for a non-recurrent GNN with one network per iteration)."""
    nets: dict[str, nn.Sequential] = {}
    for kind, model in models:
        if kind in ("embedding", "filter") and isinstance(model, (EmbeddingMLP, EdgeFilter)):
            nets[kind] = model.net
        elif kind == "gnn" and isinstance(model, InteractionGNN):
            nets["gnn.node_encoder"] = model.node_encoder
            nets["gnn.edge_encoder"] = model.edge_encoder
            many = len(model.edge_nets) > 1
            for k, (edge_net, node_net) in enumerate(zip(model.edge_nets, model.node_nets,
                                                         strict=True)):
                suffix = f".{k}" if many else ""
                assert isinstance(edge_net, nn.Sequential)
                assert isinstance(node_net, nn.Sequential)
                nets[f"gnn.edge_net{suffix}"] = edge_net
                nets[f"gnn.node_net{suffix}"] = node_net
            nets["gnn.classifier"] = model.classifier
        else:
            raise ValueError(f"model kind {kind!r} ({type(model).__name__}) has no FPGA blocks")
    return nets

