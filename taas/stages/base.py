"""The stage contract: named tensors in, named tensors out, specs declared once.

A stage is what a direct call runs, what a Triton model's ``execute`` wraps and what a Snakemake
rule drives. Backends subclass ``Stage`` and fill in one hook, ``compute``; ``run`` checks inputs
and outputs against the declared specs so every backend honours the same contract. Whatever a
stage needs (detector, weights) is given to the constructor, once per process, never per event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from taas.detector.detector import Detector
from taas.edm.table import TensorSpec
from taas.errors import InputError


@dataclass(frozen=True)
class RowOrder:
    """How a stage's result follows a shuffle of its input rows (checked by ``taas.testing``).

    ``shuffled``: input tables (tensor-name prefixes) whose rows are permuted together;
    ``index_inputs``: input tensors holding row numbers of those tables (renumbered with them);
    ``aligned_outputs``: output tables row-aligned with the shuffled rows; ``index_outputs``:
    output tensors holding row numbers of the shuffled tables.
    """

    shuffled: tuple[str, ...]
    index_inputs: tuple[str, ...] = ()
    aligned_outputs: tuple[str, ...] = ()
    index_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tolerance:
    """How closely a backend must reproduce the reference backend (``taas.testing``).

    Floats within ``rtol``/``atol`` of the reference, row for row; with ``row_fraction`` > 0
    (fixed-point or bf16 scores moving rows across a cut) only the rows' integer columns are
    compared, as sets, and at most that fraction of them may differ.
    """

    rtol: float = 1e-9
    atol: float = 1e-12
    row_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.rtol < 0 or self.atol < 0 or not 0 <= self.row_fraction < 1:
            raise ValueError(f"bad tolerance {self}: rtol, atol >= 0 and 0 <= row_fraction < 1")


class Stage(ABC):
    """One reconstruction step on one backend.

    Subclasses set ``NAME`` (the stage, e.g. ``"clustering"``), ``BACKEND`` (``"cpu"``,
    ``"gpu"``, ``"fpga"``), ``INPUTS`` and ``OUTPUTS``, and implement ``compute``.
    """

    NAME: ClassVar[str]
    BACKEND: ClassVar[str]
    INPUTS: ClassVar[tuple[TensorSpec, ...]]
    OUTPUTS: ClassVar[tuple[TensorSpec, ...]]
    #: Which input rows may be shuffled without changing the result (None: the result depends
    #: on input order by design, and the stage base says why).
    ROW_ORDER: ClassVar[RowOrder | None] = None
    #: How closely this backend reproduces the reference (cpu) backend.
    CONFORMANCE_TOLERANCE: ClassVar[Tolerance] = Tolerance()

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    @property
    def device(self) -> str:
        """The device this instance actually runs on (reports must name it)."""
        return "cpu"

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check inputs (specs, then ``validate_event``), compute, check outputs."""
        checked = {s.name: s.check(self._require(inputs, s.name), owner=self.qualified_name)
                   for s in self.INPUTS}
        validate_event(checked, self.INPUTS, owner=self.qualified_name)
        outputs = self.compute(checked)
        return {s.name: s.check(self._require(outputs, s.name, produced=True),
                                owner=self.qualified_name) for s in self.OUTPUTS}

    @abstractmethod
    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The stage's work, on inputs already checked against ``INPUTS``."""

    @property
    def qualified_name(self) -> str:
        return f"{self.NAME}_{self.BACKEND}"

    def _require(self, tensors: Mapping[str, np.ndarray], name: str,
                 produced: bool = False) -> np.ndarray:
        if name not in tensors:
            verb = "did not produce" if produced else "needs"
            raise InputError(f"{self.qualified_name} {verb} tensor {name!r}; "
                             f"got {sorted(tensors)}")
        return tensors[name]


def validate_event(tensors: Mapping[str, np.ndarray], specs: tuple[TensorSpec, ...], *,
                   owner: str) -> None:
    """``InputError`` naming tensor, row and reason for an event no stage can trust.

    Three checks every stage gets from its specs, so that a served model answers a malformed
    request with "bad event" instead of an internal error or, worse, a silent wrong result:
    floats are finite; an index (``TensorSpec.index_of``) lies within the table it numbers when
    that table is among the inputs; CSR offsets start at 0, never decrease and end at the
    length of their index list.
    """
    for spec in specs:
        a = tensors[spec.name]
        if a.dtype.kind == "f" and a.size:
            bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
            if bad.any():
                raise InputError(f"{owner}: {int(bad.sum())} row(s) of {spec.name!r} hold "
                                 "NaN or infinite values", row=int(np.argmax(bad)),
                                 column=spec.name)
        if spec.index_of and a.size:
            n = _rows(tensors, spec.index_of)
            if n is not None:
                bad = ((a < 0) | (a >= n)).reshape(len(a), -1).any(axis=1)
                if bad.any():
                    row = int(np.argmax(bad))
                    raise InputError(f"{owner}: {spec.name!r} = {a[row]} lies outside the "
                                     f"{n} rows of {spec.index_of!r}", row=row, column=spec.name)
        if spec.name.endswith("offsets"):
            indices = tensors.get(spec.name.replace("offsets", "indices"))
            if indices is not None:
                _check_offsets(a, len(indices), spec.name, owner)


def _rows(tensors: Mapping[str, np.ndarray], table: str) -> int | None:
    """Row count of ``table`` among ``tensors`` (its first column's length), or None."""
    prefix = f"{table}."
    return next((len(a) for name, a in tensors.items() if name.startswith(prefix)), None)


def _check_offsets(offsets: np.ndarray, n_indices: int, name: str, owner: str) -> None:
    if len(offsets) == 0:
        if n_indices:
            raise InputError(f"{owner}: {name!r} is empty but its index list has {n_indices} "
                             "entries", column=name)
        return
    steps = np.diff(offsets)
    if offsets[0] != 0 or offsets[-1] != n_indices or (steps < 0).any():
        row = int(np.argmax(steps < 0)) + 1 if (steps < 0).any() else (
            0 if offsets[0] != 0 else len(offsets) - 1)
        raise InputError(f"{owner}: {name!r} must rise from 0 to {n_indices} (the length of its "
                         f"index list), never decreasing; row {row} holds {offsets[row]}",
                         row=row, column=name)


@runtime_checkable
class EarlyWork(Protocol):
    """A stage with host work that needs only some of its inputs (``EARLY_INPUTS``), which
    ``Pipeline.run`` offers it as soon as earlier stages have made them (``start_early``), so
    the work overlaps the stages in between -- on a GPU the host would otherwise wait while
    they run. The stage's own run uses the result when it gets the same input arrays, and
    does the work itself otherwise (a Triton per-stage model, a test), so outputs never depend
    on whether it started early. ``drop_early`` forgets work its run did not use."""

    EARLY_INPUTS: ClassVar[tuple[str, ...]]

    def start_early(self, inputs: Mapping[str, np.ndarray]) -> None: ...

    def drop_early(self) -> None: ...

