"""The CKF's device hook in torch: ``taas.tracking.ckf.CkfKernels`` on a torch device.

``taas.tracking.ckf`` writes its candidates' bookkeeping once against the hook's ``arrays``
(``taas.tracking.arrays.ArrayOps``) and hands the navigation -- next layer, crossable
modules -- and the track arithmetic -- propagation of (candidate, module) pairs with the
transport Jacobian and material noise, chi2 of measurements, gain-matrix update, free states,
helix steps, the field -- to the hook. ``TorchCkfKernels`` runs all of it in torch on a given
device with ``navigation_tensors`` and ``ckf_step`` (the numba kernels' formulas,
``taas.tracking.batched.formulas``), its ``arrays`` being ``TorchArrays``: the candidates
live on the device for a whole batch of seeds, as traccc's do. On the CPU device it
reproduces the numba CKF's tracks; on CUDA it is the CKF's GPU path.

What crosses the host boundary, counted per event by ``transfers``
(``taas.stages.transfers``): the event's measurements once; per batch of seeds, the seeds
(their estimate or given start is computed on the host, where the seeds are: the seed
selection and deduplication between batches are sequential) and, back, the found tracks'
measurement lists for that deduplication; at the end, the tracks. On the CPU device the same
crossings are handovers (``torch.as_tensor`` shares memory).
"""

from __future__ import annotations

import math

import torch

from taas.detector.detector import Detector
from taas.stages.device_tensors import TransferCounter
from taas.tracking import helix
from taas.tracking.batched import ckf_step
from taas.tracking.batched.constants import THETA
from taas.tracking.batched.fit import Scratch, bound_to_free_torch, sandwich
from taas.tracking.batched.navigation_tensors import NavigationTensors
from taas.tracking.batched.torch_arrays import TorchArrays
from taas.tracking.batched.torch_ops import FORMULAS as F
from taas.tracking.ckf import CkfConfig, Prediction, pair_step_bz
from taas.tracking.field import field_of, point_bz, step_bz
from taas.tracking.navigation import Navigation

__all__ = ["TorchCkfKernels", "TransferCounter"]


class TorchCkfKernels:
    """``CkfKernels`` in torch (float64) on ``device`` for one detector.

    The detector's geometry, material and navigation grids go to the device once
    (``setup_bytes``: geometry and material slabs; not counted per event); ``transfers``
    counts the copies of the CKF's arrays (``arrays``). ``label``: the device as a stage
    reports it, with ``note`` appended (e.g. `` (CUDA unavailable)``). Tensors at this
    interface have the track axis first, as the CKF's bookkeeping keeps them; the batched
    formulas take it last, so each call moves it there (on the device).
    """

    def __init__(self, detector: Detector, device: torch.device | str = "cpu", *,
                 note: str = "") -> None:
        self.detector = detector
        self.device = torch.device(device)
        self.arrays = TorchArrays(self.device, note=note)
        self.label, self.transfers = self.arrays.label, self.arrays.transfers
        self.modules = ckf_step.modules_on_device(detector, self.device)
        self.centers = self.modules.center.T  #: (n_modules, 3)
        #: bytes of module geometry and material slabs moved once (passive surfaces not counted)
        self.setup_bytes = sum(t.numel() * t.element_size() for t in (
            self.modules.center, self.modules.rotation, self.modules.thickness,
            self.modules.hv, self.modules.min_hu, self.modules.max_hu,
            *(() if self.modules.slabs is None else (self.modules.slabs,))))
        self._navigation: tuple[Navigation, NavigationTensors] | None = None

    def _check(self, detector: Detector) -> None:
        if detector is not self.detector:
            raise ValueError("TorchCkfKernels: called with another detector than it was "
                             "built for")

    def _navigation_on_device(self, navigation: Navigation) -> NavigationTensors:
        """The layers and module grids on the device, moved there once per ``Navigation``
        (like the module geometry: not counted per event)."""
        if self._navigation is None or self._navigation[0] is not navigation:
            self._navigation = (navigation, NavigationTensors(navigation, self.arrays))
        return self._navigation[1]

    def free_states(self, detector: Detector, params: torch.Tensor,
                    rows: torch.Tensor) -> torch.Tensor:
        self._check(detector)
        return bound_to_free_torch(params.T, self.modules.center[:, rows],
                                   self.modules.rotation[:, :, rows]).T

    def point_field(self, detector: Detector, config: CkfConfig,
                    free: torch.Tensor) -> float | torch.Tensor:
        return point_bz(field_of(detector, config.bz), free, torch)

    def helix_at(self, free: torch.Tensor, s: torch.Tensor, bz: float | torch.Tensor,
                 mass: float) -> torch.Tensor:
        out = torch.empty_like(free.T)
        F.free_state_at(free.T, s, -helix.K_FIELD * bz, mass, out)
        return out.T

    def layer_of(self, navigation: Navigation, rows: torch.Tensor) -> torch.Tensor:
        return self._navigation_on_device(navigation).module_layer[rows]

    def inside_bounds(self, detector: Detector, rows: torch.Tensor, u: torch.Tensor,
                      v: torch.Tensor, tolerance: float) -> torch.Tensor:
        self._check(detector)
        return self.modules.inside_bounds(rows, u, v, tolerance)

    def next_layer(self, navigation: Navigation, free: torch.Tensor, s_min: torch.Tensor,
                   exclude: torch.Tensor, bz: float | torch.Tensor,
                   s_max: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(free)
        if isinstance(s_max, float):
            s_max = torch.full((n,), s_max, dtype=free.dtype, device=self.device)
        h = -helix.K_FIELD * bz * free[:, helix.QOP]
        return self._navigation_on_device(navigation).next_layer(free.T, h, s_min, exclude,
                                                                 s_max)

    def crossable_modules(self, detector: Detector, navigation: Navigation,
                          layer: torch.Tensor, at: torch.Tensor, config: CkfConfig,
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(detector)
        offsets, modules = self._navigation_on_device(navigation).candidate_modules(
            layer, at[:, helix.POS].T, at[:, helix.DIR].T, config.bounds_tolerance)
        pair_c, _ = self.arrays.entries(torch.diff(offsets))
        # taas.tracking.ckf.line_misses, on the device
        x, y, z, _t, tx, ty, tz, qop = at[pair_c].T
        u, v, margin, steep = F.line_crossing(
            x, y, z, tx, ty, tz, qop, self.modules.center[:, modules],
            self.modules.rotation[:, :, modules],
            -helix.K_FIELD * field_of(detector, config.bz).max_bz)
        misses = steep & ~self.modules.inside_bounds(modules, u, v,
                                                     config.bounds_tolerance + margin)
        return pair_c[~misses], modules[~misses]

    def predict(self, detector: Detector, params: torch.Tensor, cov: torch.Tensor,
                rows: torch.Tensor, pair_c: torch.Tensor, targets: torch.Tensor,
                config: CkfConfig, *, passive: bool) -> Prediction:
        self._check(detector)
        if len(pair_c) == 0:
            return Prediction(torch.zeros(0, dtype=torch.bool, device=self.device),
                              params.new_zeros(0), params.new_zeros((0, 6)),
                              params.new_zeros((0, 6, 6)))
        bz = pair_step_bz(field_of(detector, config.bz), self.centers, params, rows, pair_c,
                          targets, torch)
        # bounds are judged by the caller (inside_bounds), so none here
        pred = ckf_step.predict(
            self.modules, _last(params), _last(cov), rows, pair_c, targets, bz=bz,
            mass=config.mass, x0=config.x0, multiple_scattering=config.multiple_scattering,
            bounds_tolerance=math.inf, passive=passive)
        return Prediction(pred.ok, pred.path, _first(pred.params), _first(pred.cov))

    def transport(self, detector: Detector, params: torch.Tensor, cov: torch.Tensor,
                  src: torch.Tensor, dst: torch.Tensor, config: CkfConfig,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._check(detector)
        if len(params) == 0:
            return params, cov, torch.zeros(0, dtype=torch.bool, device=self.device)
        bz = step_bz(field_of(detector, config.bz), self.centers[src], self.centers[dst],
                     params[:, THETA], torch)
        scratch = Scratch(len(params), params)
        centers, rotations = self.modules.center, self.modules.rotation
        _, _, ok = F.propagate_state(_last(params), centers[:, src], rotations[:, :, src],
                                     centers[:, dst], rotations[:, :, dst], -helix.K_FIELD * bz,
                                     config.mass, True, *scratch.propagation())
        return _first(scratch.out), _first(sandwich(scratch.jac, _last(cov))), ok

    def chi2(self, params: torch.Tensor, cov: torch.Tensor, meas: torch.Tensor,
             var: torch.Tensor) -> torch.Tensor:
        if len(params) == 0:
            return params.new_zeros(0)
        return ckf_step.chi2(_last(params), _last(cov), _last(meas), _last(var))

    def update(self, params: torch.Tensor, cov: torch.Tensor, meas: torch.Tensor,
               var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if len(params) == 0:
            return params.new_zeros((0, 6)), cov.new_zeros((0, 6, 6)), params.new_zeros(0)
        new_params, new_cov, dchi2 = ckf_step.update(_last(params), _last(cov), _last(meas),
                                                     _last(var))
        return _first(new_params), _first(new_cov), dchi2


def _last(a: torch.Tensor) -> torch.Tensor:
    """(K, ...) -> (..., K): the batched formulas' layout."""
    return a.movedim(0, -1).contiguous()


def _first(a: torch.Tensor) -> torch.Tensor:
    """(..., K) -> (K, ...): the CKF's layout."""
    return a.movedim(-1, 0).contiguous()
