"""The ACTS Generic detector as a module table, and the digitization config handed to ACTS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taas.detector.acts_generic import (
    SEGMENTATION,
    build_generic_detector,
    write_digitization_config,
)
from taas.detector.detector import Detector
from taas.detector.geometry_id import encode

TRACKML_DETECTORS = Path("/work/shared/data/trackml/detectors.csv.gz")


def test_module_count_and_keys(generic_detector: Detector) -> None:
    m = generic_detector.modules
    assert len(m) == 18728
    assert np.array_equal(
        m["module_key"], encode(volume=m["volume_id"], layer=m["layer_id"],
                                sensitive=m["module_id"]))
    assert set(np.unique(m["volume_id"]).tolist()) == set(SEGMENTATION)


def test_built_once_per_process(generic_detector: Detector) -> None:
    assert build_generic_detector() is generic_detector


def test_rotations_are_right_handed_frames(generic_detector: Detector) -> None:
    rot = generic_detector.rotation
    assert np.allclose(np.einsum("nki,nkj->nij", rot, rot), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rot), 1.0)


def test_bounds_and_segmentation(generic_detector: Detector) -> None:
    m = generic_detector.modules
    assert np.all(m["min_hu"] <= m["max_hu"])
    assert np.any(m["min_hu"] < m["max_hu"])  # endcap trapezoids exist
    assert np.allclose(m["n_u"] * m["pitch_u"], 2 * m["max_hu"])
    assert np.allclose(m["n_v"] * m["pitch_v"], 2 * m["hv"])
    nominal = np.array([SEGMENTATION[v] for v in m["volume_id"]])
    assert np.all(np.abs(m["pitch_u"] / nominal[:, 0] - 1) < 0.05)
    assert np.all(np.abs(m["pitch_v"] / nominal[:, 1] - 1) < 0.1)
    assert set(np.round(m["thickness"], 9).tolist()) == {0.15, 0.25, 0.35}


def test_trapezoid_orientation_matches_acts(generic_detector: Detector) -> None:
    """Width grows with v: a point near the wide end (+v) is inside, its mirror (-v) is not."""
    import acts

    from taas.detector.acts_generic import generic_tracking_geometry

    m = generic_detector.modules
    surfaces: list = []
    generic_tracking_geometry()[1].visitSurfaces(surfaces.append)
    trapezoids = [s for s in surfaces if type(s.bounds).__name__ == "TrapezoidBounds"]
    assert trapezoids
    for s in trapezoids[:: max(len(trapezoids) // 20, 1)]:
        row = generic_detector.index_of([s.geometryId.value])
        u = 0.5 * (m["min_hu"][row] + m["max_hu"][row])[0] + 0.01
        v = 0.9 * m["hv"][row][0]
        assert s.bounds.inside(acts.Vector2(u, v))
        assert not s.bounds.inside(acts.Vector2(u, -v))
        assert generic_detector.inside_bounds(row, [u], [v])[0]
        assert not generic_detector.inside_bounds(row, [u], [-v])[0]


def test_local_frame_matches_acts(generic_detector: Detector) -> None:
    import acts

    from taas.detector.acts_generic import generic_tracking_geometry

    gctx = acts.GeometryContext.dangerouslyDefaultConstruct()
    surfaces: list = []
    generic_tracking_geometry()[1].visitSurfaces(surfaces.append)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(surfaces), 50, replace=False):
        s = surfaces[i]
        row = generic_detector.index_of([s.geometryId.value])
        u, v = rng.uniform(-5, 5, 2)
        acts_xyz = np.array(s.localToGlobal(gctx, acts.Vector2(u, v), acts.Vector3(0, 0, 1)))
        ours = generic_detector.local_to_global(row, [u], [v])[0]
        assert np.allclose(ours, acts_xyz, atol=1e-9)
        normal = np.array(s.normal(gctx, acts.Vector3(*acts_xyz), acts.Vector3(0, 0, 1)))
        assert np.allclose(generic_detector.rotation[row[0]][:, 2], normal)


@pytest.mark.skipif(not TRACKML_DETECTORS.is_file(), reason="TrackML detectors.csv absent")
def test_matches_trackml_detector(generic_detector: Detector) -> None:
    """Same modules as TrackML: centres within 4 um, same bounds and thickness.

    Endcap module numbers differ, so modules are matched by position within each layer.
    """
    tm = pd.read_csv(TRACKML_DETECTORS)
    m = generic_detector.modules
    assert len(tm) == len(m)
    for (vol, lay), group in tm.groupby(["volume_id", "layer_id"]):
        ours = np.flatnonzero((m["volume_id"] == vol) & (m["layer_id"] == lay))
        assert len(ours) == len(group)
        a = generic_detector.center[ours]
        b = group[["cx", "cy", "cz"]].to_numpy()
        dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
        nearest = dist.argmin(axis=1)
        assert dist[np.arange(len(a)), nearest].max() < 4e-3
        assert len(np.unique(nearest)) == len(a)  # one-to-one
        g = group.iloc[nearest]
        assert np.allclose(m["min_hu"][ours], g["module_minhu"])
        assert np.allclose(m["max_hu"][ours], g["module_maxhu"])
        assert np.allclose(m["hv"][ours], g["module_hv"])
        assert np.allclose(m["thickness"][ours], g["module_t"])
        assert np.allclose(m["rot_zw"][ours], g["rot_zw"], atol=1e-6)


def _lookup(entries: list[dict], vol: int, lay: int, sen: int) -> dict:
    """ACTS' hierarchy lookup: the most specific entry wins."""
    best, depth = None, -1
    for e in entries:
        keys = [("volume", vol), ("layer", lay), ("sensitive", sen)]
        given = [(k, v) for k, v in keys if k in e]
        if all(e[k] == v for k, v in given) and len(given) > depth:
            best, depth = e, len(given)
    assert best is not None
    return best["value"]["geometric"]


def test_digitization_config_reproduces_grid(generic_detector: Detector,
                                             tmp_path: Path) -> None:
    path = tmp_path / "digi.json"
    write_digitization_config(generic_detector, path)
    doc = json.loads(path.read_text())
    assert doc["acts-geometry-hierarchy-map"]["value-identifier"] == "digitization-configuration"
    m = generic_detector.modules
    by_layer: dict[tuple[int, int], list[dict]] = {}
    for e in doc["entries"]:
        by_layer.setdefault((e["volume"], e["layer"]), []).append(e)
    rng = np.random.default_rng(3)
    for row in rng.choice(len(m), 500, replace=False):
        vol, lay, sen = (int(m[c][row]) for c in ("volume_id", "layer_id", "module_id"))
        geo = _lookup(by_layer[(vol, lay)], vol, lay, sen)
        bx, by = geo["segmentation"]["binningdata"]
        assert (bx["bins"], by["bins"]) == (m["n_u"][row], m["n_v"][row])
        assert (bx["min"], bx["max"]) == (-m["max_hu"][row], m["max_hu"][row])
        assert (by["min"], by["max"]) == (-m["hv"][row], m["hv"][row])
        assert geo["thickness"] == m["thickness"][row]
        assert geo["threshold"] == 0.0


def test_acts_reads_digitization_config(generic_detector: Detector, tmp_path: Path) -> None:
    import acts.examples.json as acts_json

    path = tmp_path / "digi.json"
    write_digitization_config(generic_detector, path)
    config = acts_json.readDigiConfigFromJson(str(path))
    acts_json.writeDigiConfigToJson(config, str(tmp_path / "back.json"))
    ours = json.loads(path.read_text())["entries"]
    back = json.loads((tmp_path / "back.json").read_text())["entries"]
    assert len(back) == len(ours)
    key = ("volume", "layer", "sensitive")

    def bins(entries: list[dict]) -> dict:
        return {tuple(e.get(k) for k in key):
                tuple(b["bins"] for b in e["value"]["geometric"]["segmentation"]["binningdata"])
                for e in entries}

    assert bins(back) == bins(ours)
