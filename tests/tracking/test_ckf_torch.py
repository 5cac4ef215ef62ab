"""The CKF with its per-step arithmetic in torch (``taas.tracking.batched.ckf_kernels``) on the
CPU device against the numba kernels: same tracks (measurement lists, in order), states within
float64 round-off; the transfer counter; the gpu stages and their routing.

Both sides are float64 and run the same formulas (``taas.tracking.batched.formulas``): measured
differences are ~1e-12 of the parameters' sigmas, so the tolerances below (1e-6 sigma, chi2
1e-8 relative) only leave room for summation order.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backends.cpu.clustering import CpuClustering
from backends.cpu.prototrack_ckf import CpuPrototrackCkf
from backends.cpu.prototrack_seeding import CpuPrototrackSeeding
from backends.cpu.seeding import CpuSeeding
from backends.cpu.spacepoints import CpuSpacepoints
from backends.gpu.ckf import GpuCkf
from backends.gpu.prototrack_ckf import GpuPrototrackCkf
from taas.detector.field import TRACKML_SOLENOID
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import Seeds, Tracks
from taas.events.dataset import open_dataset
from taas.stages.devices import runs_on_gpu
from taas.stages.registry import resolve
from taas.tracking import ckf
from taas.tracking.batched.ckf_kernels import TorchCkfKernels, TransferCounter
from taas.tracking.navigation import build_navigation
from taas.workflow.config import validate_config
from taas.workflow.devices import Devices
from taas.workflow.routing import plan_pipelines
from tests.traccc_bridge.bridge_toy import spacepoints_of
from tests.tracking.toy import barrel_detector, generate_particles, measure, simulate
from traccc_bridge.config import TracccFindingConfig

SIGMA_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def tiny_inputs(tiny_sim_dir):
    """The ckf stage's inputs (measurements, space points, triplet seeds) of a tiny event."""
    dataset = open_dataset(tiny_sim_dir)
    det = dataset.detector
    tensors = dataset.read(dataset.event_ids[0]).cells.to_tensors()
    for stage in (CpuClustering(det), CpuSpacepoints(det), CpuSeeding(det)):
        tensors.update(stage.run(tensors))
    return det, tensors


def assert_same_tracks(torch_tracks: Tracks, numba_tracks: Tracks) -> None:
    """Same measurement lists in the same order; states within ``SIGMA_TOLERANCE`` sigma."""
    assert len(numba_tracks) > 0
    np.testing.assert_array_equal(torch_tracks["meas_offsets"], numba_tracks["meas_offsets"])
    np.testing.assert_array_equal(torch_tracks["meas_indices"], numba_tracks["meas_indices"])
    np.testing.assert_array_equal(torch_tracks["module_key"], numba_tracks["module_key"])
    cov = numba_tracks["covariance"]
    sigma = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    pulls = (torch_tracks["params"] - numba_tracks["params"])[:, :5] / sigma[:, :5]
    assert np.abs(pulls).max() < SIGMA_TOLERANCE
    scale = sigma[:, :5, None] * sigma[:, None, :5]
    assert np.abs((torch_tracks["covariance"] - cov)[:, :5, :5] / scale).max() < SIGMA_TOLERANCE
    np.testing.assert_allclose(torch_tracks["chi2"], numba_tracks["chi2"], rtol=1e-8)


@pytest.mark.parametrize("field", [None, TRACKML_SOLENOID], ids=["uniform", "solenoid"])
def test_torch_kernels_find_the_numba_tracks_on_a_tiny_event(tiny_inputs, field):
    det, tensors = tiny_inputs
    if field is not None:  # the real TrackML sample's field: steps in it on the device too
        det = copy.copy(det)
        det.field = field
    args = (det, build_navigation(det, margin=ckf.CkfConfig().navigation_margin),
            Measurements.from_tensors(tensors), Spacepoints.from_tensors(tensors),
            Seeds.from_tensors(tensors), ckf.CkfConfig())
    numba_tracks, numba_stats = ckf.find_tracks(*args)
    kernels = TorchCkfKernels(det)
    torch_tracks, torch_stats = ckf.find_tracks(*args, kernels=kernels)
    assert_same_tracks(torch_tracks, numba_tracks)
    assert (torch_stats.pairs, torch_stats.branches) == (numba_stats.pairs, numba_stats.branches)

    # the candidates stay on the device for a batch of seeds (an inward and an outward run
    # each): up go the event's measurements once (module rows, local positions, variances,
    # the per-module grouping's offsets and order) and per batch the seeds (measurements,
    # positions) with their estimates (parameters, covariances, validity); down come per batch
    # the found tracks' measurements (for the next batch's deduplication) and at the end the
    # tracks (module rows, parameters, covariances, chi2, lengths, measurement lists)
    batches = len(torch_stats.steps) // 2
    moved = kernels.transfers
    assert batches >= 2
    assert moved.to_device == 5 + 5 * batches
    assert 6 + 1 <= moved.to_host <= 6 + batches


def test_transfer_counter_counts_bytes_and_tensors():
    counter = TransferCounter()
    params = np.arange(12.0).reshape(2, 6)
    on_device = counter.upload(params, torch.device("cpu"))
    assert tuple(on_device.shape) == (6, 2)  # the batched layout, components first
    back = counter.download(on_device)
    np.testing.assert_array_equal(back, params)
    counter.upload(np.arange(3), torch.device("cpu"))
    assert counter.summary() == {"to_device": 2, "to_device_bytes": 96 + 24, "to_host": 1,
                                 "to_host_bytes": 96}
    counter.reset()
    assert counter.summary() == dict.fromkeys(counter.summary(), 0)


def test_gpu_ckf_stage_reports_its_device_and_copies(tiny_inputs):
    det, tensors = tiny_inputs
    stage = resolve("ckf", "gpu")(det)
    assert isinstance(stage, GpuCkf)
    out = stage.run(tensors)
    if torch.cuda.is_available():
        assert stage.device.startswith("cuda")
        assert runs_on_gpu(stage.device)
    else:
        assert stage.device == "cpu (CUDA unavailable)"
        assert not runs_on_gpu(stage.device)
    assert stage.transfers["to_device"] > 0
    assert stage.transfers["to_host_bytes"] > 0
    assert len(out["tracks.chi2"]) > 0


@pytest.fixture(scope="module")
def toy_bridge_event():
    """Toy barrel tracks (20 particles, pT 1-10 GeV), truth proto-tracks through the bridge:
    the prototrack_ckf stage's inputs, given starts and per-seed measurement lists."""
    rng = np.random.default_rng(11)
    detector = barrel_detector()
    truth = simulate(detector, generate_particles(20, rng, pt=(1.0, 10.0)), rng)
    meas, protos = measure(detector, truth, rng)
    tensors = {**meas.to_tensors(), **spacepoints_of(detector, meas).to_tensors(),
               **protos.to_tensors()}
    tensors.update(CpuPrototrackSeeding(detector).run(tensors))
    return detector, tensors


@pytest.mark.parametrize("mode", ["constrained", "free"])
def test_gpu_prototrack_ckf_matches_cpu(toy_bridge_event, mode):
    detector, tensors = toy_bridge_event
    config = TracccFindingConfig(mode=mode)
    gpu = GpuPrototrackCkf(detector, config)
    torch_tracks = Tracks.from_tensors(gpu.run(tensors))
    numba_tracks = Tracks.from_tensors(CpuPrototrackCkf(detector, config).run(tensors))
    assert_same_tracks(torch_tracks, numba_tracks)
    assert gpu.device.startswith("cuda" if torch.cuda.is_available() else "cpu")
    assert gpu.transfers["to_device"] > 0


def test_accel_gpu_routes_the_prototrack_ckf_to_gpu():
    plan = plan_pipelines(validate_config({"pipelines": ["acorn_traccc"], "accel": "gpu"}),
                          devices=lambda: Devices(cuda=1))["acorn_traccc"]
    steps = dict(plan.spec.steps)
    assert steps["prototrack_ckf"] == "gpu"
    assert steps["prototrack_seeding"] == "gpu"  # the bridge too (its host parts aside)
