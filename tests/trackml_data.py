"""Location of the shared real TrackML sample; tests using it skip cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

TRACKML_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trackml"
TRACKML_EVENT_ID = 1

needs_trackml = pytest.mark.skipif(
    not (TRACKML_DIR / "detectors.csv.gz").is_file(),
    reason=f"shared TrackML sample not found at {TRACKML_DIR}",
)
