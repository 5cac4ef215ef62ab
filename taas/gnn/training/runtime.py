"""What every training loop needs: the device, seeding with deterministic algorithms, mixed
precision on CUDA, progress bars and the learning-rate schedule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tqdm import tqdm


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[np.random.Generator]:
    """Seed torch and give a numpy generator; deterministic algorithms inside, restored after."""
    torch.manual_seed(seed)
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield np.random.default_rng(seed)
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[object]:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def progress_bar(iterable: Any, desc: str, progress: bool, **kw: Any) -> Any:
    return tqdm(iterable, desc=desc, disable=not progress, leave=False, **kw)


def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int
                    ) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1),
                                                      eta_min=optimizer.param_groups[0]["lr"] / 20)
