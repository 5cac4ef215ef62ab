"""The training device and mixed-precision inference on CUDA (validation scoring); the training
steps get theirs from Lightning (``taas.gnn.training.lightning``)."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[object]:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
