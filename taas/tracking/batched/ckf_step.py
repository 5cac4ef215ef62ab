"""The combinatorial Kalman filter's per-layer step in torch, batched over (candidate, module)
pairs: what a CKF on the GPU runs between its navigation and its branching.

``ModuleTensors`` holds the detector's geometry and material on the device (built once);
``predict`` propagates every candidate to each module it may cross, with the transport
Jacobian, the material noise of the module it leaves (scattering and straggling: the search
leaves the mean energy loss to the final fit, as ``taas.tracking.ckf`` does) and that of the
passive surfaces on the way, and says which pairs cross inside their module; ``chi2`` tests
measurements against the predictions and ``update`` is the gain-matrix update of the chosen
ones. All formulas are ``taas.tracking.batched.formulas`` (torch flavour), the numba CKF's own.
The navigation (next layer, candidate modules) and the branching bookkeeping stay with the
caller; ``tests/tracking/test_batched_ckf_step.py`` checks the step against
``taas.tracking.ckf``'s on the pairs of a real CKF step on a tiny event.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from taas.detector.detector import Detector
from taas.tracking import helix
from taas.tracking.batched.fit import (
    PassiveSurfaces,
    Scratch,
    bound_to_free_torch,
    module_noise,
    sandwich,
    with_noise,
)
from taas.tracking.batched.torch_ops import FORMULAS as F
from taas.tracking.material import X0_SILICON, material_model


class ModuleTensors:
    """Module centres, rotations, bounds and material of a detector on one torch device."""

    def __init__(self, detector: Detector, device: torch.device | str = "cpu", *,
                 material: bool = True) -> None:
        self.device = torch.device(device)

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a, dtype=float), dtype=torch.float64,
                                   device=self.device)

        m = detector.modules
        self.center = put(detector.center).T.contiguous()  # (3, M)
        self.rotation = put(detector.rotation).permute(1, 2, 0).contiguous()  # (3, 3, M)
        self.thickness = put(m["thickness"])
        self.hv, self.min_hu, self.max_hu = put(m["hv"]), put(m["min_hu"]), put(m["max_hu"])
        slabs, passive = material_model(detector) if material else (None, None)
        self.slabs = put(slabs).T.contiguous() if slabs is not None else None  # (4, M)
        self.passive = (PassiveSurfaces(passive, self.center)
                        if passive is not None and len(passive) else None)

    def inside_bounds(self, rows: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                      tolerance: float | torch.Tensor) -> torch.Tensor:
        """``Detector.inside_bounds`` on the device: (u, v) within the module's trapezoid."""
        hv = self.hv[rows]
        half_u = self.min_hu[rows] + (self.max_hu[rows] - self.min_hu[rows]) * (v + hv) / (2 * hv)
        return (torch.abs(v) <= hv + tolerance) & (torch.abs(u) <= half_u + tolerance)


def modules_on_device(detector: Detector, device: torch.device) -> ModuleTensors:
    """``detector``'s ``ModuleTensors`` on ``device``, built once per process and device
    (geometry, not counted per event; cached on the detector) and shared by the CKF's kernels
    and the track fit."""
    cache: dict[torch.device, ModuleTensors] = detector.__dict__.setdefault(
        "_taas_modules_on_device", {})
    if device not in cache:
        cache[device] = ModuleTensors(detector, device)
    return cache[device]


class Predictions(NamedTuple):
    """Per (candidate, module) pair: whether it crosses inside, path, state, covariance, and
    whether the intersection exists at all (``ok``: the seed fit and the overlap step, which
    go to a module known to be crossed, test only that)."""

    inside: torch.Tensor  #: (P,) bool
    path: torch.Tensor  #: (P,) mm
    params: torch.Tensor  #: (6, P) bound parameters on the module
    cov: torch.Tensor  #: (6, 6, P)
    ok: torch.Tensor  #: (P,) bool


def predict(modules: ModuleTensors, params: torch.Tensor, cov: torch.Tensor,
            rows: torch.Tensor, pair_c: torch.Tensor, pair_module: torch.Tensor, *,
            bz: float | torch.Tensor = 2.0, mass: float = helix.PION_MASS,
            x0: float = X0_SILICON,
            multiple_scattering: bool = True, bounds_tolerance: float = 1.0,
            passive: bool = True) -> Predictions:
    """Predictions of candidates (``params`` (6, C), ``cov`` (6, 6, C) on modules ``rows``
    (C,)) on the modules ``pair_module`` (P,) of the pairs ``pair_c`` (P,).

    ``C' = J (C + Q_module) J^T + Q_passive``, symmetrised; a pair is inside where the
    intersection exists, lies ahead (path > 0) and within the module's bounds plus
    ``bounds_tolerance`` mm. States and covariances of pairs not inside are not to be used.
    ``passive``: add the passive surfaces' noise (the CKF leaves it out between two modules of
    one layer). ``bz``: the field (T), one for all or (P,) per pair (``taas.tracking.field``).
    """
    h_per_qop = -helix.K_FIELD * bz
    n_pairs = len(pair_c)
    noisy = cov
    if multiple_scattering:
        slab = modules.slabs[:, rows] if modules.slabs is not None else None
        var_phi, var_theta, var_qop, _ = module_noise(params, modules.rotation[:, :, rows],
                                                      modules.thickness[rows], slab, x0, mass)
        noisy = with_noise(cov, var_phi, var_theta, var_qop)
    src = rows[pair_c]
    scratch = Scratch(n_pairs, params)
    path, _, ok = F.propagate_state(params[:, pair_c], modules.center[:, src],
                                    modules.rotation[:, :, src], modules.center[:, pair_module],
                                    modules.rotation[:, :, pair_module], h_per_qop, mass, True,
                                    *scratch.propagation())
    out = scratch.out
    inside = ok & (path > 0) & modules.inside_bounds(pair_module, out[0], out[1],
                                                     bounds_tolerance)
    pred_cov = sandwich(torch.where(ok, scratch.jac, 0.0), noisy[:, :, pair_c])
    if multiple_scattering and passive and modules.passive is not None:
        free = bound_to_free_torch(params[:, pair_c], modules.center[:, src],
                                   modules.rotation[:, :, src])
        noise, _ = modules.passive.noise(free, torch.where(inside, path, 0.0),
                                         modules.center[:, pair_module],
                                         modules.rotation[:, :, pair_module], h_per_qop, mass)
        pred_cov = 0.5 * (pred_cov + noise + (pred_cov + noise).transpose(0, 1))
    return Predictions(inside, path, out.clone(), pred_cov, ok)


def chi2(params: torch.Tensor, cov: torch.Tensor, meas: torch.Tensor,
         var: torch.Tensor) -> torch.Tensor:
    """Predicted chi2 (K,) of measurements ``meas`` / variances ``var`` (2, K) against the
    predictions ``params`` (6, K), ``cov`` (6, 6, K) on their modules."""
    return F.predicted_chi2(params, cov, meas[0], meas[1], var[0], var[1])


def update(params: torch.Tensor, cov: torch.Tensor, meas: torch.Tensor, var: torch.Tensor,
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gain-matrix update of predictions (6, K) / (6, 6, K) with measurements (2, K): filtered
    parameters, covariances and chi2 increments."""
    scratch = Scratch(params.shape[1], params)
    new_params, new_cov = torch.empty_like(params), torch.empty_like(cov)
    dchi2 = F.gain_update(params, cov, meas[0], meas[1], var[0], var[1], scratch.gain,
                          scratch.gain_v, scratch.work, new_params, new_cov)
    return new_params, new_cov, dchi2
