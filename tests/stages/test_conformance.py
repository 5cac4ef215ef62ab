"""Every (stage, backend) of the registry passes ``taas.testing.check_conformance`` on a tiny
simulated event: declared specs, empty events, row-order invariance, agreement with ``cpu``.

Parametrized over the registry itself, so a backend is checked the day it is registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taas.edm.table import col
from taas.events.dataset import open_dataset
from taas.stages.base import RowOrder, Stage, Tolerance
from taas.stages.registry import available, resolve
from taas.testing import (
    ConformanceError,
    canonical_rows,
    check_conformance,
    check_row_order,
    reference_inputs,
)


@pytest.fixture(scope="module")
def tiny_event(tiny_sim_dir: Path) -> tuple[object, dict[str, dict[str, np.ndarray]]]:
    event = open_dataset(tiny_sim_dir).read(open_dataset(tiny_sim_dir).event_ids[0])
    return event.detector, reference_inputs(event.detector, event.cells.to_tensors())


@pytest.mark.parametrize(("stage", "backend"), available())
def test_registered_stage_conforms(stage: str, backend: str, tiny_event: tuple) -> None:
    detector, inputs = tiny_event
    assert stage in inputs, f"no registered pipeline runs stage {stage!r}"
    check_conformance(resolve(stage, backend)(detector), inputs[stage])


def test_canonical_rows_ignore_row_order_but_not_values() -> None:
    a = {"t.id": np.array([3, 1, 2]), "t.x": np.array([0.3, 0.1, 0.2])}
    b = {"t.id": np.array([1, 2, 3]), "t.x": np.array([0.1, 0.2, 0.3])}
    assert canonical_rows(a).keys == canonical_rows(b).keys
    np.testing.assert_array_equal(canonical_rows(a).floats, canonical_rows(b).floats)
    csr = {"p.offsets": np.array([0, 2, 3]), "p.indices": np.array([5, 6, 7])}
    swapped = {"p.offsets": np.array([0, 1, 3]), "p.indices": np.array([7, 5, 6])}
    assert canonical_rows(csr).keys == canonical_rows(swapped).keys
    broken = {"p.offsets": np.array([0, 1, 3]), "p.indices": np.array([7, 6, 5])}
    assert canonical_rows(csr).keys != canonical_rows(broken).keys


class _OrderDependent(Stage):
    """A stage that claims row-order invariance but numbers its output by input position."""

    NAME = "toy"
    BACKEND = "cpu"
    INPUTS = (col("pts.x", "f8"),)
    OUTPUTS = (col("out.first", "i8"),)
    ROW_ORDER = RowOrder(("pts",), index_outputs=("out.first",))

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"out.first": np.zeros(min(len(inputs["pts.x"]), 1), np.int64)}  # "row 0"


def test_row_order_check_catches_an_order_dependent_stage() -> None:
    stage = _OrderDependent(detector=None)  # type: ignore[arg-type]
    with pytest.raises(ConformanceError, match="shuffled"):
        check_row_order(stage, {"pts.x": np.array([5.0, 1.0, 3.0, 2.0, 4.0])}, seed=3)


def test_tolerance_is_validated() -> None:
    with pytest.raises(ValueError, match="row_fraction"):
        Tolerance(row_fraction=1.5)
