"""``atomic_directory``: the whole directory or none, never a mix of old and new files, and a
killed writer's leftovers removed by the next writer (but never a live writer's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taas.io.atomic import atomic_directory, remove_abandoned


def test_directory_appears_whole_and_replaces_the_old_one(tmp_path: Path):
    out = tmp_path / "reco"
    out.mkdir()
    (out / "event000000009-reco.npz").write_text("from an earlier run")
    with atomic_directory(out) as staging:
        (staging / "event000000000-reco.npz").write_text("new")
        assert not (out / "event000000000-reco.npz").exists()  # invisible until done
    assert sorted(p.name for p in out.iterdir()) == ["event000000000-reco.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reco"]


def _fail_half_way(out: Path) -> None:
    with atomic_directory(out) as staging:
        (staging / "event000000000-reco.npz").write_text("partial")
        raise RuntimeError("bad event")


def test_a_failure_leaves_the_old_directory_and_no_staging(tmp_path: Path):
    out = tmp_path / "reco"
    with pytest.raises(RuntimeError, match="bad event"):
        _fail_half_way(out)
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "event000000009-reco.npz").write_text("from an earlier run")
    with pytest.raises(RuntimeError, match="bad event"):
        _fail_half_way(out)
    assert [p.name for p in tmp_path.iterdir()] == ["reco"]
    assert [p.name for p in out.iterdir()] == ["event000000009-reco.npz"]


def test_dead_writers_leftovers_are_removed_live_ones_kept(tmp_path: Path):
    out = tmp_path / "reco"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    abandoned = tmp_path / f".reco.tmp{int(dead.stdout)}"
    abandoned.mkdir()
    (abandoned / "event000000000-reco.npz").write_text("killed part way")
    live = tmp_path / f".reco.tmp{os.getppid()}"  # our parent: alive
    live.mkdir()
    assert remove_abandoned(out) == [abandoned]
    assert live.is_dir()
    assert not abandoned.exists()
