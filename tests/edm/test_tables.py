"""The stage contract: tables <-> named tensors <-> Arrow, with declared dtypes and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from taas.edm import Cells, Measurements, ProtoTracks, Spacepoints, Tracks
from taas.errors import InputError


def cells(n: int = 5) -> Cells:
    rng = np.random.default_rng(0)
    return Cells(module_key=rng.integers(0, 2**63, n).astype(np.uint64),
                 ch0=rng.integers(0, 300, n), ch1=rng.integers(0, 300, n),
                 value=rng.random(n), timestamp=np.zeros(n), hit_id=np.arange(n))


def test_columns_take_declared_dtypes():
    c = cells()
    assert c["ch0"].dtype == np.int32
    assert c.value.dtype == np.float32
    assert len(c) == 5


def test_tensor_round_trip_and_specs():
    c = cells()
    tensors = c.to_tensors()
    assert set(tensors) == {f"cells.{s.name}" for s in Cells.SPECS}
    assert Cells.from_tensors(tensors).equals(c)
    specs = {s.name: s for s in Cells.tensor_specs()}
    assert specs["cells.module_key"].dtype == np.uint64
    assert specs["cells.ch0"].shape == (-1,)


def test_arrow_round_trip_with_matrix_columns():
    n = 3
    rng = np.random.default_rng(1)
    t = Tracks(module_key=np.arange(n, dtype=np.uint64), params=rng.random((n, 6)),
               covariance=rng.random((n, 6, 6)), chi2=rng.random(n), ndf=np.arange(n),
               meas_offsets=[0, 3, 5, 9], meas_indices=np.arange(9))
    assert len(t) == n
    assert Tracks.from_tensors(t.to_tensors()).equals(t)
    m = Measurements.empty()
    assert Measurements.from_arrow(m.to_arrow()).equals(m)


def test_csr_groups_have_their_own_lengths():
    p = ProtoTracks(offsets=[0, 2, 5], indices=[4, 1, 0, 2, 3])
    assert len(p) == 2
    assert len(ProtoTracks.empty()) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ch0": np.arange(4)}, "differ in length"),
        ({"ch0": np.array([1.5, 2, 3, 4, 5])}, "non-integer"),
        ({"value": np.zeros((5, 2))}, "shape"),
    ],
)
def test_bad_columns_are_rejected(change, message):
    cols = cells().columns()
    cols.update(change)
    with pytest.raises(InputError, match=message):
        Cells(cols)


def test_missing_and_unknown_columns():
    cols = cells().columns()
    del cols["ch1"]
    with pytest.raises(InputError, match="missing columns"):
        Cells(cols)
    with pytest.raises(InputError, match="unknown columns"):
        Cells(cells().columns(), extra=np.zeros(5))
    with pytest.raises(InputError, match="missing tensors"):
        Spacepoints.from_tensors({})
