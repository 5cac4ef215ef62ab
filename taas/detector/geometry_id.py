"""ACTS GeometryIdentifier packing, used as taas' 64-bit module key.

Layout, most significant first: volume 8 | boundary 8 | layer 12 | approach 8 | sensitive 20 |
extra 8 bits (ACTS Core/include/Acts/Geometry/GeometryIdentifier.hpp). TrackML modules are keyed
with the same packing (volume_id, layer_id, module_id -> volume, layer, sensitive), so keys from
both sources share one space.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: (field name, bit width) from the most significant bits down.
FIELDS: tuple[tuple[str, int], ...] = (
    ("volume", 8),
    ("boundary", 8),
    ("layer", 12),
    ("approach", 8),
    ("sensitive", 20),
    ("extra", 8),
)


def _shifts() -> dict[str, tuple[int, int]]:
    shift = 64
    out = {}
    for name, width in FIELDS:
        shift -= width
        out[name] = (shift, (1 << width) - 1)
    return out


_SHIFT_MASK = _shifts()


def encode(**fields: npt.ArrayLike) -> np.ndarray:
    """Pack named fields (arrays or scalars) into uint64 keys; unknown names or overflow raise."""
    unknown = set(fields) - set(_SHIFT_MASK)
    if unknown:
        raise ValueError(
            f"unknown geometry id fields {sorted(unknown)}; valid: {list(_SHIFT_MASK)}"
        )
    key: np.ndarray = np.zeros((), dtype=np.uint64)
    for name, value in fields.items():
        shift, mask = _SHIFT_MASK[name]
        v = np.asarray(value, dtype=np.int64)
        if np.any((v < 0) | (v > mask)):
            raise ValueError(f"geometry id field {name!r} out of range 0..{mask}")
        key = key | (v.astype(np.uint64) << np.uint64(shift))
    return np.asarray(key, dtype=np.uint64)


def decode(keys: npt.ArrayLike) -> dict[str, np.ndarray]:
    """Unpack uint64 keys into a dict of int64 arrays, one per field."""
    k = np.asarray(keys, dtype=np.uint64)
    return {
        name: ((k >> np.uint64(shift)) & np.uint64(mask)).astype(np.int64)
        for name, (shift, mask) in _SHIFT_MASK.items()
    }
