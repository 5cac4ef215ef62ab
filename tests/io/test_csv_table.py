"""read_csv_columns: typed columns, and errors that name file, row and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from taas.errors import InputError
from taas.io.csv_table import csv_header, read_csv_columns, write_csv_columns

COLUMNS = {"id": "u8", "n": "i4", "x": "f8", "q": "f4"}
GOOD = "id,n,x,q\n18446744073709551615,-3,0.1,1.5\n7,4,2.5e-300,-0.25\n"


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _error(path: Path, columns: dict = COLUMNS) -> InputError:
    with pytest.raises(InputError) as info:
        read_csv_columns(path, columns)
    err = info.value
    assert err.path == str(path)
    assert path.name in str(err)
    return err


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_reads_typed_columns(tmp_path: Path, name: str) -> None:
    data = read_csv_columns(_write(tmp_path, GOOD, name), COLUMNS)
    assert data["id"].dtype == np.uint64
    assert data["id"][0] == 2**64 - 1
    assert data["n"].dtype == np.int32
    assert list(data["n"]) == [-3, 4]
    assert data["x"].dtype == np.float64
    assert data["x"][1] == 2.5e-300
    assert data["q"].dtype == np.float32
    assert list(data["q"]) == [1.5, -0.25]


def test_leading_unnamed_index_column_and_extra_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, ",n,other,x\n0,1,a,0.5\n1,2,b,1.5\n")
    assert csv_header(path) == ["", "n", "other", "x"]
    data = read_csv_columns(path, {"n": "i8", "x": "f8"})
    assert list(data["n"]) == [1, 2]
    assert list(data["x"]) == [0.5, 1.5]


def test_header_only_gives_empty_arrays(tmp_path: Path) -> None:
    data = read_csv_columns(_write(tmp_path, "id,n,x,q\n"), COLUMNS)
    assert all(len(v) == 0 for v in data.values())
    assert data["q"].dtype == np.float32


def test_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cols = {
        "u": np.array([0, 1, 2**64 - 1], dtype=np.uint64),
        "i": np.array([-(2**62), 0, 5], dtype=np.int64),
        "d": np.array([1 / 3, -1e-310, 123456.789e100]),
        "f": rng.normal(size=3).astype(np.float32),
        "b": np.array([True, False, True]),
    }
    path = tmp_path / "rt.csv"
    write_csv_columns(path, cols)
    assert path.read_text().splitlines()[0] == "u,i,d,f,b"
    back = read_csv_columns(path, {k: v.dtype for k, v in cols.items()})
    for k, v in cols.items():
        assert back[k].dtype == v.dtype, k
        assert np.array_equal(back[k], v), k


def test_missing_file(tmp_path: Path) -> None:
    _error(tmp_path / "absent.csv")


def test_missing_column(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, "id,n,x\n1,2,3.0\n"))
    assert err.column == "q"
    assert "'q'" in str(err)


def test_renamed_column(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, "id,count,x,q\n1,2,3.0,1\n"))
    assert err.column == "n"
    assert "count" in str(err)


def test_string_in_numeric_column(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, GOOD + "8,5,abc,1\n"))
    assert (err.row, err.column) == (2, "x")
    assert "row 2" in str(err)
    assert "'x'" in str(err)
    assert "abc" in str(err)


def test_float_in_integer_column(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, GOOD + "8,5.5,1,1\n"))
    assert (err.row, err.column) == (2, "n")


def test_negative_in_unsigned_column(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, "id,n,x,q\n1,1,1,1\n-8,5,1,1\n"))
    assert (err.row, err.column) == (1, "id")


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_float(tmp_path: Path, bad: str) -> None:
    err = _error(_write(tmp_path, GOOD + f"8,5,1,{bad}\n"))
    assert (err.row, err.column) == (2, "q")
    assert "row 2" in str(err)
    assert "'q'" in str(err)


def test_empty_value(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, GOOD + "8,,1,1\n"))
    assert (err.row, err.column) == (2, "n")


def test_integer_overflow(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, GOOD + "8,3000000000,1,1\n"))
    assert (err.row, err.column) == (2, "n")


def test_truncated_gzip(tmp_path: Path) -> None:
    text = "id,n,x,q\n" + "".join(f"{i},{i},{i * 0.5},1\n" for i in range(20000))
    path = tmp_path / "t.csv.gz"
    data = gzip.compress(text.encode())
    path.write_bytes(data[: len(data) // 2])
    err = _error(path)
    assert "truncated" in str(err).lower() or "corrupt" in str(err).lower()


def test_ragged_row(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, GOOD + "1,2,3,4,5\n"))
    assert "malformed" in str(err)
