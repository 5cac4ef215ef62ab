"""The three trainings as PyTorch Lightning modules: one base for the optimiser, schedule,
loss bookkeeping and data-parallel checks; the embedding and the edge classifiers only say how a
step's loss is computed.

Why Lightning: data-parallel training (DDP over processes, gloo on CPUs, NCCL on GPUs), mixed
precision on GPUs and progress bars come from one ``Trainer`` instead of hand-written loops
(the ExaTrkX team's advice for distributed training: use an existing framework; ACORN trains on
Lightning). The models stay plain ``torch.nn.Module``s (``taas.gnn.models``): a module wraps one
and the checkpoint saves that inner model in taas' own format (``taas.gnn.checkpoint``), so
inference never imports Lightning.

Data parallel: ``TrainingConfig.devices`` > 1 starts that many processes
(``DDPStrategy(start_method="spawn")``: it works from any caller, a test or a notebook, and hands
the trained weights back to the calling process). Every step's gradients are averaged across
processes, so an epoch over the same events takes ``1/devices`` of the optimiser steps with
``devices`` graphs per step. Each process records a digest of its final weights; the module
gathers them (``rank_digests``) so a run can show that all ranks ended with the same weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, Dataset

from taas.gnn.data import GraphSample, knn_pairs
from taas.gnn.models import EmbeddingMLP, uses_strip_mask
from taas.gnn.training.config import EmbeddingTraining, TrainingConfig
from taas.gnn.training.graphs import TrainingGraph
from taas.gnn.training.runtime import resolve_device

log = logging.getLogger(__name__)


# --- data -----------------------------------------------------------------------------------
class StepDataset(Dataset[Any]):
    """Items that are one optimiser step each (a sample, a sector, a graph)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


class EdgeChunks(Dataset[TrainingGraph]):
    """Graphs cut into random chunks of at most ``max_edges`` edges, one step each, drawn anew
    every epoch (``set_epoch``) from ``(seed, epoch, graph)``: every edge is trained once per
    epoch, and a process draws the same chunks whatever share of them it is given."""

    def __init__(self, graphs: Sequence[TrainingGraph], max_edges: int | None, seed: int
                 ) -> None:
        self.graphs = list(graphs)
        self.max_edges = max_edges
        self.seed = seed
        self.epoch = 0
        self.index = [(g, c) for g, graph in enumerate(self.graphs)
                      for c in range(self._chunks(len(graph.src)))]
        self._perm: dict[int, torch.Tensor] = {}

    def _chunks(self, n_edges: int) -> int:
        return 1 if self.max_edges is None else max(1, -(-n_edges // self.max_edges))

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._perm.clear()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> TrainingGraph:
        g_index, chunk = self.index[index]
        g = self.graphs[g_index]
        if self.max_edges is None or len(g.src) <= self.max_edges:
            return g
        if g_index not in self._perm:
            rng = np.random.default_rng((self.seed, self.epoch, g_index))
            self._perm[g_index] = torch.from_numpy(rng.permutation(len(g.src)))
        sel = self._perm[g_index][chunk * self.max_edges:(chunk + 1) * self.max_edges]
        return TrainingGraph(g.x, g.src[sel], g.dst[sel], g.attr[sel], g.y[sel],
                             None if g.mask is None else g.mask[sel], g.strip)


def _one_step(item: Any) -> Any:
    """Collate: a loader item is already a whole step (module level: DDP spawn pickles it)."""
    return item


class StageData(pl.LightningDataModule):
    """Training and validation steps of one stage; shuffled each epoch with a seeded sampler
    (under DDP Lightning swaps in a ``DistributedSampler`` seeded by ``seed_everything``)."""

    def __init__(self, train: Dataset[Any], val: Dataset[Any] | None, seed: int) -> None:
        super().__init__()
        self.train_set, self.val_set, self.seed = train, val, seed

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int
                                 ) -> Any:
        """A graph's tensors moved as they are (Lightning's generic mover deep-copies a
        dataclass first); a ``GraphSample`` stays in numpy, its step moves what it needs."""
        if isinstance(batch, TrainingGraph):
            g = batch
            return TrainingGraph(g.x.to(device), g.src.to(device), g.dst.to(device),
                                 g.attr.to(device), g.y.to(device),
                                 None if g.mask is None else g.mask.to(device),
                                 None if g.strip is None else g.strip.to(device))
        return batch

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train_set, batch_size=None, shuffle=True, collate_fn=_one_step,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader[Any]:
        if self.val_set is None:
            return DataLoader(StepDataset([]), batch_size=None, collate_fn=_one_step)
        return DataLoader(self.val_set, batch_size=None, collate_fn=_one_step)


# --- modules --------------------------------------------------------------------------------
def parameter_digest(model: nn.Module) -> int:
    """A 63-bit digest of ``model``'s float32 parameters: equal weights <=> equal digests (up
    to hash collisions), compared across DDP processes."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


class StageModule(pl.LightningModule):
    """What every stage shares: AdamW with a per-step cosine schedule (to lr/20); the mean
    training and validation loss of each epoch averaged over processes (``loss_history``,
    ``val_loss_history``); the weight digests of all processes at the end (``rank_digests``);
    the wall and CPU time of each epoch on rank 0, validation included (``epoch_seconds``,
    ``epoch_cpu_seconds``: the CPU time tells a busy machine from a slow step). Subclasses give
    ``step_loss``."""

    train_losses: torch.Tensor
    val_losses: torch.Tensor
    rank_digests: torch.Tensor
    epoch_seconds: torch.Tensor
    epoch_cpu_seconds: torch.Tensor

    def __init__(self, model: nn.Module, *, lr: float, epochs: int, seed: int,
                 processes: int) -> None:
        super().__init__()
        self.model, self.lr, self.seed = model, lr, seed
        # buffers, not attributes: DDP spawn hands the state dict back to the calling process
        self.register_buffer("train_losses", torch.full((epochs,), math.nan, dtype=torch.float64))
        self.register_buffer("val_losses", torch.full((epochs,), math.nan, dtype=torch.float64))
        self.register_buffer("rank_digests", torch.zeros(processes, dtype=torch.int64))
        self.register_buffer("epoch_seconds", torch.full((epochs,), math.nan,
                                                         dtype=torch.float64))
        self.register_buffer("epoch_cpu_seconds", torch.full((epochs,), math.nan,
                                                             dtype=torch.float64))
        self._sums = {"train": [0.0, 0], "val": [0.0, 0]}
        self._epoch_start = (0.0, 0.0)

    def step_loss(self, batch: Any, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        """In every process: ``Trainer(deterministic=...)`` sets torch's flag only in the one
        that built the trainer, not in the processes DDP spawns (``fit`` restores it after)."""
        torch.use_deterministic_algorithms(True, warn_only=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr)
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=self.lr / 20)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _rng(self, phase: int, batch_idx: int) -> np.random.Generator:
        """Per step, from (seed, phase, rank, step): independent of everything else drawn."""
        step = self.global_step if phase == 0 else batch_idx
        return np.random.default_rng((self.seed, phase, self.global_rank, step))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.step_loss(batch, self._rng(0, batch_idx))
        self._count("train", loss)
        self.log("loss", loss, prog_bar=True, batch_size=1)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._count("val", self.step_loss(batch, self._rng(1, batch_idx)))

    def _count(self, phase: str, loss: torch.Tensor) -> None:
        s = self._sums[phase]
        s[0] += float(loss.detach())
        s[1] += 1

    def _epoch_mean(self, phase: str, history: torch.Tensor) -> None:
        total, count = self._sums[phase]
        self._sums[phase] = [0.0, 0]
        if count == 0 or self.trainer.sanity_checking:
            return
        both = self.trainer.strategy.reduce(
            torch.tensor([total, count], dtype=torch.float64, device=self.device),
            reduce_op="sum")
        mean = float(both[0] / both[1])
        history[self.current_epoch] = mean
        if phase == "val":
            self.log("val_loss", mean, prog_bar=True, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = (time.perf_counter(), time.process_time())
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, EdgeChunks):
            dataset.set_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        """(Lightning validates inside the epoch, before this hook: the time includes it.)"""
        self.epoch_seconds[self.current_epoch] = time.perf_counter() - self._epoch_start[0]
        self.epoch_cpu_seconds[self.current_epoch] = time.process_time() - self._epoch_start[1]
        self._epoch_mean("train", self.train_losses)

    def on_validation_epoch_end(self) -> None:
        self._epoch_mean("val", self.val_losses)

    def on_train_end(self) -> None:
        mine = torch.tensor([parameter_digest(self.model)], dtype=torch.int64,
                            device=self.device)
        parts = [mine]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [torch.zeros_like(mine) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(parts, mine)
        self.rank_digests.copy_(torch.cat(parts).to(self.rank_digests))

    def history(self) -> dict[str, Any]:
        """Loss per epoch and the data-parallel record, for the checkpoint's metrics."""
        digests = [int(d) for d in self.rank_digests]
        return {"loss_history": [float(v) for v in self.train_losses],
                "val_loss_history": [float(v) for v in self.val_losses],
                "epoch_seconds": [float(v) for v in self.epoch_seconds],
                "epoch_cpu_seconds": [float(v) for v in self.epoch_cpu_seconds],
                "data_parallel": {"processes": len(digests),
                                  "rank_digests": [str(d) for d in digests],
                                  "weights_identical": len(set(digests)) == 1}}


def hinge_loss(emb: torch.Tensor, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor,
               margin: float, positive_weight: float) -> torch.Tensor:
    """ACORN's pair loss on squared distances: mean d^2 of positive pairs (times
    ``positive_weight``) + mean of ``relu(margin^2 - d^2)`` of negative pairs, averaged
    separately so that the rare positives are not drowned by the negatives."""
    d2 = ((emb[a] - emb[b]) ** 2).sum(-1)
    pos = y > 0.5
    zero = d2.sum() * 0.0
    loss_pos = d2[pos].mean() if bool(pos.any()) else zero
    loss_neg = torch.relu(margin**2 - d2[~pos]).mean() if bool((~pos).any()) else zero
    return positive_weight * loss_pos + loss_neg


def embedding_pairs(sample: GraphSample, emb: np.ndarray, cfg: EmbeddingTraining,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth pairs (attract), random pairs and current hard neighbours (labelled by truth)."""
    n = sample.n_nodes
    ra = np.repeat(np.arange(n), cfg.n_random)
    rb = rng.integers(0, n, len(ra))
    query = np.flatnonzero(rng.random(n) < cfg.query_fraction)
    qa, qb = knn_pairs(emb, cfg.margin, cfg.knn)
    keep = np.isin(qa, query)
    a = np.concatenate([sample.truth_src, ra, qa[keep]])
    b = np.concatenate([sample.truth_dst, rb, qb[keep]])
    y = sample.labels(a, b)
    # hits of one particle that are not consecutive (a skipped layer) are neither pulled nor
    # pushed: pushing them apart fights the pull of the truth pairs between them
    same = (sample.particle[a] == sample.particle[b]) & (sample.particle[a] != 0)
    ok = (a != b) & (y | ~same)
    return a[ok], b[ok], y[ok].astype(np.float32)


class EmbeddingModule(StageModule):
    """Metric learning: a step is one event (or phi sector); the hinge loss on its truth
    pairs, random pairs and the current hard negatives (``embedding_pairs``)."""

    def __init__(self, model: EmbeddingMLP, cfg: EmbeddingTraining, *, seed: int,
                 processes: int) -> None:
        super().__init__(model, lr=cfg.lr, epochs=cfg.epochs, seed=seed, processes=processes)
        self.cfg = cfg

    def step_loss(self, batch: GraphSample, rng: np.random.Generator) -> torch.Tensor:
        x = torch.from_numpy(batch.x).to(self.device)
        with torch.no_grad():
            current = self.model(x).float().cpu().numpy()
        a, b, y = embedding_pairs(batch, current, self.cfg, rng)
        emb = self.model(x).float()

        def t(v: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(v).to(self.device)

        return hinge_loss(emb, t(a), t(b), t(y), self.cfg.margin, self.cfg.positive_weight)


class EdgeClassifierModule(StageModule):
    """Edge filter and interaction GNN: weighted BCE over a step's edges (a graph, an edge
    chunk or a phi sector, whose ``mask`` weights its margin edges 0). A heterogeneous GNN is
    also given the step's per-node ``strip`` mask; other models are called as before."""

    def __init__(self, model: nn.Module, *, lr: float, epochs: int, pos_weight: float,
                 seed: int, processes: int) -> None:
        super().__init__(model, lr=lr, epochs=epochs, seed=seed, processes=processes)
        self.pos_weight = pos_weight

    def step_loss(self, batch: TrainingGraph, rng: np.random.Generator) -> torch.Tensor:
        if uses_strip_mask(self.model):
            logits = self.model(batch.x, batch.src, batch.dst, batch.attr, batch.strip)
        else:
            logits = self.model(batch.x, batch.src, batch.dst, batch.attr)
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), batch.y,
            pos_weight=torch.tensor(self.pos_weight, device=logits.device), reduction="none")
        if batch.mask is None:
            return loss.mean()
        return (loss * batch.mask).sum() / batch.mask.sum().clamp(min=1.0)


# --- the trainer ----------------------------------------------------------------------------
def precision(config: TrainingConfig) -> str:
    """bf16 autocast on CUDA when ``config.amp`` (bf16 needs no loss scaling); float32
    elsewhere: CPU autocast gains nothing for these small kernels."""
    return "bf16-mixed" if config.amp and resolve_device(config.device).type == "cuda" \
        else "32-true"


def trainer(config: TrainingConfig, *, epochs: int, clip: float | None, progress: bool
            ) -> pl.Trainer:
    """A ``Trainer`` for one stage: ``config.devices`` processes (DDP, gloo on CPUs, NCCL on
    GPUs), precision from ``precision``, deterministic algorithms (warn only), no Lightning
    logs or checkpoints (taas writes its own, ``taas.gnn.checkpoint``)."""
    device = resolve_device(config.device)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    devices: int | list[int] = config.devices
    if accelerator == "gpu" and config.devices == 1 and device.index is not None:
        devices = [device.index]  # "cuda:N": that GPU
    strategy: Any = "auto"
    if config.devices > 1:
        strategy = DDPStrategy(start_method="spawn",
                               process_group_backend="nccl" if accelerator == "gpu" else "gloo")
    return pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy,
                      precision=precision(config),  # type: ignore[arg-type]
                      max_epochs=epochs, gradient_clip_val=clip, deterministic="warn",
                      logger=False, enable_checkpointing=False, enable_model_summary=False,
                      enable_progress_bar=progress, num_sanity_val_steps=0,
                      default_root_dir=None)


#: Warnings of Lightning that say nothing about a taas run: its own pytree code on torch 2.13,
#: and loader workers (a step is one whole graph already in memory; workers would only copy it).
_LIGHTNING_NOISE = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                    r".*does not have many workers.*")


@contextlib.contextmanager
def _restored_determinism() -> Iterator[None]:
    """``Trainer(deterministic=...)`` switches torch's global flag; put it back afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def fit(module: StageModule, data: StageData, config: TrainingConfig, *, epochs: int,
        clip: float | None, progress: bool) -> dict[str, Any]:
    """Train ``module`` on ``data``; returns its ``history()``. Seeds everything from the
    module's seed first, so a run is reproducible on the same device and process count."""
    pl.seed_everything(module.seed, workers=True, verbose=False)
    with _restored_determinism(), warnings.catch_warnings():
        for message in _LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=message)
        trainer(config, epochs=epochs, clip=clip, progress=progress).fit(module, datamodule=data)
    module.model.cpu()
    return module.history()
