"""The bridge's array work in torch (the gpu backend's ``TorchArrays``) on the CPU device
against the numpy bridge: the same seeds, measurement lists and surface order, start
parameters and covariances within 1e-9 relative; on hand-made proto-tracks (unsorted, repeats,
shared hits, 1-2 hits, an empty event) and on a ``tiny`` simulated event; and the copy counter.

Both sides run the same formulas (``traccc_bridge.bridge``, ``taas.tracking.estimation
.helix_parameters``) in float64, so only libm's last bits and summation order may differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.cpu.clustering import CpuClustering
from backends.cpu.prototrack_seeding import CpuPrototrackSeeding
from backends.cpu.spacepoints import CpuSpacepoints
from backends.gpu.prototrack_seeding import GpuPrototrackSeeding
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import ProtoTracks
from taas.events.dataset import open_dataset
from taas.metrics.truth_link import measurement_particles
from taas.stages.registry import resolve
from taas.tracking.batched.torch_arrays import TorchArrays
from taas.tracking.estimation import estimate_parameters, helix_parameters
from tests.traccc_bridge.bridge_toy import spacepoints_of
from tests.tracking.toy import barrel_detector, generate_particles, measure, simulate
from traccc_bridge.bridge import BridgeOutput, seed_prototracks
from traccc_bridge.config import TracccSeedingConfig

RTOL, ATOL = 1e-9, 1e-12

CONFIGS = {
    "default": TracccSeedingConfig(),  # 3 triplets per proto-track, supplementary "all"
    "proto_only": TracccSeedingConfig(supplementary_seeding="none", seeds_per_prototrack=1),
    "uncovered_6": TracccSeedingConfig(supplementary_seeding="uncovered",
                                       seeds_per_prototrack=6),
    "fit": TracccSeedingConfig(method="fit"),
}


def assert_same_bridge(torch_out: BridgeOutput, numpy_out: BridgeOutput) -> None:
    """Integer outputs equal, floats within 1e-9 relative (seeds' float32 columns equal)."""
    for name in ("prototrack", "seed_offsets", "seed_indices", "surface_order", "surfaces",
                 "surface_offsets"):
        np.testing.assert_array_equal(getattr(torch_out, name), getattr(numpy_out, name),
                                      err_msg=name)
    for name in numpy_out.seeds.columns():
        np.testing.assert_array_equal(torch_out.seeds[name], numpy_out.seeds[name],
                                      err_msg=f"seeds.{name}")
    np.testing.assert_array_equal(torch_out.starts.module_key, numpy_out.starts.module_key)
    np.testing.assert_allclose(torch_out.starts.params, numpy_out.starts.params, rtol=RTOL,
                               atol=ATOL)
    np.testing.assert_allclose(torch_out.starts.covariance, numpy_out.starts.covariance,
                               rtol=RTOL, atol=ATOL)


def assert_same_stage_outputs(got: dict, expected: dict, float32_rtol: float = 0.0) -> None:
    """The stage's tensors: float64 within 1e-9 relative, float32 (the seeds' quality and
    vertex z) within ``float32_rtol`` (CUDA's atomic segment sums may round the vertex z the
    other way), integers equal."""
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        if value.dtype.kind == "f":
            rtol, atol = (RTOL, ATOL) if value.dtype.itemsize == 8 else (float32_rtol, 0.0)
            np.testing.assert_allclose(got[name], value, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.fixture(scope="module")
def toy():
    """40 toy barrel tracks, measurements and proto-tracks shuffled; plus hand-made lists:
    repeats, two particles merged (sharing hits with the first list), 1 and 2 hits."""
    rng = np.random.default_rng(7)
    detector = barrel_detector()
    truth = simulate(detector, generate_particles(40, rng), rng)
    meas, protos = measure(detector, truth, rng)
    idx, off = protos["indices"], protos["offsets"]
    a, b = idx[off[0]:off[1]], idx[off[1]:off[2]]
    lists = [np.r_[a, a[:4]], np.r_[b[:5], a[5:]], a[:1], a[:2], np.r_[a[:2], a[:2]],
             *(idx[off[t]:off[t + 1]] for t in range(2, len(protos)))]
    custom = ProtoTracks(offsets=np.r_[0, np.cumsum([len(x) for x in lists])],
                         indices=np.concatenate(lists))
    return detector, meas, spacepoints_of(detector, meas), custom


@pytest.fixture(scope="module")
def cpu_arrays() -> TorchArrays:
    return TorchArrays(torch.device("cpu"))


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_torch_bridge_equals_numpy_on_hand_made_prototracks(toy, cpu_arrays, config):
    detector, meas, sps, protos = toy
    numpy_out = seed_prototracks(detector, meas, sps, protos, config)
    torch_out = seed_prototracks(detector, meas, sps, protos, config, cpu_arrays)
    assert_same_bridge(torch_out, numpy_out)
    # the short lists (2-4: 1-2 hits) give no seed; the repeated one does, and the merged one
    # too unless its fit (two particles) fails
    seeded = set(numpy_out.prototrack.tolist())
    assert 0 in seeded
    assert not {2, 3, 4} & seeded
    assert (1 in seeded) == (config.method == "triplet")


def test_empty_event_on_torch(toy, cpu_arrays):
    detector = toy[0]
    meas, sps = Measurements.empty(), Spacepoints.empty()
    no_tracks = ProtoTracks(offsets=np.zeros(1, np.int64), indices=np.zeros(0, np.int64))
    for protos in (ProtoTracks.empty(), no_tracks):
        for config in CONFIGS.values():
            out = seed_prototracks(detector, meas, sps, protos, config, cpu_arrays)
            assert_same_bridge(out, seed_prototracks(detector, meas, sps, protos, config))
            assert len(out.seeds) == 0
            assert out.starts.params.shape == (0, 6)
            assert out.starts.covariance.shape == (0, 6, 6)


def test_helix_estimate_in_torch_equals_numpy_also_where_degenerate():
    """Random triplets, a straight track (curvature 0) and coincident points (NaN in both)."""
    rng = np.random.default_rng(5)
    xyz = rng.normal(size=(200, 3, 3)) * 100.0
    xyz[1] = [[30.0, 0.0, 10.0], [60.0, 0.0, 20.0], [90.0, 0.0, 30.0]]  # straight
    xyz[2] = 50.0  # coincident: no direction
    center, rotation = rng.normal(size=(200, 3)), rng.normal(size=(200, 3, 3))
    expected, _ = estimate_parameters(xyz, center, rotation, 2.0)
    got = helix_parameters(*(torch.as_tensor(a) for a in (xyz, center, rotation)), 2.0,
                           xp=torch).numpy()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(expected))
    assert np.isfinite(expected[1]).all()
    assert not np.isfinite(expected[2]).all()
    ok = np.isfinite(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=RTOL, atol=ATOL)


def _truth_prototracks(event, tensors: dict, rng: np.random.Generator) -> ProtoTracks:
    """GNN-like proto-tracks from truth: each particle's measurements shuffled, every third
    list with two repeats, lists 0 and 1 merged into one (sharing 3 hits with list 2)."""
    n_meas = len(tensors["measurements.module_key"])
    particle = measurement_particles(event.cells["hit_id"], tensors["clusters.cluster_id"],
                                     n_meas, event.hits)
    rows = rng.permutation(np.flatnonzero(particle > 0))
    rows = rows[np.argsort(particle[rows], kind="stable")]
    _, counts = np.unique(particle[rows], return_counts=True)
    lists = np.split(rows, np.cumsum(counts)[:-1])
    lists = [np.r_[x, x[:2]] if i % 3 == 0 else x for i, x in enumerate(lists)]
    lists = [np.r_[lists[0], lists[1], lists[2][:3]], *lists[2:]]
    return ProtoTracks(offsets=np.r_[0, np.cumsum([len(x) for x in lists])],
                       indices=np.concatenate(lists))


def bridge_inputs(sim_dir):
    """The prototrack_seeding stage's inputs on the first event of ``sim_dir``: its front end
    on the CPU and truth-built proto-tracks."""
    dataset = open_dataset(sim_dir)
    detector = dataset.detector
    event = dataset.read(dataset.event_ids[0])
    tensors = event.cells.to_tensors()
    for stage in (CpuClustering(detector), CpuSpacepoints(detector)):
        tensors.update(stage.run(tensors))
    tensors.update(_truth_prototracks(event, tensors, np.random.default_rng(1)).to_tensors())
    return detector, tensors


@pytest.fixture(scope="module")
def tiny_bridge_inputs(tiny_sim_dir):
    """The prototrack_seeding stage's inputs on a tiny event (truth-built proto-tracks)."""
    return bridge_inputs(tiny_sim_dir)


def test_gpu_stage_equals_cpu_stage_on_a_tiny_event(tiny_bridge_inputs):
    detector, tensors = tiny_bridge_inputs
    gpu = resolve("prototrack_seeding", "gpu")(detector)
    assert isinstance(gpu, GpuPrototrackSeeding)
    got, expected = gpu.run(tensors), CpuPrototrackSeeding(detector).run(tensors)
    assert len(expected["seeds.quality"]) > 10
    assert_same_stage_outputs(got, expected)
    if torch.cuda.is_available():
        assert gpu.device.startswith("cuda")
    else:
        assert gpu.device == "cpu (CUDA unavailable)"


def test_device_names_the_host_seeding_beside_a_gpu(tiny_bridge_inputs):
    detector, _ = tiny_bridge_inputs
    stage = GpuPrototrackSeeding(detector, TracccSeedingConfig(supplementary_threads=4))
    stage.torch_device = torch.device("cuda", 0)  # as on a GPU: only the label is read here
    assert stage.device.endswith("(+ supplementary seeding on cpu, 4 thread(s))")
    stage.torch_device = torch.device("cpu")
    assert "supplementary" not in stage.device
    none = GpuPrototrackSeeding(detector, CONFIGS["proto_only"])
    none.torch_device = torch.device("cuda", 0)
    assert "supplementary" not in none.device


def test_early_supplementary_seeding_is_used_only_for_its_own_inputs(tiny_bridge_inputs,
                                                                      monkeypatch):
    """Started early (as a pipeline does once the space points exist), the ``all``
    supplementary seeding is computed once, on a host thread, and the stage's run uses it when
    given the very arrays it started from; given others (another event), or after it was
    dropped, the run seeds them itself. The outputs are the same every time."""
    import traccc_bridge.bridge
    import traccc_bridge.stages

    detector, tensors = tiny_bridge_inputs
    calls: list[str] = []
    seeds_of = traccc_bridge.bridge.all_supplementary_seeds

    def counted(where: str):
        def run(*args, **kwargs):
            calls.append(where)
            return seeds_of(*args, **kwargs)
        return run

    monkeypatch.setattr(traccc_bridge.stages, "all_supplementary_seeds", counted("early"))
    monkeypatch.setattr(traccc_bridge.bridge, "all_supplementary_seeds", counted("inline"))
    gpu = GpuPrototrackSeeding(detector)
    expected = gpu.run(tensors)
    assert calls == ["inline"]
    early = {name: tensors[name] for name in gpu.EARLY_INPUTS}
    gpu.start_early(early)
    assert_same_stage_outputs(gpu.run(tensors), expected)
    assert calls == ["inline", "early"]
    gpu.start_early({name: array.copy() for name, array in early.items()})  # not these arrays
    assert_same_stage_outputs(gpu.run(tensors), expected)
    assert calls == ["inline", "early", "early", "inline"]
    gpu.start_early(early)
    gpu.drop_early()  # a started one may still finish, unused
    assert_same_stage_outputs(gpu.run(tensors), expected)
    assert calls.count("inline") == 3
    # without the all mode there is nothing to start
    proto_only = GpuPrototrackSeeding(detector, CONFIGS["proto_only"])
    proto_only.start_early(early)
    assert proto_only.supplementary_done(tensors) is None


@pytest.mark.parametrize("config", [CONFIGS["proto_only"], CONFIGS["default"], CONFIGS["fit"]],
                         ids=["proto_only", "supplementary", "fit"])
def test_transfer_counter_counts_each_copy_once_per_event(tiny_bridge_inputs, config):
    """Up: the measurements' module rows and local u, v (the surface sort), proto-track
    offsets and indices, the space points' floats (x, y, z, r) and integers (measurement,
    module row, layer key); the supplementary triplets; the fit's mask and its starts (2).
    Down: the seeds' proto-tracks, measurement lists (2), triplets, quality, vertex z, the
    surfaces' rows, start parameters and covariances and the surface order's offsets and
    indices (the numpy stage API's: a pipeline with device residency leaves these four on
    the device); the fit's proto-tracks without repeats (2)."""
    detector, tensors = tiny_bridge_inputs
    gpu = GpuPrototrackSeeding(detector, config)
    out = gpu.run(tensors)
    n_sp, n_seeds = len(tensors["spacepoints.x"]), len(out["seeds.quality"])
    fit = config.method == "fit"
    supplementary = config.supplementary_seeding != "none"
    n_proto_seeds = int(np.count_nonzero(np.diff(out["seed_measurements.offsets"]) > 0))
    n_meas, n_surfaces = len(tensors["measurements.local_u"]), len(out["surface_order.surfaces"])
    assert n_surfaces == len(np.unique(tensors["measurements.module_key"]))
    up_bytes = (n_meas * 3 * 8 + n_sp * (4 + 3) * 8 + tensors["prototracks.offsets"].nbytes
                + tensors["prototracks.indices"].nbytes)
    up_bytes += (n_seeds - n_proto_seeds) * 3 * 8 if supplementary else 0
    # the fit's bool mask and its starts, which join the estimated ones on the device
    up_bytes += len(tensors["prototracks.offsets"]) - 1 + n_proto_seeds * 42 * 8 if fit else 0
    down_bytes = (n_proto_seeds * (8 + 3 * 8 + 8 + 8) + 8 * (n_proto_seeds + 1)
                  + out["seed_measurements.indices"].nbytes + n_seeds * (6 + 36) * 8
                  + 8 * (2 * n_surfaces + 1 + n_meas))
    if fit:  # the proto-tracks without repeats, for the fit on the host
        unique = [len(set(tensors["prototracks.indices"][lo:hi].tolist())) for lo, hi in
                  zip(tensors["prototracks.offsets"][:-1], tensors["prototracks.offsets"][1:],
                      strict=True)]
        down_bytes += 8 * (len(unique) + 1) + 8 * sum(unique)
    expected = {"to_device": 7 + supplementary + 3 * fit, "to_device_bytes": up_bytes,
                "to_host": 11 + 2 * fit, "to_host_bytes": down_bytes}
    assert gpu.transfers == expected
    gpu.run(tensors)  # counted per event, not accumulated
    assert gpu.transfers == expected
