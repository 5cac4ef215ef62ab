"""Columnar tables with declared column specs: the currency of every stage.

A stage takes and returns ``dict[str, np.ndarray]`` (the stage contract of
``docs/architecture.md``). A ``Table`` subclass declares its columns once as ``TensorSpec``s;
from that one declaration come validation, conversion to and from named tensors, Arrow/parquet
IO and, later, Triton ``config.pbtxt`` entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
import pyarrow as pa

from taas.errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one tensor; -1 marks a ragged (event-dependent) dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...] = (-1,)
    doc: str = ""
    #: The table (tensor-name prefix) whose rows this integer tensor numbers, if any: a stage
    #: given both checks every value against that table's row count.
    index_of: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    def check(self, array: np.ndarray, *, owner: str) -> np.ndarray:
        """Return ``array`` cast to this spec's dtype; raise if its shape cannot match."""
        a = np.asarray(array)
        if a.ndim != len(self.shape) or any(
            want not in (-1, got) for want, got in zip(self.shape, a.shape, strict=True)
        ):
            raise InputError(
                f"{owner}: tensor {self.name!r} has shape {a.shape}, expected {self.shape}"
            )
        if a.dtype != self.dtype:
            lossy = a.dtype.kind == "f" and self.dtype.kind in "iub" and a.size
            if lossy and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
                raise InputError(
                    f"{owner}: tensor {self.name!r} holds non-integer values "
                    f"but is declared {self.dtype}"
                )
            a = a.astype(self.dtype)
        return a


def col(name: str, dtype: str | type, doc: str = "", shape: tuple[int, ...] = (-1,), *,
        index_of: str = "") -> TensorSpec:
    """Shorthand for one column spec (``index_of``: the table whose rows it numbers)."""
    return TensorSpec(name, np.dtype(dtype), shape, doc, index_of)


class Table:
    """A set of equal-length columns declared by ``SPECS`` (or ragged groups, see ``ROW_GROUPS``).

    Subclasses set ``NAME`` and ``SPECS``. Columns are reachable as ``table["x"]`` and
    ``table.x``. ``ROW_GROUPS`` lists groups of column names that share a length; by default all
    columns form one group (a plain table). CSR layouts (offsets + indices) declare two groups.
    """

    NAME: ClassVar[str] = "table"
    SPECS: ClassVar[tuple[TensorSpec, ...]] = ()
    ROW_GROUPS: ClassVar[tuple[tuple[str, ...], ...] | None] = None

    def __init__(self, columns: Mapping[str, np.ndarray] | None = None, /,
                 **kw: np.ndarray) -> None:
        given = dict(columns or {}, **kw)
        missing = [s.name for s in self.SPECS if s.name not in given]
        if missing:
            raise InputError(f"{self.NAME}: missing columns {missing}")
        extra = sorted(set(given) - {s.name for s in self.SPECS})
        if extra:
            raise InputError(f"{self.NAME}: unknown columns {extra}")
        self._data = {s.name: s.check(given[s.name], owner=self.NAME) for s in self.SPECS}
        for group in self._groups():
            lengths = {n: len(self._data[n]) for n in group}
            if len(set(lengths.values())) > 1:
                raise InputError(f"{self.NAME}: columns differ in length: {lengths}")

    @classmethod
    def _groups(cls) -> tuple[tuple[str, ...], ...]:
        return cls.ROW_GROUPS or (tuple(s.name for s in cls.SPECS),)

    @classmethod
    def empty(cls) -> Self:
        """A table with zero rows (every group empty)."""
        return cls({s.name: np.zeros((0, *s.shape[1:]), s.dtype) for s in cls.SPECS})

    def __len__(self) -> int:
        first = self._groups()[0][0]
        return len(self._data[first])

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name]

    def __getattr__(self, name: str) -> np.ndarray:
        data = self.__dict__.get("_data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(f"{type(self).__name__} has no column {name!r}")

    def columns(self) -> dict[str, np.ndarray]:
        """The columns as a plain dict (shared arrays, not copies)."""
        return dict(self._data)

    def take(self, index: np.ndarray) -> Self:
        """Rows selected by an integer or boolean index (plain tables only)."""
        if self.ROW_GROUPS is not None:
            raise TypeError(f"{self.NAME}: take() needs a plain table")
        return type(self)({k: v[index] for k, v in self._data.items()})

    def equals(self, other: Table) -> bool:
        """Exact equality of type and every column (NaN equal to NaN)."""
        return type(self) is type(other) and all(
            np.array_equal(self[s.name], other[s.name], equal_nan=s.dtype.kind == "f")
            for s in self.SPECS
        )

    # --- stage contract -------------------------------------------------------------------
    @classmethod
    def tensor_specs(cls, prefix: str | None = None) -> tuple[TensorSpec, ...]:
        """The specs as named tensors, names prefixed by ``prefix.`` (default: the table name)."""
        p = cls.NAME if prefix is None else prefix
        return tuple(dataclasses.replace(s, name=f"{p}.{s.name}" if p else s.name)
                     for s in cls.SPECS)

    def to_tensors(self, prefix: str | None = None) -> dict[str, np.ndarray]:
        """Named tensors for the stage contract."""
        p = self.NAME if prefix is None else prefix
        return {(f"{p}.{k}" if p else k): v for k, v in self._data.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray], prefix: str | None = None) -> Self:
        """Inverse of ``to_tensors``; other entries of ``tensors`` are ignored."""
        p = cls.NAME if prefix is None else prefix
        names = {s.name: (f"{p}.{s.name}" if p else s.name) for s in cls.SPECS}
        missing = [t for t in names.values() if t not in tensors]
        if missing:
            raise InputError(f"{cls.NAME}: missing tensors {missing}")
        return cls({k: tensors[t] for k, t in names.items()})

    # --- Arrow / parquet ------------------------------------------------------------------
    def to_arrow(self) -> pa.Table:
        """One Arrow table (plain tables; multi-dimensional columns become fixed-size lists)."""
        if self.ROW_GROUPS is not None:
            raise TypeError(f"{self.NAME}: to_arrow() needs a plain table")
        arrays = {}
        for s in self.SPECS:
            a = self._data[s.name]
            if a.ndim > 1:
                width = int(np.prod(a.shape[1:]))
                arrays[s.name] = pa.FixedSizeListArray.from_arrays(a.reshape(-1), width)
            else:
                arrays[s.name] = pa.array(a)
        return pa.table(arrays)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Self:
        """Inverse of ``to_arrow``."""
        out = {}
        for s in cls.SPECS:
            if s.name not in table.column_names:
                raise InputError(f"{cls.NAME}: missing column {s.name!r}")
            column = table.column(s.name).combine_chunks()
            if len(s.shape) > 1:
                flat = column.flatten().to_numpy(zero_copy_only=False)
                out[s.name] = flat.reshape(-1, *s.shape[1:])
            else:
                out[s.name] = column.to_numpy(zero_copy_only=False)
        return cls(out)
