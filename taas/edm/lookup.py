"""Rows of ids in an id column: the join every truth link and table lookup needs."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def find_rows(table_ids: npt.ArrayLike, keys: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Row in ``table_ids`` of each key, and whether it is there at all.

    ``table_ids`` need not be sorted; with duplicates the first row (stable order) is taken.
    Rows where ``found`` is False are 0 (valid indices, meaningless values): callers either
    raise naming the first missing key or mask them out.
    """
    table_ids = np.asarray(table_ids)
    keys = np.asarray(keys, dtype=table_ids.dtype)
    if len(table_ids) == 0:
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    order = np.argsort(table_ids, kind="stable")
    sorted_ids = table_ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, keys), len(sorted_ids) - 1)
    found = sorted_ids[pos] == keys
    return np.where(found, order[pos], 0).astype(np.int64), found
