"""Node and edge input features of the GNN pipeline, defined once, in a fixed documented order.

Every model (metric-learning embedding, edge filter, interaction GNN) reads the same node
features, so a checkpoint is only valid for the feature definition it was trained with: that is
``FEATURE_VERSION``, stored in every checkpoint and checked when one is loaded.

Node features follow Exa.TrkX / ACORN (Ju et al. 2021, "Performance of a geometric deep learning
pipeline for HL-LHC particle tracking"): cylindrical coordinates scaled to O(1) (``r/1000``,
``phi/pi``, ``z/3000`` as in ACORN's TrackML configs) plus the cluster-shape features, which
carry a (sign-ambiguous) track direction and let graph building reject fake pairs early. Each
column is scaled to roughly [-2, 2] so that fixed-point arithmetic (hls4ml ``ap_fixed<16,6>``)
keeps its precision and no input saturates.

Two *feature sets* exist: ``"cells"`` (all of ``NODE_FEATURES``, the default) and
``"positions"`` (the columns computed from the space point's position alone, for events given
as space points without cells, as ExaTrkX-as-a-service's and Athena's clients send them). A
checkpoint records the set it was trained on (``taas.gnn.checkpoint``), and the stages compute
that set. Both sets start with ``r, phi, z, eta``: the edge features read only those four.

Edge features are ACORN's ``dr, dphi, dz, deta, phislope, rphislope``, computed from the node
features of the two endpoints. They are glue, not learned: on an FPGA they are a few subtractions
in the gather kernel, and they fix what a plain MLP on node features handles badly, the wrap of
``phi`` at +-pi.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

#: Version of the feature definition below; bump on any change of order, scaling or content.
FEATURE_VERSION = 1

#: Node feature columns, in order, with the transformation each applies (``sp.`` = space point
#: column, ``cf.`` = ``SpacepointFeatures`` column).
NODE_FEATURES: tuple[tuple[str, str], ...] = (
    ("r", "sp.r / 1000 mm"),
    ("phi", "sp.phi / pi"),
    ("z", "sp.z / 3000 mm"),
    ("eta", "sp.eta / 3, clipped to [-2, 2]"),
    ("n_cells", "log(1 + cf.n_cells) / 3"),
    ("charge", "cf.charge (summed cell activation, O(1))"),
    ("extent_u", "cf.extent_u * 4 (mm^-1)"),
    ("extent_v", "cf.extent_v / 10 (mm^-1)"),
    ("local_angle", "cf.local_angle / (pi / 2)"),
    ("local_eta", "cf.local_eta / 2, clipped to [-2, 2]"),
    ("global_eta", "cf.global_eta / 3, clipped to [-2, 2]"),
    ("global_phi", "cf.global_phi / pi"),
    ("cos_phi", "cos(sp.phi): with sin_phi, phi without the wrap at +-pi"),
    ("sin_phi", "sin(sp.phi)"),
)
NODE_FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in NODE_FEATURES)
N_NODE_FEATURES = len(NODE_FEATURES)

#: The node feature sets by name: the columns of ``NODE_FEATURES`` each computes, in order.
#: ``"positions"`` needs no cluster (``SpacepointFeatures``) column at all.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "cells": NODE_FEATURE_NAMES,
    "positions": ("r", "phi", "z", "eta", "cos_phi", "sin_phi"),
}
DEFAULT_FEATURE_SET = "cells"


def feature_names(feature_set: str) -> tuple[str, ...]:
    """The node feature columns of ``feature_set``; ``ValueError`` names the valid sets."""
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise ValueError(f"unknown node feature set {feature_set!r}; valid: "
                         f"{sorted(FEATURE_SETS)}") from None


def feature_set_of_width(n_features: int) -> str:
    """The feature set with ``n_features`` columns (the sets have distinct widths), so a model's
    input width names the features it reads; ``ValueError`` when no set has that width."""
    for name, names in FEATURE_SETS.items():
        if len(names) == n_features:
            return name
    raise ValueError(f"no node feature set has {n_features} columns; sets: "
                     f"{ {k: len(v) for k, v in FEATURE_SETS.items()} }")

#: Edge feature columns, in order (all from scaled node features; ``dphi`` wrapped to [-1, 1)).
EDGE_FEATURE_NAMES: tuple[str, ...] = ("dr", "dphi", "dz", "deta", "phislope", "rphislope")
N_EDGE_FEATURES = len(EDGE_FEATURE_NAMES)

#: Bound of the slope features: |dphi / dr| explodes for pairs at equal radius (endcap disks).
SLOPE_CLIP = 5.0


def _column(table: Mapping[str, np.ndarray | torch.Tensor], name: str, prefix: str
            ) -> np.ndarray | torch.Tensor:
    """A column given either bare (``"r"``) or under its stage-contract prefix (a tensor
    already on a device, e.g. from ``taas.stages.device_tensors.DeviceTensors``, stays there)."""
    prefixed = f"{prefix}.{name}"
    for key in (name, prefixed):
        if key in table:
            value = table[key]
            return value if isinstance(value, torch.Tensor) else np.asarray(value)
    raise KeyError(f"node_features: missing column {name!r} (or {prefixed!r})")


def node_feature_tensor(spacepoints: Mapping[str, np.ndarray | torch.Tensor],
                        features: Mapping[str, np.ndarray | torch.Tensor],
                        device: torch.device | str = "cpu", *,
                        feature_set: str = DEFAULT_FEATURE_SET) -> torch.Tensor:
    """Node features ``(n, len(FEATURE_SETS[feature_set]))`` float32 on ``device``, in the order
    of ``NODE_FEATURES`` (``"positions"``: its columns only; ``features`` is then not read and
    may be empty), computed there in float64 (on a GPU machine the host is the slow part:
    14 columns of a ``large`` event took 90 ms of numpy on the H100 machine's CPU).

    ``spacepoints`` holds the ``Spacepoints`` columns, ``features`` the ``SpacepointFeatures``
    columns (plain names or the ``spacepoints.``/``spacepoint_features.`` tensor names of the
    stage contract; a ``Table``'s ``columns()`` works too). Non-finite values become 0.
    """

    def sp(name: str) -> torch.Tensor:
        return torch.as_tensor(_column(spacepoints, name, "spacepoints")).to(device,
                                                                              torch.float64)

    def cf(name: str) -> torch.Tensor:
        return torch.as_tensor(_column(features, name, "spacepoint_features")).to(
            device, torch.float64)

    phi = sp("phi")
    # one callable per column, so a feature set computes (and reads) only its own columns
    columns: dict[str, Callable[[], torch.Tensor]] = {
        "r": lambda: sp("r") / 1000.0,
        "phi": lambda: phi / math.pi,
        "z": lambda: sp("z") / 3000.0,
        "eta": lambda: torch.clamp(sp("eta") / 3.0, -2.0, 2.0),
        "n_cells": lambda: torch.log1p(cf("n_cells")) / 3.0,
        "charge": lambda: cf("charge"),
        "extent_u": lambda: cf("extent_u") * 4.0,
        "extent_v": lambda: cf("extent_v") / 10.0,
        "local_angle": lambda: cf("local_angle") / (math.pi / 2),
        "local_eta": lambda: torch.clamp(cf("local_eta") / 2.0, -2.0, 2.0),
        "global_eta": lambda: torch.clamp(cf("global_eta") / 3.0, -2.0, 2.0),
        "global_phi": lambda: cf("global_phi") / math.pi,
        "cos_phi": lambda: torch.cos(phi),
        "sin_phi": lambda: torch.sin(phi),
    }
    out = torch.stack([columns[name]() for name in feature_names(feature_set)], dim=1)
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).float()


def node_features(spacepoints: Mapping[str, np.ndarray],
                  features: Mapping[str, np.ndarray], *,
                  feature_set: str = DEFAULT_FEATURE_SET) -> np.ndarray:
    """:func:`node_feature_tensor` on the CPU, as a numpy array (training and evaluation)."""
    return node_feature_tensor(spacepoints, features, feature_set=feature_set).numpy()


def edge_features(x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Edge features ``(E, N_EDGE_FEATURES)`` of edges ``src -> dst`` from node features ``x``.

    Differences are ``dst - src`` in the scaled units of ``node_features``; ``dphi`` is wrapped
    into [-1, 1) (units of pi). The slopes are clipped to +-``SLOPE_CLIP``.
    """
    xs, xd = x[src], x[dst]
    dr = xd[:, 0] - xs[:, 0]
    dphi = torch.remainder(xd[:, 1] - xs[:, 1] + 1.0, 2.0) - 1.0
    dz = xd[:, 2] - xs[:, 2]
    deta = xd[:, 3] - xs[:, 3]
    safe_dr = torch.where(dr.abs() < 1e-4, torch.full_like(dr, 1e-4), dr.abs()) * torch.where(
        dr < 0, -torch.ones_like(dr), torch.ones_like(dr))
    phislope = torch.clamp(dphi / safe_dr, -SLOPE_CLIP, SLOPE_CLIP)
    rphislope = torch.clamp(0.5 * (xs[:, 0] + xd[:, 0]) * phislope, -SLOPE_CLIP, SLOPE_CLIP)
    return torch.stack([dr, dphi, dz, deta, phislope, rphislope], dim=1)


def strip_mask(module_keys: np.ndarray) -> np.ndarray:
    """Per space point: True when its module (``uint64`` ACTS geometry id, as in
    ``Measurements.module_key`` and ``GraphSample.module``) lies in a strip volume
    (``taas.detector.acts_generic.STRIP_VOLUMES``; TrackML and the ACTS Generic detector number
    their volumes alike).

    The heterogeneous interaction GNN (``GNNConfig.heterogeneous``) picks each node's encoder
    with it. It is not a node feature column: the feature sets (and every checkpoint's input
    width) stay as they are, and a homogeneous model never reads it.
    """
    # imported here: taas.gnn stays free of the detector module's pandas import
    from taas.detector.acts_generic import STRIP_VOLUMES
    from taas.detector.geometry_id import decode

    volume = decode(np.asarray(module_keys, np.uint64))["volume"]
    return np.isin(volume, np.asarray(STRIP_VOLUMES, np.int64))
