"""The CKF's device hook in torch: ``taas.tracking.ckf.CkfKernels`` on a torch device.

``taas.tracking.ckf`` keeps its candidates, branching and seed bookkeeping on the host and
hands the navigation -- next layer, candidate modules -- and the per-step arithmetic --
propagation of (candidate, module) pairs with the transport Jacobian and material noise, chi2
of measurements, gain-matrix update -- to a kernels object. ``TorchCkfKernels`` runs them with
``navigation_tensors`` and ``ckf_step`` (the numba kernels' formulas,
``taas.tracking.batched.formulas``) on a given torch device, so on the CPU device it
reproduces the numba CKF's tracks and on CUDA it is the CKF's GPU path.

Every call moves its inputs to the device and its results back: the host owns the candidates
(traccc's GPU CKF keeps them on the device; this one does not yet). The
``TransferCounter`` (``taas.stages.transfers``, the one home of the chain's copy counting;
re-exported here) counts those copies per event, so the chain's host <-> device traffic can be
stated; on the CPU device they are the same crossings of the kernel interface, but
``torch.as_tensor`` shares memory instead of copying (the pipeline's ledger calls them
handovers).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from taas.detector.detector import Detector
from taas.stages.device_tensors import TransferCounter
from taas.tracking import helix
from taas.tracking.batched import ckf_step
from taas.tracking.batched.navigation_tensors import NavigationTensors
from taas.tracking.batched.torch_ops import FORMULAS as F
from taas.tracking.ckf import CkfConfig, Prediction, pair_step_bz
from taas.tracking.field import field_of
from taas.tracking.navigation import Navigation

__all__ = ["TorchCkfKernels", "TransferCounter"]


class TorchCkfKernels:
    """``CkfKernels`` in torch (float64) on ``device`` for one detector.

    The detector's geometry and material go to the device once, here (``setup_bytes``, not
    counted per event); ``transfers`` counts the per-call copies. ``label``: the device as a
    stage reports it, with ``note`` appended (e.g. `` (CUDA unavailable)``).
    """

    def __init__(self, detector: Detector, device: torch.device | str = "cpu", *,
                 note: str = "") -> None:
        self.detector = detector
        self.device = torch.device(device)
        self.label = f"{self.device}{note}"
        self.modules = ckf_step.ModuleTensors(detector, self.device)
        #: bytes of module geometry and material slabs moved once (passive surfaces not counted)
        self.setup_bytes = sum(t.numel() * t.element_size() for t in (
            self.modules.center, self.modules.rotation, self.modules.thickness,
            self.modules.hv, self.modules.min_hu, self.modules.max_hu,
            *(() if self.modules.slabs is None else (self.modules.slabs,))))
        self.transfers = TransferCounter()
        self._navigation: tuple[Navigation, NavigationTensors] | None = None

    def _navigation_on_device(self, navigation: Navigation) -> NavigationTensors:
        """The layers and module grids on the device, moved there once per ``Navigation``
        (like the module geometry: not counted per event)."""
        if self._navigation is None or self._navigation[0] is not navigation:
            self._navigation = (navigation, NavigationTensors(navigation, self.device))
        return self._navigation[1]

    def next_layer(self, navigation: Navigation, free: np.ndarray, s_min: np.ndarray,
                   exclude: np.ndarray, bz: float | np.ndarray, s_max: float | np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray]:
        n = len(free)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        up, down = self.transfers.upload, self.transfers.download
        per_state = [np.array(np.broadcast_to(a, (n,)), float)  # a writable copy each
                     for a in (helix.turning_rate(free[:, 7], bz), s_min, s_max)]
        h, s_min_t, s_max_t = (up(a, self.device, torch.float64) for a in per_state)
        layer, s = self._navigation_on_device(navigation).next_layer(
            up(free, self.device, torch.float64), h, s_min_t,
            up(np.array(np.broadcast_to(exclude, (n,)), np.int64), self.device, torch.int64),
            s_max_t)
        return down(layer), down(s)

    def crossable_modules(self, detector: Detector, navigation: Navigation,
                          layer: np.ndarray, at: np.ndarray, config: CkfConfig,
                          ) -> tuple[np.ndarray, np.ndarray]:
        if len(layer) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        up, down = self.transfers.upload, self.transfers.download
        at_t = up(at, self.device, torch.float64)  # (8, n)
        offsets, modules = self._navigation_on_device(navigation).candidate_modules(
            up(layer, self.device, torch.int64), at_t[helix.POS], at_t[helix.DIR],
            config.bounds_tolerance)
        pair_c = torch.repeat_interleave(torch.arange(len(layer), device=self.device),
                                         torch.diff(offsets))
        # taas.tracking.ckf.line_misses, on the device
        x, y, z, _t, tx, ty, tz, qop = at_t[:, pair_c]
        u, v, margin, steep = F.line_crossing(
            x, y, z, tx, ty, tz, qop, self.modules.center[:, modules],
            self.modules.rotation[:, :, modules],
            -helix.K_FIELD * field_of(detector, config.bz).max_bz)
        misses = steep & ~self.modules.inside_bounds(modules, u, v,
                                                     config.bounds_tolerance + margin)
        return down(pair_c[~misses]), down(modules[~misses])

    def predict(self, detector: Detector, params: np.ndarray, cov: np.ndarray,
                rows: np.ndarray, pair_c: np.ndarray, targets: np.ndarray, config: CkfConfig,
                *, passive: bool) -> Prediction:
        if detector is not self.detector:
            raise ValueError("TorchCkfKernels: called with another detector than it was "
                             "built for")
        if len(pair_c) == 0:
            return Prediction(np.zeros(0, bool), np.zeros(0), np.zeros((0, 6)),
                              np.zeros((0, 6, 6)))
        up, down = self.transfers.upload, self.transfers.download
        # bounds are judged on the host (Detector.inside_bounds), so none here
        pred = ckf_step.predict(
            self.modules, up(params, self.device, torch.float64),
            up(cov, self.device, torch.float64), up(rows, self.device, torch.int64),
            up(pair_c, self.device, torch.int64), up(targets, self.device, torch.int64),
            bz=self._pair_field(detector, params, rows, pair_c, targets, config),
            mass=config.mass, x0=config.x0,
            multiple_scattering=config.multiple_scattering, bounds_tolerance=math.inf,
            passive=passive)
        return Prediction(down(pred.ok), down(pred.path), down(pred.params), down(pred.cov))

    def _pair_field(self, detector: Detector, params: np.ndarray, rows: np.ndarray,
                    pair_c: np.ndarray, targets: np.ndarray, config: CkfConfig,
                    ) -> float | torch.Tensor:
        """Each pair's step field (``taas.tracking.ckf.pair_step_bz``, computed on the host as
        the numba kernels do, uploaded only when it is not one uniform value)."""
        bz = pair_step_bz(detector, params, rows, pair_c, targets, config)
        if isinstance(bz, np.ndarray):
            return self.transfers.upload(bz, self.device, torch.float64)
        return bz

    def chi2(self, params: np.ndarray, cov: np.ndarray, meas: np.ndarray,
             var: np.ndarray) -> np.ndarray:
        if len(params) == 0:
            return np.zeros(0)
        up = self.transfers.upload
        return self.transfers.download(ckf_step.chi2(
            up(params, self.device, torch.float64), up(cov, self.device, torch.float64),
            up(meas, self.device, torch.float64), up(var, self.device, torch.float64)))

    def update(self, params: np.ndarray, cov: np.ndarray, meas: np.ndarray, var: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(params) == 0:
            return np.zeros((0, 6)), np.zeros((0, 6, 6)), np.zeros(0)
        up, down = self.transfers.upload, self.transfers.download
        new_params, new_cov, dchi2 = ckf_step.update(
            up(params, self.device, torch.float64), up(cov, self.device, torch.float64),
            up(meas, self.device, torch.float64), up(var, self.device, torch.float64))
        return down(new_params), down(new_cov), down(dchi2)
