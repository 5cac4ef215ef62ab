"""Errors raised for bad input, carrying where the problem is.

Malformed files are the commonest failure users meet; an error that names the file, row and
column lets them fix the file instead of reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class TaasError(Exception):
    """Base class of every error taas raises on purpose."""


class InputError(TaasError, ValueError):
    """Bad input data: names the file, row (0-based data row, where known) and column."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if self.path is not None:
            where.append(f"file {self.path}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
