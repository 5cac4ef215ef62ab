"""The Generic detector's material table: built from pyacts, non-trivial, saved and reloaded."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from taas.detector.material import (
    CYLINDER,
    DISC,
    MODULE,
    MaterialTable,
    generic_material,
    load_material,
    material_for,
    silicon_only,
    write_material,
)

pytest.importorskip("acts")


@pytest.fixture(scope="module")
def table() -> MaterialTable:
    return generic_material()


def test_beam_pipe_and_supports_present(table):
    cyl = table.rows(CYLINDER)
    pipe = np.flatnonzero(np.isclose(cyl["radius"], 19.0))
    assert len(pipe) == 1  # ACTS GenericDetectorBuilder: r = 19 mm, 0.8 mm beryllium
    assert cyl["thickness"][pipe[0]] / cyl["x0"][pipe[0]] == pytest.approx(0.8 / 352.8, rel=1e-4)
    assert np.any(np.isclose(cyl["radius"], 200.0))  # pixel support tube
    # per-layer material: 4 pixel + 4 short-strip + 2 long-strip barrel cylinders, 38 discs
    assert len(cyl["radius"]) == 12
    assert len(table.rows(DISC)["z"]) == 38
    xx0 = table.x_over_x0[table.columns["kind"] != MODULE]
    assert np.all((xx0 > 1e-3) & (xx0 < 0.05))


def test_module_material(table, generic_detector):
    mods = table.rows(MODULE)
    assert len(mods["kind"]) == len(generic_detector)
    slabs = table.module_slabs(generic_detector)
    xx0 = slabs[:, 0] / slabs[:, 1]
    pixel = np.isin(generic_detector.modules["volume_id"], (7, 8, 9))
    assert np.all((xx0[pixel] > 1e-3) & (xx0[pixel] < 3e-3))  # 0.15 mm silicon: 0.16 % X0
    assert np.all(xx0 < 5e-3)
    np.testing.assert_allclose(slabs[:, 0], generic_detector.modules["thickness"], rtol=1e-6)


def test_roundtrip_and_fallback(table, generic_detector, tmp_path, caplog):
    write_material(table, tmp_path)
    back = load_material(generic_detector, tmp_path)
    for name in ("kind", "module_key", "thickness", "x0", "radius", "z"):
        np.testing.assert_array_equal(back.columns[name], table.columns[name])

    from tests.tracking.toy import barrel_detector

    toy = barrel_detector()
    with caplog.at_level(logging.INFO, logger="taas.detector.material"):
        fallback = material_for(toy)
    assert fallback.source == "silicon-only"
    assert "silicon only" in caplog.text
    assert len(fallback.rows(CYLINDER)["radius"]) == 0
    np.testing.assert_allclose(silicon_only(toy).columns["thickness"],
                               toy.modules["thickness"])
