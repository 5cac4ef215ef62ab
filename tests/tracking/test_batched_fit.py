"""The torch track fit on the CPU device against the numba fit: the same tracks.

Both fits share every formula (``taas.tracking.batched.formulas``); what differs is the filter's
sequence (``kalman.kalman_fit`` in numpy + numba, ``batched.fit.kalman_fit_torch`` in torch)
and the order of a few floating-point sums, so they must agree to rounding, amplified by the
conditioning of short tracks under a loose prior. Tolerance: every parameter within 1e-6 of its
sigma, every covariance entry within 1e-6 of sigma_i sigma_j, chi2 within 1e-6 absolute
(float64 on both sides); measured: ~1e-11 on 10-hit toy tracks, up to 1.4e-7 (a covariance
entry) on 4-hit ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.cpu.clustering import CpuClustering
from backends.cpu.spacepoints import CpuSpacepoints
from backends.cpu.track_fit import CpuTrackFit
from backends.gpu.track_fit import GpuTrackFit
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.events.dataset import open_dataset
from taas.gnn.track_building import CudaUnavailableError
from taas.metrics.truth_link import measurement_particles
from taas.tracking.batched.fit import (
    BatchedFitConfig,
    fit_prototracks_torch,
    kalman_fit_torch,
)
from taas.tracking.estimation import loose_covariance
from taas.tracking.fitter import TrackFitConfig, fit_prototracks
from taas.tracking.kalman import Surfaces, kalman_fit
from taas.tracking.parameters import PHI, wrap_phi
from tests.tracking.toy import barrel_detector, generate_particles, measure, simulate

TOLERANCE = 1e-6
#: The variance source does not matter for the comparison; the cluster's own variances keep
#: these tests independent of the calibration file.
ERRORS = {"measurement_errors": "cluster"}
CONFIG = TrackFitConfig(**ERRORS)


def assert_same_tracks(numba_tracks: Tracks, torch_tracks: Tracks) -> None:
    assert len(numba_tracks) == len(torch_tracks) > 0
    for column in ("module_key", "ndf", "meas_offsets", "meas_indices"):
        np.testing.assert_array_equal(numba_tracks[column], torch_tracks[column])
    cov = numba_tracks["covariance"]
    sigma = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    diff = torch_tracks["params"] - numba_tracks["params"]
    diff[:, PHI] = wrap_phi(diff[:, PHI])
    assert np.abs(diff / sigma).max() < TOLERANCE
    scale = sigma[:, :, None] * sigma[:, None, :]
    assert np.abs((torch_tracks["covariance"] - cov) / scale).max() < TOLERANCE
    np.testing.assert_allclose(torch_tracks["chi2"], numba_tracks["chi2"], rtol=0,
                               atol=TOLERANCE)


@pytest.fixture(scope="module")
def toy():
    """Helices of 0.5-10 GeV through the ten-layer toy barrel, Highland kinks on every module
    (silicon-only material: the fit's module-thickness scattering model)."""
    detector = barrel_detector()
    rng = np.random.default_rng(31)
    truth = simulate(detector, generate_particles(300, rng, pt=(0.5, 10.0)), rng)
    meas, protos = measure(detector, truth, rng)
    # proto-tracks of 10, 7 and 4 measurements: several length groups
    lengths = np.tile([10, 7, 4], 100)
    keep = np.concatenate([protos["indices"][10 * i:10 * i + n] for i, n in enumerate(lengths)])
    protos = ProtoTracks(offsets=np.concatenate([[0], np.cumsum(lengths)]), indices=keep)
    return detector, meas, protos


def test_toy_helices_same_tracks(toy):
    detector, meas, protos = toy
    numba_tracks, numba_keep = fit_prototracks(detector, meas, protos, CONFIG)
    torch_tracks, torch_keep = fit_prototracks_torch(detector, meas, protos, CONFIG,
                                                     device="cpu")
    np.testing.assert_array_equal(numba_keep, torch_keep)
    assert len(numba_keep) == 300
    assert_same_tracks(numba_tracks, torch_tracks)


def test_toy_failed_tracks_dropped_alike(toy):
    """Proto-tracks the fit cannot follow: one hit repeated (no start parameters, NaN through
    the whole filter) and hits of two particles (the propagation to the stray module fails):
    both fits drop them, and the good track batched with them comes out the same."""
    detector, meas, protos = toy
    indices = protos["indices"]
    other = ProtoTracks(offsets=np.array([0, 4, 14, 24, 34]),
                        indices=np.concatenate([np.full(4, indices[0]), indices[0:5],
                                                indices[10:15], indices[0:9], indices[10:11],
                                                indices[0:10]]))
    numba_tracks, numba_keep = fit_prototracks(detector, meas, other, CONFIG)
    torch_tracks, torch_keep = fit_prototracks_torch(detector, meas, other, CONFIG)
    np.testing.assert_array_equal(numba_keep, [3])
    np.testing.assert_array_equal(torch_keep, [3])
    assert_same_tracks(numba_tracks, torch_tracks)


def test_toy_iterated_fit_same_tracks(toy):
    """Three passes from a poor start: the host's convergence test sees the same states."""
    detector, meas, protos = toy
    config = TrackFitConfig(max_iterations=3, convergence=1e-3, **ERRORS)
    assert_same_tracks(fit_prototracks(detector, meas, protos, config)[0],
                       fit_prototracks_torch(detector, meas, protos, config)[0])


@pytest.fixture(scope="module")
def tiny_truth_tracks(tiny_sim_dir):
    """A simulated ``tiny`` event (Generic detector: module slabs with energy loss, passive
    beam pipe / support / layer material) and one proto-track per particle with >= 3
    measurements, from the truth of clustered measurements."""
    dataset = open_dataset(tiny_sim_dir)
    event = dataset.read(dataset.event_ids[0])
    tensors = event.cells.to_tensors()
    for stage in (CpuClustering(dataset.detector), CpuSpacepoints(dataset.detector)):
        tensors.update(stage.run(tensors))
    meas = Measurements.from_tensors(tensors)
    particle = measurement_particles(event.cells["hit_id"], tensors["clusters.cluster_id"],
                                     len(meas), event.hits)
    order = np.argsort(particle, kind="stable")
    ids, starts, counts = np.unique(particle[order], return_index=True, return_counts=True)
    usable = (ids != 0) & (counts >= 3)
    indices = np.concatenate([order[s:s + c] for s, c in zip(starts[usable], counts[usable],
                                                              strict=True)])
    protos = ProtoTracks(offsets=np.concatenate([[0], np.cumsum(counts[usable])]),
                         indices=indices)
    return dataset.detector, meas, protos


def test_tiny_event_same_tracks(tiny_truth_tracks):
    detector, meas, protos = tiny_truth_tracks
    numba_tracks, numba_keep = fit_prototracks(detector, meas, protos, CONFIG)
    torch_tracks, torch_keep = fit_prototracks_torch(detector, meas, protos, CONFIG,
                                                     device="cpu")
    np.testing.assert_array_equal(numba_keep, torch_keep)
    assert len(numba_keep) >= 0.9 * len(protos)
    assert_same_tracks(numba_tracks, torch_tracks)


@pytest.mark.parametrize("settings", [{"material": False}, {"multiple_scattering": False}],
                         ids=["silicon-only", "no-material"])
def test_tiny_event_other_material_models(tiny_truth_tracks, settings):
    detector, meas, protos = tiny_truth_tracks
    config = TrackFitConfig(**ERRORS, **settings)
    assert_same_tracks(fit_prototracks(detector, meas, protos, config)[0],
                       fit_prototracks_torch(detector, meas, protos, config)[0])


def test_gpu_stage_runs_where_it_says(tiny_truth_tracks):
    """The registered gpu backend: CUDA when present, else the CPU device, named in
    ``device``; its output is the CPU backend's."""
    detector, meas, protos = tiny_truth_tracks
    stage = GpuTrackFit(detector, ERRORS)
    inputs = {**meas.to_tensors(), **protos.to_tensors()}
    out = Tracks.from_tensors(stage.run(inputs))
    if torch.cuda.is_available():
        assert stage.device.startswith("cuda")
    else:
        assert stage.device == "cpu (CUDA unavailable)"
        assert_same_tracks(Tracks.from_tensors(CpuTrackFit(detector, ERRORS).run(inputs)), out)


def test_ragged_batch_every_state(toy):
    """``kalman_fit_torch`` on tracks of 10, 7 and 4 measurements in one batch: every smoothed
    state within tolerance of ``kalman_fit``'s, NaN beyond each track's length on both, and
    ``first_state_only`` the first of them."""
    detector = toy[0]
    rng = np.random.default_rng(8)
    truth = simulate(detector, generate_particles(30, rng, pt=(0.5, 10.0)), rng)
    lengths = np.repeat([10, 7, 4], 10)
    rows = truth.rows
    surfaces = Surfaces(detector.center[rows], detector.rotation[rows],
                        detector.modules["thickness"][rows])
    meas = truth.params[:, :, :2] + rng.normal(0, 0.01, (30, 10, 2))
    var = np.full_like(meas, 1e-4)
    start = truth.params[:, 0] * (1 + 0.01 * rng.normal(size=(30, 6)))
    args = (start, loose_covariance(start), surfaces, meas, var)
    want = kalman_fit(*args, bz=2.0, lengths=lengths)
    got = kalman_fit_torch(*args, bz=2.0, lengths=lengths)
    first = kalman_fit_torch(*args, bz=2.0, lengths=lengths, first_state_only=True)
    assert want.ok.all()
    assert got.ok.all()
    own = np.arange(10) < lengths[:, None]
    assert np.isnan(got.params[~own]).all()
    assert np.isnan(want.params[~own]).all()
    sigma = np.sqrt(np.diagonal(want.cov[own], axis1=1, axis2=2))
    diff = got.params[own] - want.params[own]
    diff[:, PHI] = wrap_phi(diff[:, PHI])
    assert np.abs(diff / sigma).max() < TOLERANCE
    np.testing.assert_allclose(got.chi2, want.chi2, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(first.params, got.params[:, :1])
    np.testing.assert_array_equal(first.cov, got.cov[:, :1])


def test_gpu_stage_copies_once_per_batch(toy):
    """Every length in one batch: the torch fit's inputs go up once (5 tensors here: module
    rows, measurements, variances, start, prior; the module geometry is on the device already,
    the field uniform) and the first smoothed states come down once (4: states, covariances,
    chi2, flags), however many lengths the tracks have (here 3); a second batch copies as much
    again."""
    detector, meas, protos = toy
    inputs = {**meas.to_tensors(), **protos.to_tensors()}
    for batch_size, batches in ((4096, 1), (200, 2)):
        stage = GpuTrackFit(detector, {"batch_size": batch_size, "material": False, **ERRORS})
        stage.run(inputs)
        assert stage.transfers["to_device"] == 5 * batches
        assert stage.transfers["to_host"] == 4 * batches


def test_gpu_stage_config():
    detector = barrel_detector()
    stage = GpuTrackFit(detector, {"bz": 1.5, "max_iterations": 2, **ERRORS})
    assert stage.config == BatchedFitConfig(bz=1.5, max_iterations=2, **ERRORS)
    with pytest.raises(ValueError, match="bz"):
        GpuTrackFit(detector, {"bz": 0.0})
    if not torch.cuda.is_available():
        with pytest.raises(CudaUnavailableError):
            GpuTrackFit(detector, {"allow_cpu_fallback": False, **ERRORS})
