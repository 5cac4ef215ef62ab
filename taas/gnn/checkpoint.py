"""Self-describing model checkpoints: weights plus everything needed to use them correctly.

A checkpoint file holds the model kind, its config, the node-feature definition it was trained
on (``FEATURE_VERSION``, the feature set, ``"cells"`` or ``"positions"``, and its column names),
the working points chosen on validation data (radius
``r`` and ``k`` of graph construction, the filter cut, the GNN cut) and the validation metrics.
Loading checks the feature version, so weights are never silently applied to other inputs
(no newest-file-wins loading, no untyped hyperparameters read all over the code). Weights are
stored as float32 CPU tensors and loaded with ``torch.load(weights_only=True)``: no pickled code.

The shipped checkpoints (``taas/gnn/checkpoints/``) are produced by
``taas.gnn.training.reproduce_shipped`` and read with ``load_shipped``. Beside them, in
``checkpoints/positions/``, the positions-only model set (``MODEL_SETS``): embedding, filter
and GNN trained on space points without cells (``docs/spacepoint_input.md`` has the command);
in ``checkpoints/binary_strips/``, the cell-feature models trained on events with binary strip
readout (``taas.gnn.binary_strips.train_binary_strips``).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taas.gnn.features import (
    DEFAULT_FEATURE_SET,
    FEATURE_VERSION,
    feature_names,
    feature_set_of_width,
)
from taas.gnn.models import MODELS, GnnModel, build_model
from taas.io.atomic import atomic_write

log = logging.getLogger(__name__)

#: Layout version of the checkpoint dict itself.
CHECKPOINT_FORMAT = 1

#: Names of the shipped checkpoints (``<name>.pt`` in ``taas/gnn/checkpoints``).
SHIPPED = ("embedding", "filter", "gnn")

#: The shipped model sets: name -> (folder under ``taas/gnn/checkpoints``, description the
#: reports print). Each folder holds all of ``SHIPPED``.
MODEL_SETS: dict[str, tuple[str, str]] = {
    "cells": ("", "GNN models on cell and cluster-shape features"),
    "positions": ("positions", "positions-only GNN models (space points without cells)"),
    "binary_strips": ("binary_strips", "GNN models on cell features, trained with binary strip "
                      "readout (strip cells of value 1, as TrackML and the ITk strips)"),
}
DEFAULT_MODEL_SET = "cells"


def check_model_set(model_set: str) -> str:
    """``model_set`` when it names a shipped set; ``ValueError`` listing them otherwise."""
    if model_set not in MODEL_SETS:
        raise ValueError(f"unknown GNN model set {model_set!r}; valid: {sorted(MODEL_SETS)}")
    return model_set


@dataclass
class Checkpoint:
    """A loaded model with its config and metadata (working points, metrics, provenance)."""

    kind: str
    model: GnnModel
    config: dict[str, Any]
    feature_version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Node feature set the model reads (``taas.gnn.features.FEATURE_SETS``).
    feature_set: str = DEFAULT_FEATURE_SET

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
    """Write ``model`` (float32 CPU weights), its config and ``metadata`` to ``path``.

    The feature set is the one whose width is the model's input width (``n_features``): the
    widths differ, so the set a model was trained on is recorded without being passed."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; valid: {sorted(MODELS)}")
    feature_set = feature_set_of_width(int(model.config.n_features))
    meta = plain(metadata or {})
    json.dumps(meta)  # fail here, not at load time, on something torch cannot load safely
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "config": plain(model.config.to_dict()),
        "feature_version": FEATURE_VERSION,
        "feature_set": feature_set,
        "feature_names": list(feature_names(feature_set)),
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

    Raises ``ValueError`` when the file was trained on another feature definition. Files
    written before feature sets existed read as the ``"cells"`` set (their only one).
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
    feature_set = str(payload.get("feature_set", DEFAULT_FEATURE_SET))
    feature_names(feature_set)  # an unknown set raises, naming the valid ones
    return Checkpoint(kind=payload["kind"], model=model, config=payload["config"],
                      feature_version=payload["feature_version"],
                      metadata=payload.get("metadata", {}), feature_set=feature_set)


def shipped_dir(model_set: str = DEFAULT_MODEL_SET) -> Path:
    """Folder of the shipped model set ``model_set`` (``MODEL_SETS``)."""
    folder = MODEL_SETS[check_model_set(model_set)][0]
    root = Path(str(resources.files("taas.gnn") / "checkpoints"))
    return root / folder if folder else root


def shipped_path(name: str, model_set: str = DEFAULT_MODEL_SET) -> Path:
    """Path of the shipped checkpoint ``name`` (one of ``SHIPPED``) of ``model_set``."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped checkpoint {name!r}; valid: {list(SHIPPED)}")
    return shipped_dir(model_set) / f"{name}.pt"


def install_model_set(trained: str | Path, model_set: str) -> Path:
    """Copy a training run's checkpoints and ``metrics.json`` (``trained``) into the shipped
    folder of ``model_set`` (``MODEL_SETS``), replacing what is there. Returns that folder."""
    target = shipped_dir(model_set)
    target.mkdir(parents=True, exist_ok=True)
    for name in (*(f"{n}.pt" for n in SHIPPED), "metrics.json"):
        shutil.copyfile(Path(trained) / name, target / name)
    return target


def load_shipped(name: str, *, device: str | torch.device = "cpu",
                 model_set: str = DEFAULT_MODEL_SET) -> Checkpoint:
    """Load a checkpoint shipped with taas (``"embedding"``, ``"filter"`` or ``"gnn"``) of the
    model set ``model_set`` (``"cells"``, ``"positions"``)."""
    path = shipped_path(name, model_set)
    if not path.exists():
        how = {DEFAULT_MODEL_SET: "taas.gnn.training.reproduce_shipped()",
               "binary_strips": "taas.gnn.binary_strips.train_binary_strips(install=True)",
               }.get(model_set, "the command in docs/spacepoint_input.md")
        raise FileNotFoundError(f"{path} is missing; regenerate it with {how}")
    return load_checkpoint(path, device=device)
