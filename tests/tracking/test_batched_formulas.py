"""One text, two flavours: ``taas.tracking.batched.formulas`` per track in numba and batched
in torch give the same numbers, edge cases included (no intersection, straight tracks, singular
covariances, zero-length slabs). The numba flavour is what the CPU chain runs, so these checks
also tie the torch flavour to every CPU test of helix, propagation, material and filter."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from taas.tracking import helix
from taas.tracking.batched.flavours import NUMBA
from taas.tracking.batched.torch_ops import FORMULAS as TORCH

RNG = np.random.default_rng(17)
H_PER_QOP = -helix.K_FIELD * 2.0


def rows(func, *args: np.ndarray) -> tuple[np.ndarray, ...]:
    """``func`` of the numba flavour applied row by row (scalar arguments)."""
    out = [func(*(float(a[i]) for a in args)) for i in range(len(args[0]))]
    return tuple(np.array(column, dtype=float) for column in zip(*out, strict=True))


def batched(func, *args: np.ndarray) -> tuple[np.ndarray, ...]:
    out = func(*(torch.as_tensor(a, dtype=torch.float64) for a in args))
    return tuple(np.asarray(torch.as_tensor(o), dtype=float) for o in out)


def test_formulas_are_not_imported_directly():
    with pytest.raises(ImportError, match="load_formulas"):
        importlib.import_module("taas.tracking.batched.formulas")


def test_cylinder_path_flavours_agree_on_every_branch():
    n = 400
    x0, y0 = RNG.normal(0, 30, n), RNG.normal(0, 30, n)
    phi = RNG.uniform(-np.pi, np.pi, n)
    tx, ty = np.cos(phi), np.sin(phi)
    h = RNG.choice([1.0, -1.0], n) * RNG.uniform(1e-4, 3e-3, n)
    h[:50] = 0.0  # straight lines
    tx[50:60] = ty[50:60] = 0.0  # parallel to the beam line: never
    radius = RNG.uniform(10, 1200, n)  # the largest ones are out of reach of the curlers
    s_min = RNG.choice([0.0, 50.0], n)
    args = (x0, y0, tx, ty, h, radius, s_min)
    (numba_s,) = rows(lambda *a: (NUMBA.cylinder_path(*a),), *args)
    (torch_s,) = batched(lambda *a: (TORCH.cylinder_path(*a),), *args)
    # libm and torch differ in the last ulp of atan2 / hypot, which near-tangent crossings
    # amplify (3e-8 seen on 2.5 m paths)
    np.testing.assert_allclose(torch_s, numba_s, rtol=1e-6)  # inf == inf
    assert np.isinf(numba_s).any()
    assert np.isfinite(numba_s[:50]).any()
    assert np.isinf(numba_s[50:60]).all()


def test_material_flavours_agree():
    n = 300
    qop = RNG.choice([1.0, -1.0], n) / RNG.uniform(0.2, 50, n)
    qop[:5] = 0.0
    theta = RNG.uniform(0.1, 3.0, n)
    cos_inc = RNG.uniform(-1, 1, n)
    thickness = RNG.uniform(0, 3, n)
    thickness[5:10] = 0.0
    slab = (thickness, np.full(n, 93.7), np.full(n, 1.15e-3), np.full(n, 1.73e-7))
    args = (qop, theta, cos_inc, *slab)
    numba_out = rows(lambda *a: NUMBA.slab_effects(*a, helix.PION_MASS), *args)
    torch_out = batched(lambda *a: TORCH.slab_effects(*a, helix.PION_MASS), *args)
    for numba_value, torch_value in zip(numba_out, torch_out, strict=True):
        np.testing.assert_allclose(torch_value, numba_value, rtol=1e-12, atol=0)
    assert (numba_out[3][5:10] == 0).all()
    de = numba_out[3]
    (numba_q,) = rows(lambda q, d: (NUMBA.apply_energy_loss(q, d, helix.PION_MASS, 1.0),), qop,
                      de)
    (torch_q,) = batched(lambda q, d: (TORCH.apply_energy_loss(q, d, helix.PION_MASS, 1.0),),
                         qop, de)
    np.testing.assert_allclose(torch_q, numba_q, rtol=1e-14)


def _planes(n: int) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(RNG.normal(size=(n, 3, 3)))
    return RNG.normal(0, 100, (n, 3)), q * np.sign(np.linalg.det(q))[:, None, None]


def test_propagation_flavours_agree_including_misses():
    n = 200
    params = np.stack([RNG.normal(0, 5, n), RNG.normal(0, 5, n), RNG.uniform(-3, 3, n),
                       RNG.uniform(0.2, 2.9, n), RNG.normal(0, 1, n), RNG.normal(0, 1, n)], 1)
    src_c, src_r = _planes(n)
    dst_c, dst_r = _planes(n)
    dst_r[:20, :, 2] = np.cross(dst_r[:20, :, 0], dst_r[:20, :, 1])  # (still proper)
    # the first ten destination planes contain the start direction: no crossing
    direction = np.stack([np.cos(params[:10, 2]) * np.sin(params[:10, 3]),
                          np.sin(params[:10, 2]) * np.sin(params[:10, 3]),
                          np.cos(params[:10, 3])], 1)
    params[:10, 4] = 0.0  # straight
    u = np.cross(direction, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u, axis=1)[:, None]
    w = np.cross(u, direction)
    dst_r[:10] = np.stack([u, direction, w], axis=2)
    out, jac = np.empty((n, 6)), np.empty((n, 6, 6))
    scratch = (np.empty((8, 8)), np.empty(8), np.empty((8, 6)), np.empty((6, 8)),
               np.empty((8, 6)), np.empty(6))
    numba_ok = np.array([NUMBA.propagate_state(params[i], src_c[i], src_r[i], dst_c[i],
                                               dst_r[i], H_PER_QOP, helix.PION_MASS, True,
                                               out[i], jac[i], *scratch)[2]
                         for i in range(n)])

    def t(a: np.ndarray, *order: int) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64).permute(*order).contiguous()

    t_out, t_jac = torch.empty((6, n), dtype=torch.float64), torch.empty((6, 6, n),
                                                                          dtype=torch.float64)
    t_scratch = [torch.empty((*s.shape, n), dtype=torch.float64) for s in scratch]
    _, _, torch_ok = TORCH.propagate_state(t(params, 1, 0), t(src_c, 1, 0), t(src_r, 1, 2, 0),
                                           t(dst_c, 1, 0), t(dst_r, 1, 2, 0), H_PER_QOP,
                                           helix.PION_MASS, True, t_out, t_jac, *t_scratch)
    np.testing.assert_array_equal(torch_ok.numpy(), numba_ok)
    assert not numba_ok[:10].any()
    assert numba_ok[10:].mean() > 0.5
    np.testing.assert_allclose(t_out.numpy().T, out, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(t_jac.permute(2, 0, 1).numpy(), jac, rtol=1e-9, atol=1e-9)
    assert np.isnan(out[:10]).all()


def test_rts_step_flavours_agree_and_flag_singular_covariances():
    n = 50
    a = RNG.normal(size=(n, 6, 6))
    filt_cov = a @ a.transpose(0, 2, 1) + np.eye(6)
    pred_cov = filt_cov * 1.3
    pred_cov[:5] = 0.0  # singular
    pred_cov[5, 0, 0] = np.nan
    filt, pred, smooth = (RNG.normal(size=(n, 6)) for _ in range(3))
    smooth_cov = filt_cov * 0.9
    jac = np.eye(6) + 0.1 * RNG.normal(size=(n, 6, 6))
    out, out_cov = np.empty((n, 6)), np.empty((n, 6, 6))
    scratch = (np.empty((6, 6)), np.empty((6, 6)), np.empty((6, 6)), np.empty(6))
    numba_ok = np.array([NUMBA.rts_step(filt[i], filt_cov[i], smooth[i], smooth_cov[i], pred[i],
                                        pred_cov[i], jac[i], out[i], out_cov[i], *scratch)
                         for i in range(n)])

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float64).movedim(0, -1).contiguous()

    t_out, t_cov = torch.empty((6, n), dtype=torch.float64), torch.empty((6, 6, n),
                                                                          dtype=torch.float64)
    t_scratch = [torch.empty((*s.shape, n), dtype=torch.float64) for s in scratch]
    torch_ok = TORCH.rts_step(t(filt), t(filt_cov), t(smooth), t(smooth_cov), t(pred),
                              t(pred_cov), t(jac), t_out, t_cov, *t_scratch)
    np.testing.assert_array_equal(torch_ok.numpy(), numba_ok)
    np.testing.assert_array_equal(numba_ok[:6], False)
    assert numba_ok[6:].all()
    np.testing.assert_allclose(t_out.numpy().T, out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(t_cov.movedim(-1, 0).numpy(), out_cov, rtol=1e-10, atol=1e-12)
