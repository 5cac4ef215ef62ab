"""Self-describing model checkpoints: weights plus everything needed to use them correctly.

A checkpoint file holds the model kind, its config, the node-feature definition it was trained
on (``FEATURE_VERSION`` and column names), the working points chosen on validation data (radius
``r`` and ``k`` of graph construction, the filter cut, the GNN cut) and the validation metrics.
Loading checks the feature version, so weights are never silently applied to other inputs
(no newest-file-wins loading, no untyped hyperparameters read all over the code). Weights are
stored as float32 CPU tensors and loaded with ``torch.load(weights_only=True)``: no pickled code.

The shipped checkpoints (``taas/gnn/checkpoints/``) are produced by
``taas.gnn.training.reproduce_shipped`` and read with ``load_shipped``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taas.gnn.features import FEATURE_VERSION, NODE_FEATURE_NAMES
from taas.gnn.models import MODELS, GnnModel, build_model
from taas.io.atomic import atomic_write

log = logging.getLogger(__name__)

#: Layout version of the checkpoint dict itself.
CHECKPOINT_FORMAT = 1

#: Names of the shipped checkpoints (``<name>.pt`` in ``taas/gnn/checkpoints``).
SHIPPED = ("embedding", "filter", "gnn")


@dataclass
class Checkpoint:
    """A loaded model with its config and metadata (working points, metrics, provenance)."""

    kind: str
    model: GnnModel
    config: dict[str, Any]
    feature_version: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        """Shorthand for ``metadata[key]`` (e.g. ``ckpt["r"]``, ``ckpt["cut"]``)."""
        return self.metadata[key]


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into JSON-able Python types."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, str)):  # str subclasses (torch.__version__) do not unpickle
        return str(value)
    return value


def save_checkpoint(path: str | Path, model: GnnModel, *, kind: str,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (float32 CPU weights), its config and ``metadata`` to ``path``."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; valid: {sorted(MODELS)}")
    meta = plain(metadata or {})
    json.dumps(meta)  # fail here, not at load time, on something torch cannot load safely
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "config": plain(model.config.to_dict()),
        "feature_version": FEATURE_VERSION,
        "feature_names": list(NODE_FEATURE_NAMES),
        "state_dict": {k: v.detach().to("cpu", torch.float32).clone()
                       if v.is_floating_point() else v.detach().cpu().clone()
                       for k, v in model.state_dict().items()},
        "metadata": meta,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: torch.save(payload, p))
    return path


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by ``save_checkpoint``; the model is in eval mode on ``device``.

    Raises ``ValueError`` when the file was trained on another feature definition.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {payload.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT}")
    if payload["feature_version"] != FEATURE_VERSION:
        raise ValueError(f"{path}: trained on feature version {payload['feature_version']}, "
                         f"this taas computes version {FEATURE_VERSION}; retrain "
                         "(taas.gnn.training.reproduce_shipped)")
    model = build_model(payload["kind"], payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return Checkpoint(kind=payload["kind"], model=model, config=payload["config"],
                      feature_version=payload["feature_version"],
                      metadata=payload.get("metadata", {}))


def shipped_path(name: str) -> Path:
    """Path of the shipped checkpoint ``name`` (one of ``SHIPPED``)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped checkpoint {name!r}; valid: {list(SHIPPED)}")
    return Path(str(resources.files("taas.gnn") / "checkpoints" / f"{name}.pt"))


def load_shipped(name: str, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint shipped with taas (``"embedding"``, ``"filter"`` or ``"gnn"``)."""
    path = shipped_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; regenerate it with "
                                "taas.gnn.training.reproduce_shipped()")
    return load_checkpoint(path, device=device)
