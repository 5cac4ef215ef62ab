"""The CKF's per-layer step in torch (``taas.tracking.batched.ckf_step``) against the numba
CKF's (``taas.tracking.ckf``) on the (candidate, module) pairs of a real step on a tiny event.

Candidates: the fitted tracks of the CPU chain (states on their first module, with material
from the Generic detector's table), stepped to their next layer by the CKF's navigation.
Tolerance: predictions within 1e-6 of their sigmas (float64 on both sides; measured ~1e-12),
the same set of pairs crossing inside their module, the same chi2 and updated states.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.cpu.ambiguity import CpuAmbiguityResolution
from backends.cpu.ckf import CpuCkf
from backends.cpu.clustering import CpuClustering
from backends.cpu.seeding import CpuSeeding
from backends.cpu.spacepoints import CpuSpacepoints
from backends.cpu.track_fit import CpuTrackFit
from taas.edm.hits import Measurements
from taas.edm.tracks import Tracks
from taas.events.dataset import open_dataset
from taas.tracking import ckf, helix
from taas.tracking.batched import ckf_step
from taas.tracking.kalman import kalman_update
from taas.tracking.navigation import build_navigation, group_by_module
from taas.tracking.parameters import bound_to_free

TOLERANCE = 1e-6


def to_torch(a: np.ndarray) -> torch.Tensor:
    """(K, ...) numpy -> (..., K) float64 torch, the batched step's layout."""
    return torch.as_tensor(np.asarray(a, float)).movedim(0, -1).contiguous()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.movedim(-1, 0).numpy()


@pytest.fixture(scope="module")
def step(tiny_sim_dir):
    """One CKF step of every fitted track of a tiny event, by the numba CKF (``ckf._cross``)
    and by the torch step on the same pairs."""
    dataset = open_dataset(tiny_sim_dir)
    det = dataset.detector
    tensors = dataset.read(dataset.event_ids[0]).cells.to_tensors()
    for stage in (CpuClustering(det), CpuSpacepoints(det), CpuSeeding(det), CpuCkf(det),
                  CpuAmbiguityResolution(det), CpuTrackFit(det, {"measurement_errors": "cluster"})):
        tensors.update(stage.run(tensors))
    tracks = Tracks.from_tensors(tensors)
    config = ckf.CkfConfig(measurement_errors="cluster")
    nav = build_navigation(det, margin=config.navigation_margin)
    rows = det.index_of(tracks["module_key"])
    params, cov = tracks["params"], tracks["covariance"]
    free = bound_to_free(params, det.center[rows], det.rotation[rows])
    layer, s = nav.next_layer(free, np.zeros(len(free)), nav.module_layer[rows], config.bz)
    moving = layer >= 0
    rows, params, cov, free = rows[moving], params[moving], cov[moving], free[moving]
    at = helix.helix_at(free, s[moving], config.bz, config.mass)
    offsets, modules = nav.candidate_modules(layer[moving], at[:, helix.POS], at[:, helix.DIR],
                                             config.bounds_tolerance)
    cand = ckf._Candidates(seed=np.arange(len(rows)), row=rows, params=params, cov=cov)
    near_c, near_modules = ckf.NUMBA_KERNELS.crossable_modules(det, nav, layer[moving], at,
                                                               config)
    numba = ckf._cross(det, cand, near_c, near_modules, config, ckf.CkfStats())
    pair_c = np.repeat(np.arange(len(rows)), np.diff(offsets))
    pred = ckf_step.predict(ckf_step.ModuleTensors(det), to_torch(params), to_torch(cov),
                            torch.as_tensor(rows), torch.as_tensor(pair_c),
                            torch.as_tensor(modules), bz=config.bz, mass=config.mass,
                            x0=config.x0, bounds_tolerance=config.bounds_tolerance)
    return det, Measurements.from_tensors(tensors), pair_c, modules, numba, pred


def test_same_pairs_cross_inside(step):
    _, _, pair_c, modules, numba, pred = step
    inside = pred.inside.numpy()
    assert inside.sum() > 50
    np.testing.assert_array_equal(pair_c[inside], numba[0])
    np.testing.assert_array_equal(modules[inside], numba[1])


def test_same_predictions(step):
    _, _, _, _, (_, _, path, params, cov), pred = step
    inside = pred.inside.numpy()
    sigma = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    np.testing.assert_allclose(pred.path.numpy()[inside], path, rtol=1e-12)
    assert np.abs((to_numpy(pred.params)[inside] - params) / sigma).max() < TOLERANCE
    scale = sigma[:, :, None] * sigma[:, None, :]
    assert np.abs((to_numpy(pred.cov)[inside] - cov) / scale).max() < TOLERANCE


def test_same_chi2_and_updates(step):
    det, meas, _, _, (_, modules, _, params, cov), _ = step
    by_module = group_by_module(det.index_of(meas["module_key"]), len(det))
    counts = np.diff(by_module[0])[modules]
    combo_p = np.repeat(np.arange(len(modules)), counts)
    starts = np.repeat(by_module[0][modules], counts)
    combo_m = by_module[1][starts + np.arange(len(combo_p)) - np.repeat(np.cumsum(counts)
                                                                        - counts, counts)]
    assert len(combo_m) > 50
    uv = np.stack([meas["local_u"], meas["local_v"]], 1)[combo_m]
    var = np.stack([meas["var_u"], meas["var_v"]], 1)[combo_m]
    p, c = params[combo_p], cov[combo_p]
    np.testing.assert_allclose(ckf_step.chi2(to_torch(p), to_torch(c), to_torch(uv),
                                             to_torch(var)).numpy(),
                               ckf._chi2(p, c, uv, var), rtol=1e-10)
    numba_params, numba_cov, numba_dchi2 = kalman_update(p, c, uv, var)
    torch_params, torch_cov, torch_dchi2 = ckf_step.update(to_torch(p), to_torch(c),
                                                           to_torch(uv), to_torch(var))
    np.testing.assert_allclose(to_numpy(torch_params), numba_params, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(torch_cov), numba_cov, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(torch_dchi2.numpy(), numba_dchi2, rtol=1e-10)
