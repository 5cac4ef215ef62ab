"""Read and write typed CSV tables, with errors that point at the offending file, row and column.

Every CSV source (ACTS/traccc, TrackML) goes through ``read_csv_columns``: the fast path parses
with Arrow's multithreaded reader straight into the requested dtypes; only when that fails does
a slower pandas pass run to find the first bad value, so good files pay nothing for the
diagnostics. Rows are 0-based data rows (the header is not counted).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from taas.errors import InputError

log = logging.getLogger(__name__)

_DECOMPRESS_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def csv_header(path: str | Path) -> list[str]:
    """Column names of a CSV (or .csv.gz) file; a missing or empty file raises ``InputError``."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        with _open_text(path) as fh:
            header = next(csv.reader(fh), None)
    except (*_DECOMPRESS_ERRORS, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read CSV header: {exc}", path=path) from exc
    if not header:
        raise InputError("empty file: no CSV header", path=path)
    return header


def _arrow_type(dtype: np.dtype) -> pa.DataType:
    """Parse type for a requested dtype: integers at 64 bit (range-checked later), floats as is."""
    if dtype.kind == "u":
        return pa.uint64()
    if dtype.kind in "ib":
        return pa.int64()
    if dtype.kind == "f":
        return pa.float32() if dtype.itemsize == 4 else pa.float64()
    raise TypeError(f"unsupported CSV column dtype {dtype}")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _locate_bad_value(path: Path, columns: Mapping[str, np.dtype]) -> InputError | None:
    """Slow pass: the first value that does not parse as its column's dtype."""
    try:
        frame = pd.read_csv(path, usecols=list(columns), dtype=str, keep_default_na=False,
                            engine="c")
    except (*_DECOMPRESS_ERRORS, pd.errors.ParserError, ValueError, OSError) as exc:
        return InputError(f"malformed CSV: {exc}", path=path)
    for name, dtype in columns.items():
        text = frame[name].str.strip()
        if dtype.kind in "iub":
            pattern = r"\d+" if dtype.kind == "u" else r"[+-]?\d+"
            bad = ~text.str.fullmatch(pattern).to_numpy(dtype=bool)
        else:
            nan_text = text.str.lower().isin(["nan", "+nan", "-nan"])
            bad = (pd.to_numeric(text, errors="coerce").isna() & ~nan_text).to_numpy()
        if bad.any():
            row = _first(bad)
            want = {"u": "a non-negative integer", "i": "an integer", "b": "0 or 1"}.get(
                dtype.kind, "a number")
            return InputError(f"value {frame[name].iloc[row]!r} is not {want}",
                              path=path, row=row, column=name)
    return None


def _cast(path: Path, name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Range-check and cast one parsed column; floats must be finite."""
    if dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            row = _first(~finite)
            raise InputError(f"non-finite value {float(values[row])!r}", path=path, row=row,
                             column=name)
        return values.astype(dtype, copy=False)
    if dtype.kind == "b":
        bad = (values != 0) & (values != 1)
        if bad.any():
            row = _first(bad)
            raise InputError(f"value {values[row]} is not 0 or 1", path=path, row=row,
                             column=name)
        return values.astype(bool)
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        bad = (values < info.min) | (values > info.max)
        row = _first(bad)
        raise InputError(f"value {int(values[row])} out of range for {dtype}", path=path, row=row,
                         column=name)
    return values.astype(dtype, copy=False)


def read_csv_columns(path: str | Path,
                     columns: Mapping[str, npt.DTypeLike]) -> dict[str, np.ndarray]:
    """Read the named columns of a CSV / .csv.gz file as numpy arrays of the given dtypes.

    Other columns (including a leading unnamed index column) are ignored. Missing columns,
    values that do not parse, empty values, NaN/inf in float columns and integer overflow raise
    ``InputError`` naming the file, the 0-based data row and the column.
    """
    path = Path(path)
    wanted = {name: np.dtype(dtype) for name, dtype in columns.items()}
    header = csv_header(path)
    missing = [name for name in wanted if name not in header]
    if missing:
        raise InputError(f"missing column(s) {missing}; the file has {header}", path=path,
                         column=missing[0])
    convert = pacsv.ConvertOptions(
        include_columns=list(wanted),
        column_types={name: _arrow_type(dt) for name, dt in wanted.items()},
        null_values=[""],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        table = pacsv.read_csv(str(path), convert_options=convert)
    except pa.ArrowInvalid as exc:
        located = _locate_bad_value(path, wanted)
        raise (located or InputError(f"malformed CSV: {exc}", path=path)) from exc
    except (*_DECOMPRESS_ERRORS, OSError) as exc:
        raise InputError(f"cannot read (truncated or corrupt?): {exc}", path=path) from exc

    out = {}
    for name, dtype in wanted.items():
        column = table.column(name)
        if column.null_count:
            row = _first(column.is_null().to_numpy(zero_copy_only=False))
            raise InputError("empty value", path=path, row=row, column=name)
        values = column.to_numpy()
        out[name] = _cast(path, name, values, dtype)
    return out


def write_csv_columns(path: str | Path, columns: Mapping[str, np.ndarray]) -> None:
    """Write columns as a plain CSV with an unquoted header, in the given order.

    Floats are written in their shortest round-trip form (float32 columns as float32), so a
    read with the same dtypes gives back identical arrays. Booleans are written as 0/1.
    """
    arrays = {}
    for name, values in columns.items():
        a = np.asarray(values)
        arrays[name] = pa.array(a.astype(np.int8) if a.dtype.kind == "b" else a)
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    pacsv.write_csv(pa.table(arrays), str(path), options)
