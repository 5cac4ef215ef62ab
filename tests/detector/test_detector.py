"""Geometry conventions: transforms, channels, bounds, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from taas.detector import Detector, Modules
from taas.detector.modules import ROTATION_COLUMNS
from taas.errors import InputError


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]


def make_detector(n: int = 20, seed: int = 0) -> Detector:
    rng = np.random.default_rng(seed)
    rot = random_rotations(n, rng).reshape(n, 9)
    hv = rng.uniform(10, 40, n)
    min_hu = rng.uniform(5, 10, n)
    max_hu = min_hu + rng.uniform(0, 5, n)
    n_u, n_v = np.full(n, 200), np.full(n, 100)
    return Detector(Modules(
        module_key=np.arange(n, dtype=np.uint64)[::-1] * 7 + 3,
        volume_id=np.full(n, 8), layer_id=np.full(n, 2), module_id=np.arange(n),
        cx=rng.normal(0, 300, n), cy=rng.normal(0, 300, n), cz=rng.normal(0, 300, n),
        **{c: rot[:, i] for i, c in enumerate(ROTATION_COLUMNS)},
        thickness=np.full(n, 0.15), min_hu=min_hu, max_hu=max_hu, hv=hv,
        pitch_u=2 * max_hu / n_u, pitch_v=2 * hv / n_v, n_u=n_u, n_v=n_v,
    ), name="random")


def test_local_global_round_trip():
    det = make_detector()
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(det), 1000)
    uvw = rng.normal(0, 10, (1000, 3))
    xyz = det.local_to_global(rows, uvw[:, 0], uvw[:, 1], uvw[:, 2])
    np.testing.assert_allclose(det.global_to_local(rows, xyz), uvw, atol=1e-9)
    # the transform is a rigid motion: distances to the centre are kept
    np.testing.assert_allclose(np.linalg.norm(xyz - det.center[rows], axis=1),
                               np.linalg.norm(uvw, axis=1), rtol=1e-12)


def test_channel_centres_and_inverse():
    det = make_detector()
    rows = np.repeat(np.arange(len(det)), 4)
    ch0 = np.tile([0, 1, 199, 100], len(det))
    ch1 = np.tile([0, 99, 50, 1], len(det))
    u, v = det.channel_to_local(rows, ch0, ch1)
    m = det.modules
    # channel 0 is half a pitch inside the lower edge; the last channel half a pitch inside the top
    first = ch0 == 0
    np.testing.assert_allclose(u[first], -m["max_hu"][rows[first]] + m["pitch_u"][rows[first]] / 2)
    last = ch0 == 199
    np.testing.assert_allclose(u[last], m["max_hu"][rows[last]] - m["pitch_u"][rows[last]] / 2)
    back0, back1 = det.local_to_channel(rows, u, v)
    np.testing.assert_array_equal(back0, ch0)
    np.testing.assert_array_equal(back1, ch1)
    assert det.channel_in_range(rows, ch0, ch1).all()
    assert not det.channel_in_range(rows[:2], [200, 0], [0, -1]).any()


def test_trapezoid_bounds_widen_with_v():
    det = make_detector()
    m = det.modules
    rows = np.arange(len(det))
    hv, lo, hi = m["hv"], m["min_hu"], m["max_hu"]
    # just inside the narrow end at v = -hv and the wide end at v = +hv
    assert det.inside_bounds(rows, lo * 0.999, -hv * 0.999).all()
    assert det.inside_bounds(rows, hi * 0.999, hv * 0.999).all()
    wider = hi > lo + 0.1
    assert not det.inside_bounds(rows[wider], (hi[wider] + lo[wider]) / 2 + 0.05,
                                 -hv[wider] * 0.999).any()


def test_unknown_key_names_row():
    det = make_detector()
    keys = det.modules["module_key"].copy()
    keys[5] = 123456789
    with pytest.raises(InputError, match=r"row 5.*column 'geometry_id'.*123456789"):
        det.index_of(keys, source="cells.csv", column="geometry_id")


def test_duplicate_keys_rejected():
    det = make_detector()
    cols = det.modules.columns()
    cols["module_key"] = np.zeros(len(det), np.uint64)
    with pytest.raises(InputError, match="duplicate"):
        Detector(Modules(cols))


def test_parquet_round_trip(tmp_path):
    det = make_detector()
    det.to_parquet(tmp_path / "d.parquet")
    back = Detector.from_parquet(tmp_path / "d.parquet")
    assert back.name == "random"
    assert back.modules.equals(det.modules)


def test_parquet_garbage_is_input_error(tmp_path):
    bad = tmp_path / "d.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"d\.parquet"):
        Detector.from_parquet(bad)
