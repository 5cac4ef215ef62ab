"""Find the file of one table of one event, plain or gzipped."""

from __future__ import annotations

from pathlib import Path

from taas.errors import InputError


def has_csv(directory: str | Path, stem: str) -> bool:
    """Whether ``directory/stem.csv`` or ``directory/stem.csv.gz`` exists (optional tables)."""
    return any((Path(directory) / f"{stem}{suffix}").is_file() for suffix in (".csv", ".csv.gz"))


def find_csv(directory: str | Path, stem: str) -> Path:
    """``directory/stem.csv`` or ``directory/stem.csv.gz``, whichever exists (plain first)."""
    directory = Path(directory)
    for suffix in (".csv", ".csv.gz"):
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise InputError("file not found (also looked for .csv.gz)", path=directory / f"{stem}.csv")
