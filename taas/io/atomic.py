"""Writes that never leave a partial file behind: every output of taas goes through here.

``atomic_write`` does it for one file, ``atomic_directory`` for a directory of files written one
by one (a reconstruction job's per-event outputs): readers, and a workflow manager deciding what
to rerun, see the complete directory or none.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_abandoned(path: Path) -> list[Path]:
    """Remove the staging directories of ``path`` whose writer process is gone (a killed job's
    leftovers); returns what was removed. A live writer's staging directory is left alone."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:tmp|old)(\d+)$")
    removed = []
    for sibling in path.parent.glob(f".{path.name}.*"):
        match = pattern.match(sibling.name)
        if match and not _alive(int(match.group(1))):
            _remove(sibling)
            removed.append(sibling)
    return removed


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Fill a staging directory beside ``path`` inside the ``with`` block; on success it
    replaces ``path`` whole (an old ``path`` is removed, never mixed with new files), on an
    exception it is removed and ``path`` is left as it was.

    A process killed inside the block leaves only its staging directory (``.NAME.tmpPID``),
    never a partial ``path``; the next ``atomic_directory`` on the same path removes it. So a
    job killed part way and run again writes every file exactly once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(path)
    staging = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if staging.exists():
        _remove(staging)
    staging.mkdir()
    try:
        yield staging
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            path.rename(old)
            staging.rename(path)
            _remove(old)
        else:
            staging.rename(path)
    finally:
        if staging.exists():
            _remove(staging)
