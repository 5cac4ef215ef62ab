"""The CKF with its track arithmetic on a real CUDA device finds the numba CKF's tracks.

Skips unless torch sees a CUDA device (``tests/tracking/test_ckf_torch.py`` runs the same code
on torch's CPU device). float64 on CUDA as on the CPU, so the tolerance is the CPU device's
(1e-6 sigma): CUDA's libm differs from glibc's in the last ulp only. A chi2 or bounds decision
flipped by such an ulp would change a measurement list; on the tiny event none is expected,
and a failure here names the first differing list.

Prints the ckf stage's time per tiny event (CUDA vs numba, same process, after a warm-up) and
its host <-> device copies: the candidates stay on the device for a batch of seeds, so the
measurements go up once and each batch's seeds go up and its found measurements come down.
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)

from backends.cpu.ckf import CpuCkf  # noqa: E402
from backends.cpu.prototrack_ckf import CpuPrototrackCkf  # noqa: E402
from backends.gpu.ckf import GpuCkf  # noqa: E402
from backends.gpu.prototrack_ckf import GpuPrototrackCkf  # noqa: E402
from taas.edm.tracks import Tracks  # noqa: E402
from taas.stages.devices import runs_on_gpu  # noqa: E402
from tests.conftest import tiny_sim_dir  # noqa: E402, F401  (session fixture, re-exported)
from tests.tracking.test_ckf_torch import (  # noqa: E402
    assert_same_tracks,
    tiny_inputs,  # noqa: F401  (module fixture, re-exported)
    toy_bridge_event,  # noqa: F401
)
from traccc_bridge.config import TracccFindingConfig  # noqa: E402


def _timed(stage, inputs: dict) -> tuple[Tracks, float]:
    stage.run(inputs)  # warm-up: numba caches, CUDA context and kernels
    torch.cuda.synchronize()
    start = time.perf_counter()
    tracks = Tracks.from_tensors(stage.run(inputs))
    return tracks, time.perf_counter() - start


@pytest.mark.gpu
def test_cuda_ckf_equals_numba_on_a_tiny_event(tiny_inputs):  # noqa: F811
    detector, tensors = tiny_inputs
    gpu = GpuCkf(detector)
    assert gpu.device.startswith("cuda")
    assert runs_on_gpu(gpu.device)
    cuda_tracks, cuda_s = _timed(gpu, tensors)
    numba_tracks, numba_s = _timed(CpuCkf(detector), tensors)
    assert_same_tracks(cuda_tracks, numba_tracks)
    moved = gpu.transfers
    assert moved["to_device"] > 0
    print(f"ckf on a tiny event ({len(tensors['measurements.local_u'])} measurements, "
          f"{len(cuda_tracks)} tracks): CUDA {cuda_s * 1e3:.1f} ms on "
          f"{torch.cuda.get_device_name()}, numba {numba_s * 1e3:.1f} ms; copies "
          f"{moved['to_device']} up ({moved['to_device_bytes'] / 1e6:.2f} MB), "
          f"{moved['to_host']} down ({moved['to_host_bytes'] / 1e6:.2f} MB)")


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["constrained", "free"])
def test_cuda_prototrack_ckf_equals_numba(toy_bridge_event, mode):  # noqa: F811
    detector, tensors = toy_bridge_event
    config = TracccFindingConfig(mode=mode)
    gpu = GpuPrototrackCkf(detector, config)
    assert gpu.device.startswith("cuda")
    cuda_tracks = Tracks.from_tensors(gpu.run(tensors))
    numba_tracks = Tracks.from_tensors(CpuPrototrackCkf(detector, config).run(tensors))
    assert_same_tracks(cuda_tracks, numba_tracks)
