"""Checks every event reader applies to cells before an ``Event`` exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taas.detector.detector import Detector
from taas.errors import InputError


def check_cells(detector: Detector, module_keys: np.ndarray, ch0: np.ndarray, ch1: np.ndarray,
                *, path: Path, key_column: str,
                channel_columns: tuple[str, str] = ("ch0", "ch1")) -> None:
    """Cells exist, sit on known modules and inside each module's readout grid."""
    if len(module_keys) == 0:
        raise InputError("empty event: no cells", path=path)
    rows = detector.index_of(module_keys, source=path, column=key_column)
    in_grid = detector.channel_in_range(rows, ch0, ch1)
    if not np.all(in_grid):
        row = int(np.flatnonzero(~in_grid)[0])
        outside_u = not detector.channel_in_range(rows[row:row + 1], ch0[row:row + 1], [0])[0]
        raise InputError(f"channel ({ch0[row]}, {ch1[row]}) lies outside its module's readout "
                         f"grid ({int((~in_grid).sum())} cells affected)", path=path, row=row,
                         column=channel_columns[0] if outside_u else channel_columns[1])
