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
from typing import ClassVar

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
        """Check inputs, compute, check outputs."""
        checked = {s.name: s.check(self._require(inputs, s.name), owner=self.qualified_name)
                   for s in self.INPUTS}
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
