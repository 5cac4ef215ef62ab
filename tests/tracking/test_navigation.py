"""Layer navigation on the ACTS Generic detector: layers, next-layer search, module lookup."""

from __future__ import annotations

import numpy as np
import pytest

from taas.tracking import helix
from taas.tracking.navigation import (
    BARREL,
    ENDCAP,
    _next_layer,
    build_navigation,
    group_by_module,
)
from taas.tracking.parameters import direction


@pytest.fixture(scope="module")
def navigation(generic_detector):
    return build_navigation(generic_detector)


def test_every_module_in_exactly_one_layer(generic_detector, navigation):
    m = generic_detector.modules
    assert navigation.module_layer.shape == (len(generic_detector),)
    assert navigation.module_layer.min() == 0
    assert navigation.module_layer.max() == navigation.n_layers - 1
    # a layer is one (volume, layer) pair, and each pair is one layer
    assert np.array_equal(navigation.volume_id[navigation.module_layer], m["volume_id"])
    assert np.array_equal(navigation.layer_id[navigation.module_layer], m["layer_id"])
    pairs = set(zip(navigation.volume_id.tolist(), navigation.layer_id.tolist(), strict=True))
    assert len(pairs) == navigation.n_layers
    # the Generic detector's barrels are volumes 8, 13, 17; its endcaps the others
    barrel_volumes = set(navigation.volume_id[navigation.kind == BARREL].tolist())
    assert barrel_volumes == {8, 13, 17}
    assert (navigation.kind == ENDCAP).sum() == navigation.n_layers - 10
    # every module is listed in at least one grid bin of its own layer
    listed = np.zeros(len(generic_detector), bool)
    listed[navigation.bin_modules] = True
    assert listed.all()


def _origin_states(n: int, pt: float, charge: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eta = rng.uniform(-2.6, 2.6, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    theta = 2 * np.arctan(np.exp(-eta))
    free = np.zeros((n, 8))
    free[:, 4:7] = direction(phi, theta)
    free[:, 7] = charge * np.sin(theta) / pt
    return free


@pytest.mark.parametrize(("pt", "charge"), [(1.0, 1.0), (0.6, -1.0), (20.0, 1.0)])
def test_lookup_contains_every_module_brute_force_finds(generic_detector, navigation, pt,
                                                        charge):
    """Walk helices from the origin layer by layer; at each crossed layer the grid lookup must
    return every module that intersecting all of that layer's module planes finds."""
    bz = 2.0
    free = _origin_states(40, pt, charge, seed=int(pt * 10))
    det = generic_detector
    s_min = np.zeros(len(free))
    checked = found = 0
    for _ in range(30):
        layer, s = navigation.next_layer(free, s_min, np.full(len(free), -1), bz)
        live = np.flatnonzero(layer >= 0)
        if len(live) == 0:
            break
        at = helix.helix_at(free[live], s[live], bz)
        offsets, rows = navigation.candidate_modules(layer[live], at[:, :3], at[:, 4:7])
        for k, i in enumerate(live):
            mods = navigation.layer_modules(layer[i])
            f = np.repeat(free[i:i + 1], len(mods), axis=0)
            path, ok = helix.intersect_plane(f, det.center[mods], det.rotation[mods, :, 2], bz)
            end = helix.helix_at(f, np.where(ok, path, 0.0), bz)
            local = det.global_to_local(mods, end[:, :3])
            hit = ok & (path > 0) & det.inside_bounds(mods, local[:, 0], local[:, 1])
            expected = set(mods[hit].tolist())
            got = set(rows[offsets[k]:offsets[k + 1]].tolist())
            assert expected <= got, (i, layer[i], expected - got)
            checked += 1
            found += len(expected)
        s_min[live] = s[live] + 1e-3
        s_min[layer < 0] = np.inf
    assert checked > 200
    assert found > 0.8 * checked  # most crossings hit a module (the rest: gaps between them)


def test_next_layer_does_not_depend_on_the_layer_order(navigation):
    """The nearest layer is the nearest whatever order the layers are tried in: barrel layers
    that cannot beat the best crossing so far are skipped before their helix is solved, and
    the skipping differs between orders (states start inside the detector at r = 20-900 mm,
    going outwards or inwards, soft and stiff, both charges)."""
    rng = np.random.default_rng(3)
    n = 3000
    free = _origin_states(n, 1.0, 1.0, seed=4)
    r0, phi0 = rng.uniform(20.0, 900.0, n), rng.uniform(-np.pi, np.pi, n)
    free[:, 0], free[:, 1] = r0 * np.cos(phi0), r0 * np.sin(phi0)
    free[:, 2] = rng.uniform(-1500.0, 1500.0, n)
    free[:, 7] *= rng.choice([-1.0, 1.0], n) / rng.uniform(0.5, 20.0, n)
    h = helix.turning_rate(free[:, helix.QOP], 2.0)
    zeros, inf, none = np.zeros(n), np.full(n, np.inf), np.full(n, -1, np.int64)
    nav = navigation
    results = []
    for order in (np.arange(nav.n_layers), np.arange(nav.n_layers)[::-1],
                  rng.permutation(nav.n_layers)):
        layer, s = np.full(n, -1, np.int64), np.full(n, np.inf)
        _next_layer(free, h, zeros, inf, none, nav.kind[order], nav.ref[order], nav.lo[order],
                    nav.hi[order], nav.half_thickness[order], nav.margin, nav.world_r,
                    nav.world_z, layer, s)
        results.append((np.where(layer >= 0, order[layer], -1), s))
    found = results[0][0] >= 0
    assert found.mean() > 0.5
    assert (nav.kind[results[0][0][found]] == BARREL).sum() > 300
    for layer, s in results[1:]:
        np.testing.assert_array_equal(layer, results[0][0])
        np.testing.assert_array_equal(s, results[0][1])


def test_next_layer_leaves_detector(navigation):
    free = np.zeros((2, 8))
    free[:, 0] = [0.0, 2000.0]  # the second starts outside every layer
    free[:, 4] = 1.0
    free[:, 7] = 0.1
    layer, s = navigation.next_layer(free, 0.0, np.full(2, -1), 2.0)
    assert layer[0] >= 0
    assert navigation.kind[layer[0]] == BARREL
    assert abs(navigation.ref[layer[0]] - 32.0) < 1.0
    assert abs(s[0] - 32.0) < 0.5
    assert layer[1] == -1
    assert np.isinf(s[1])


def test_group_by_module():
    offsets, order = group_by_module(np.array([2, 0, 2, 1]), 4)
    assert offsets.tolist() == [0, 1, 2, 4, 4]
    assert order.tolist() == [1, 3, 0, 2]
