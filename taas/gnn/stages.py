"""The GNN inference stages of the ``acorn`` pipeline, shared by the CPU and GPU backends.

* ``graph_construction``: node features -> metric-learning embedding -> FRNN radius graph with
  the checkpoint's working point ``(r, k)`` -> edge filter, keeping edges above its cut. Output:
  ``edges.*`` with the *filter* score. Building and filtering are one stage because the radius
  graph is several times larger than the filtered one; shipping it between stages (or through
  Triton) would cost more than the filter itself.
* ``edge_classification``: the interaction GNN on the filtered graph. Output: the same
  ``edges.*`` with the *GNN* score (the runner's pool takes the latest); track building cuts.

Backends differ only in one hook, ``select_device`` (as in ``taas.gnn.track_building``): the
CPU stage runs torch on the CPU device; the GPU stage on CUDA, else (``allow_cpu_fallback``) on
the CPU device with ``device`` saying "(CUDA unavailable)". On CUDA the FRNN is the cell list
of ``frnn_torch`` walked by a numba CUDA kernel (``taas.gnn.frnn_kernel``) and the models run
under bf16 autocast (``amp``); on the CPU device the FRNN is scipy's k-d tree (``frnn_cpu``),
which is faster there than the cell list, and ``device`` says which ran. All FRNNs return the
same edges (``taas.gnn.frnn``), so the backends give the same graph. The embedding always runs
in fp32 (cheap, and the radius cut is sensitive to rounding); autocast covers the per-edge
models, where the time goes. Against the fp32 CPU stages, the CUDA stages (H200) keep 99.97%
(medium) and 99.92% (large) of the GNN decisions at cut 0.3, and 99.2-99.5% of the filtered
edges (``benchmarks/gnn_scaling.py`` records it per preset).

Models are loaded once, in the constructor, from the shipped checkpoints of ``model_set``
(``"cells"``, or ``"positions"`` for events given as space points without cells) or from
``checkpoint_dir`` (``embedding.pt``, ``filter.pt``, ``gnn.pt`` as ``taas train`` writes them);
the working points come from the checkpoints' metadata unless the config overrides them, and
the node features computed are the set the checkpoints were trained on. A model that reads
cluster-shape features refuses an event without them (``InputError`` naming the fix).
Events with fewer than two space points, or no edge left after a cut, give empty edges.

Device residency: both stages (and track building) do their work in ``compute_on_device`` on a
``taas.stages.device_tensors.DeviceTensors``, which uploads (and counts) what is not yet on the
device. The numpy ``compute`` gives it a fresh one and downloads the edges; ``Pipeline`` keeps
one per device across the event, so the space-point columns go over once and the edges stay on
the device from graph construction through track building. Per event, with the cells models
(12 feature columns, z among them, plus x and y): graph construction uploads 14 columns either
way; edge classification uploads 14 tensors (the features again, src, dst) without residency
and none with it; track building 4 (edges, ordering key) against 1; the edges come back twice
without residency, once with it when the caller keeps them, never when it does not (the
whole-pipeline model). ``tests/pipeline/test_copy_ledger.py`` holds the ledger to these.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from taas.detector.detector import Detector
from taas.edm import Edges, Spacepoints
from taas.errors import InputError
from taas.gnn.checkpoint import (
    DEFAULT_MODEL_SET,
    MODEL_SETS,
    Checkpoint,
    check_model_set,
    load_checkpoint,
    load_shipped,
    shipped_path,
)
from taas.gnn.data import unique_pairs
from taas.gnn.features import FEATURE_SETS, edge_features, node_feature_tensor
from taas.gnn.frnn import frnn_cpu, frnn_torch
from taas.gnn.frnn_kernel import MAX_K, kernel_works
from taas.gnn.inference import GNN_CHUNK, embed_nodes, filter_chunk, gnn_logits
from taas.gnn.track_building import cuda_or_fallback
from taas.reco.cluster_features import SpacepointFeatures
from taas.reco.hit_spacepoints import has_cluster_shape
from taas.stages.base import RowOrder, Stage
from taas.stages.configs import coerce_config
from taas.stages.device_tensors import DeviceOutputs, DeviceTensors, compute_via_device

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class GnnStageConfig:
    """Configuration of both GNN stages (each reads the fields it needs).

    ``checkpoint_dir``: directory with ``embedding.pt``, ``filter.pt``, ``gnn.pt`` (None: the
    shipped checkpoints of ``model_set``, ``taas.gnn.checkpoint.MODEL_SETS``). ``r``, ``k``,
    ``filter_cut``: override the checkpoints' working points. ``amp``: bf16 autocast of the
    models on CUDA (ignored on the CPU device, where bf16 is slower than fp32).
    ``allow_cpu_fallback``: GPU backend only, run on the CPU device when CUDA is absent.
    ``filter_chunk``: edges per filter forward pass (None: the device's default,
    ``taas.gnn.inference.filter_chunk``). ``gnn_chunk``: edges and nodes per chunk of the GNN on
    the CPU device (0: the whole graph at once; on CUDA the whole graph always runs at once).
    """

    checkpoint_dir: str | None = None
    model_set: str = DEFAULT_MODEL_SET
    r: float | None = None
    k: int | None = None
    filter_cut: float | None = None
    amp: bool = True
    compile: bool = False
    allow_cpu_fallback: bool = True
    filter_chunk: int | None = None
    gnn_chunk: int = GNN_CHUNK

    def __post_init__(self) -> None:
        try:
            check_model_set(self.model_set)
        except ValueError as exc:
            raise ValueError(f"GnnStageConfig.model_set: {exc}") from None

    @classmethod
    def coerce(cls, config: Self | Mapping[str, Any] | None) -> Self:
        """A config from None, an instance, or a mapping (the workflow passes dicts)."""
        return coerce_config(cls, config)


def checkpoint_path(name: str, config: GnnStageConfig) -> Path:
    """File of checkpoint ``name``: in ``config.checkpoint_dir``, else the shipped one."""
    if config.checkpoint_dir is None:
        return shipped_path(name, config.model_set)
    return Path(config.checkpoint_dir) / f"{name}.pt"


def load_model(name: str, config: GnnStageConfig, device: torch.device) -> Checkpoint:
    """Checkpoint ``name`` from ``config.checkpoint_dir`` or the shipped ones, on ``device``
    (a missing shipped file says how to regenerate it)."""
    if config.checkpoint_dir is None:
        return load_shipped(name, device=device, model_set=config.model_set)
    return load_checkpoint(checkpoint_path(name, config), device=device)


@functools.lru_cache(maxsize=16)
def _compiled(path: Path, mtime_ns: int, device: torch.device
              ) -> tuple[Checkpoint, Callable[..., torch.Tensor]]:
    """One loaded checkpoint and its ``torch.compile`` wrapper per file version and device, so
    stages built again (each pipeline, each benchmark pass) reuse the compiled kernels rather
    than recompile (and never reach dynamo's limit of 8 recompilations per function)."""
    ckpt = load_checkpoint(path, device=device)
    return ckpt, torch.compile(ckpt.model, dynamic=True)


def load_compiled(name: str, config: GnnStageConfig, device: torch.device
                  ) -> tuple[Checkpoint, Callable[..., torch.Tensor]]:
    """:func:`load_model` plus its compiled forward, shared by every stage of the process."""
    path = checkpoint_path(name, config)
    return _compiled(path.resolve(), path.stat().st_mtime_ns, device)


def empty_edges() -> dict[str, np.ndarray]:
    return Edges.empty().to_tensors()


def edges_on_device(src: torch.Tensor, dst: torch.Tensor, score: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
    """The ``edges.*`` tensors where they were computed, in the dtypes of ``Edges``."""
    return {"edges.src": src.long(), "edges.dst": dst.long(), "edges.score": score.float()}


def undirected_oriented(src: torch.Tensor, dst: torch.Tensor, xyz: torch.Tensor, n: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of both directions of FRNN pairs, each pair once, pointed away from the origin.

    The torch twin of ``taas.gnn.data.radius_graph``'s post-processing (sorted unique pairs,
    then ``orient_edges``), so the stages build exactly the graph the models were trained on,
    on any device. On the CPU device the pairs come from the linear-time ``unique_pairs``; on
    CUDA from ``torch.unique`` of the pair keys (1.2 ms for 9.3M pairs on an H200).
    """
    if src.device.type == "cpu":
        a, b = map(torch.from_numpy, unique_pairs(src.numpy(), dst.numpy(), n))
    else:
        key = torch.unique(torch.minimum(src, dst) * n + torch.maximum(src, dst))
        a, b = key // n, key % n
    dist = (xyz * xyz).sum(1)
    da, db = dist[a], dist[b]
    flip = (db < da) | ((db == da) & (b < a))
    return torch.where(flip, b, a), torch.where(flip, a, b)


class GnnStage(Stage):
    """What both GNN stages share: config, device hook, model loading, node features."""

    #: Checkpoints this stage loads (subset of ``taas.gnn.checkpoint.SHIPPED``).
    MODELS: ClassVar[tuple[str, ...]]
    #: The per-edge models among them, which ``config.compile`` compiles on CUDA.
    EDGE_MODELS: ClassVar[tuple[str, ...]]

    def __init__(self, detector: Detector | None,
                 config: GnnStageConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(detector)  # type: ignore[arg-type]
        self.config = GnnStageConfig.coerce(config)
        self.torch_device, self._device_note = self.select_device()
        self.compiled: dict[str, Callable[..., torch.Tensor]] = {}
        self.models = {}
        for name in self.MODELS:
            if self.on_cuda and self.config.compile and name in self.EDGE_MODELS:
                self.models[name], self.compiled[name] = load_compiled(name, self.config,
                                                                       self.torch_device)
            else:
                self.models[name] = load_model(name, self.config, self.torch_device)
        self.feature_set = self._feature_set()

    def _feature_set(self) -> str:
        """The node feature set every model of this stage was trained on (they must agree)."""
        sets = {name: ckpt.feature_set for name, ckpt in self.models.items()}
        if len(set(sets.values())) > 1:
            raise ValueError(f"{self.qualified_name}: its checkpoints read different node "
                             f"features {sets}; use one model set")
        return next(iter(sets.values()))

    @property
    def model_description(self) -> str:
        """Which models run, for reports: the shipped set's description, or the folder."""
        if self.config.checkpoint_dir is None:
            return MODEL_SETS[self.config.model_set][1]
        return f"checkpoints in {self.config.checkpoint_dir} ({self.feature_set} features)"

    def select_device(self) -> tuple[torch.device, str]:
        """The torch device and a note on it (the one hook the backends override)."""
        return torch.device("cpu"), ""

    @property
    def on_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    @property
    def device(self) -> str:
        amp = " bf16 autocast" if self.on_cuda and self.config.amp else ""
        compiled = " torch.compile" if self.compiled else ""
        return f"{self.torch_device}{self._device_note}{amp}{compiled}"

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """bf16 autocast on CUDA when ``amp``; fp32 otherwise."""
        if self.on_cuda and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return compute_via_device(self, inputs)

    @abstractmethod
    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        """The stage's work on tensors taken from (and edges left on) its device."""

    def node_inputs(self, inputs: DeviceTensors | Mapping[str, np.ndarray]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features (the checkpoints' feature set) and positions (float64) of the space
        points, on the stage's device."""
        if not isinstance(inputs, DeviceTensors):
            inputs = DeviceTensors(dict(inputs), self.torch_device)
        return self.node_features(inputs), self.positions(inputs)

    def positions(self, tensors: DeviceTensors) -> torch.Tensor:
        """(n, 3) float64 space-point positions on the stage's device."""
        return torch.stack([tensors.get(f"spacepoints.{c}") for c in "xyz"], dim=1).double()

    def node_features(self, tensors: DeviceTensors) -> torch.Tensor:
        """Node features (the checkpoints' feature set) on the stage's device, from the
        columns it reads (each uploaded once). ``InputError`` when the models read cluster
        shapes the event does not have (space points given without cells)."""
        if (set(FEATURE_SETS[self.feature_set]) - set(FEATURE_SETS["positions"])
                and not has_cluster_shape(tensors.host("spacepoint_features.n_cells"))):
            raise InputError(
                f"{self.qualified_name}: this model needs cells (its node features "
                f"{self.feature_set!r} include cluster shapes), but the event has space points "
                "without cells; use the positions-only models: model_set='positions' "
                "(taas reconstruct picks them for such events when no checkpoints are given)")
        return node_feature_tensor(tensors.columns("spacepoints"),
                                   tensors.columns("spacepoint_features"), self.torch_device,
                                   feature_set=self.feature_set)

    def scores(self, name: str, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
               ) -> torch.Tensor:
        """Sigmoid scores (float32) of edges from the edge-classifier checkpoint ``name`` (its
        compiled forward when there is one; should compiling fail, the eager model, logged)."""
        model = self.compiled.get(name, self.models[name].model)
        with torch.inference_mode(), self.autocast():
            try:
                logits = model(x, src, dst, edge_features(x, src, dst))
            except Exception as exc:  # a compiler failure: fall back, say so, never lose data
                if name not in self.compiled:
                    raise
                log.warning("%s: torch.compile of %s failed (%s: %s); running it eagerly",
                            self.qualified_name, name, type(exc).__name__, exc)
                del self.compiled[name]
                return self.scores(name, x, src, dst)
        return torch.sigmoid(logits.float())


class GraphConstructionStage(GnnStage):
    """Space points -> filtered graph: embedding, FRNN radius graph, edge filter."""

    NAME = "graph_construction"
    MODELS: ClassVar[tuple[str, ...]] = ("embedding", "filter")
    EDGE_MODELS: ClassVar[tuple[str, ...]] = ("filter",)
    INPUTS = Spacepoints.tensor_specs() + SpacepointFeatures.tensor_specs()
    OUTPUTS = Edges.tensor_specs()
    ROW_ORDER = RowOrder(("spacepoints", "spacepoint_features"),
                         index_outputs=("edges.src", "edges.dst"))

    def __init__(self, detector: Detector | None,
                 config: GnnStageConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(detector, config)
        emb, filt = self.models["embedding"], self.models["filter"]
        self.r = float(self.config.r if self.config.r is not None else emb["r"])
        self.k = int(self.config.k if self.config.k is not None else emb["k"])
        self.filter_cut = float(self.config.filter_cut if self.config.filter_cut is not None
                                else filt["cut"])

    @property
    def frnn_name(self) -> str:
        if not self.on_cuda:
            return "scipy k-d tree"
        if self.k <= MAX_K and kernel_works():
            return "numba CUDA cell-list kernel"
        return "torch cell list"

    @property
    def device(self) -> str:
        return f"{super().device}; FRNN {self.frnn_name}"

    def frnn(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Directed FRNN pairs: the torch cell list on CUDA, the k-d tree on the CPU device
        (measured faster there; both give the same edges)."""
        if self.on_cuda:
            return frnn_torch(emb, self.r, self.k)
        src, dst = frnn_cpu(emb.cpu().numpy(), self.r, self.k)
        return torch.from_numpy(src), torch.from_numpy(dst)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-vector embedding of node features ``x`` (hook: the FPGA backend emulates it).

        fp32 even under amp: the embedding is cheap (per node), and bf16 rounding (~4e-3)
        would move pairs across the radius r; autocast pays off on the per-edge models."""
        with torch.inference_mode():
            return embed_nodes(self.models["embedding"].model, x)

    def filter_scores(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
                      ) -> torch.Tensor:
        """Edge-filter scores of the radius-graph edges (hook: the FPGA backend emulates it)."""
        chunk = filter_chunk(x.device, self.config.filter_chunk)
        return torch.cat([self.scores("filter", x, src[i:i + chunk], dst[i:i + chunk])
                          for i in range(0, len(src), chunk)])

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        n = tensors.length("spacepoints.x")
        if n < 2:
            return empty_edges()
        x, xyz = self.node_inputs(tensors)
        emb = self.embed(x)
        src, dst = self.frnn(emb)
        if len(src) == 0:
            return empty_edges()
        src, dst = undirected_oriented(src.to(x.device), dst.to(x.device), xyz, n)
        score = self.filter_scores(x, src, dst)
        keep = score > self.filter_cut
        log.debug("%s: %d space points -> %d graph edges -> %d filtered", self.qualified_name,
                  n, len(src), int(keep.sum()))
        return edges_on_device(src[keep], dst[keep], score[keep])


class EdgeClassificationStage(GnnStage):
    """Filtered graph -> the same edges scored by the interaction GNN."""

    NAME = "edge_classification"
    MODELS: ClassVar[tuple[str, ...]] = ("gnn",)
    EDGE_MODELS: ClassVar[tuple[str, ...]] = ("gnn",)
    INPUTS = (Edges.tensor_specs() + Spacepoints.tensor_specs()
              + SpacepointFeatures.tensor_specs())
    OUTPUTS = Edges.tensor_specs()
    ROW_ORDER = RowOrder(("spacepoints", "spacepoint_features"),
                         index_inputs=("edges.src", "edges.dst"),
                         index_outputs=("edges.src", "edges.dst"))

    def compute_on_device(self, tensors: DeviceTensors) -> DeviceOutputs:
        if tensors.length("edges.src") == 0 or tensors.length("spacepoints.x") < 2:
            return empty_edges()
        x = self.node_features(tensors)
        src = tensors.get("edges.src", torch.int64)
        dst = tensors.get("edges.dst", torch.int64)
        return edges_on_device(src, dst, self.edge_scores(x, src, dst))

    def edge_scores(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
                    ) -> torch.Tensor:
        """GNN scores of the edges ``src -> dst`` (hook: the FPGA backend emulates it)."""
        if self.on_cuda:  # the whole graph, compiled and under autocast when configured
            return self.scores("gnn", x, src, dst)
        with torch.inference_mode():
            logits = gnn_logits(self.models["gnn"].model, x, src, dst,
                                edge_features(x, src, dst), int(self.config.gnn_chunk))
        return torch.sigmoid(logits.float())


class CudaDevice:
    """Mixin of the GPU backends: CUDA, else the CPU device when the config allows it."""

    config: GnnStageConfig

    def select_device(self) -> tuple[torch.device, str]:
        return cuda_or_fallback(self.config.allow_cpu_fallback)
