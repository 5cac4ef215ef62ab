"""Writes that never leave a partial file behind: every output of taas goes through here."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file beside ``path`` and rename it into place, so a failure
    (or a crash) leaves either the old file or none, never a truncated one; the temporary name
    carries the process id, so concurrent writers of one path do not collide."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
