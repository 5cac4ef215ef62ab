"""GPU track_fit: the Kalman fit of ``taas.tracking.stages.TrackFitStage`` in torch on CUDA.

Filter and smoother run batched over tracks (``taas.tracking.batched.fit``), from the same
formulas as the CPU backend's numba kernels (``taas.tracking.batched.formulas``); the host
keeps the bookkeeping (ordering, padding, start parameters), so each batch of tracks (every
length together, ``batch_size`` tracks) goes to the device once and its fitted states come
back once: ``transfers`` counts those copies per event (``backends.gpu.torch_hook``).
Without CUDA it runs on the CPU device when ``config.allow_cpu_fallback`` (the default) and
``device`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backends.gpu.torch_hook import DeviceWork, TorchDeviceHook
from taas.detector.detector import Detector
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.gnn.track_building import cuda_or_fallback
from taas.tracking.batched.fit import BatchedFitConfig, fit_prototracks_torch
from taas.tracking.stages import TrackFitStage

__all__ = ["BatchedFitConfig", "GpuTrackFit"]


class GpuTrackFit(TorchDeviceHook, TrackFitStage):
    """The track_fit stage with filter and smoother in torch (float64), on CUDA when present."""

    BACKEND = "gpu"

    def __init__(self, detector: Detector,
                 config: BatchedFitConfig | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = BatchedFitConfig()
        elif isinstance(config, Mapping):
            config = BatchedFitConfig(**config)
        super().__init__(detector, config)
        self.config: BatchedFitConfig = config
        self.torch_device, note = cuda_or_fallback(config.allow_cpu_fallback)
        self.torch_work = DeviceWork(f"{self.torch_device}{note}")

    def fit(self, measurements: Measurements, prototracks: ProtoTracks) -> Tracks:
        tracks, _ = fit_prototracks_torch(self.detector, measurements, prototracks, self.config,
                                          device=self.torch_device,
                                          transfers=self.torch_work.transfers)
        return tracks
