"""The torch track fit on a real CUDA device gives the numba fit's tracks.

Skips unless torch sees a CUDA device (``tests/tracking/test_batched_fit.py`` runs the same code
on torch's CPU device). float64 on CUDA as on the CPU (``taas.tracking.batched.fit``), so the
tolerance is the CPU device's: 1e-6 sigma; CUDA's libm (sin, atan2, ...) differs from glibc's in
the last ulp, which the short tracks' conditioning amplifies to ~1e-7 at most.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)

from backends.gpu.track_fit import GpuTrackFit  # noqa: E402
from taas.edm.tracks import Tracks  # noqa: E402
from taas.tracking.batched.fit import fit_prototracks_torch  # noqa: E402
from taas.tracking.fitter import fit_prototracks  # noqa: E402
from tests.conftest import tiny_sim_dir  # noqa: E402, F401  (session fixture, re-exported)
from tests.tracking.test_batched_fit import (  # noqa: E402
    CONFIG,
    ERRORS,
    assert_same_tracks,
    tiny_truth_tracks,  # noqa: F401  (module fixture, re-exported)
    toy,  # noqa: F401
)


@pytest.mark.gpu
def test_cuda_fit_equals_numba_on_toy_helices(toy):  # noqa: F811
    detector, meas, protos = toy
    numba_tracks, numba_keep = fit_prototracks(detector, meas, protos, CONFIG)
    cuda_tracks, cuda_keep = fit_prototracks_torch(detector, meas, protos, CONFIG, device="cuda")
    np.testing.assert_array_equal(numba_keep, cuda_keep)
    assert_same_tracks(numba_tracks, cuda_tracks)


@pytest.mark.gpu
def test_cuda_stage_equals_numba_on_a_tiny_event(tiny_truth_tracks):  # noqa: F811
    detector, meas, protos = tiny_truth_tracks
    stage = GpuTrackFit(detector, {**ERRORS, "allow_cpu_fallback": False})
    assert stage.device.startswith("cuda")
    inputs = {**meas.to_tensors(), **protos.to_tensors()}
    stage.run(inputs)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    cuda_tracks = Tracks.from_tensors(stage.run(inputs))
    elapsed = time.perf_counter() - start
    numba_tracks, _ = fit_prototracks(detector, meas, protos, CONFIG)
    assert_same_tracks(numba_tracks, cuda_tracks)
    print(f"CUDA fit of {len(cuda_tracks)} tiny-event tracks: {elapsed * 1e3:.1f} ms "
          f"on {torch.cuda.get_device_name()}")
