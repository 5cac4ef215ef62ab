"""The copy ledger of a whole chain, and device residency: ``acorn_traccc`` with accel=gpu on a
``tiny`` event (the torch stages on the CPU device here, on CUDA where there is one; the front
end's OpenCL kernels on PoCL here, on a GPU's OpenCL where there is one), with and without
tensors staying on the device between stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taas.edm.tracks import Tracks
from taas.events.dataset import open_dataset
from taas.gnn.features import FEATURE_SETS
from taas.pipeline.runner import Pipeline, PipelineResult
from taas.pipeline.spec import ACORN_TRACCC
from taas.pipeline.timings import transfer_fields
from taas.reco.hit_spacepoints import event_inputs
from taas.stages.transfers import COPY, HANDOVER, StageTraffic, Traffic

GNN = ("graph_construction", "edge_classification", "track_building")
#: OpenCL stages: their buffers are copies on any device
FRONT_END = ("clustering", "spacepoints")
#: acorn_traccc on the accelerator, from the front end to the fit
SPEC = ACORN_TRACCC.with_accel("gpu")
KIND = COPY if torch.cuda.is_available() else HANDOVER


def _kind(stage: str) -> str:
    return COPY if stage in FRONT_END else KIND


@pytest.fixture(scope="module")
def runs(tiny_sim_dir) -> dict[str, PipelineResult]:
    """One event through the chain: without residency, with it (every output on the host),
    and with it for a caller who needs only the tracks (the whole-pipeline model's case)."""
    ds = open_dataset(tiny_sim_dir)
    inputs = event_inputs(ds.read(ds.event_ids[0]))
    plain = Pipeline(SPEC, ds.detector, resident=False)
    resident = Pipeline(SPEC, ds.detector)
    assert resident.resident
    assert not plain.resident
    tracks = [s.name for s in Tracks.tensor_specs()]
    return {"plain": plain.run(inputs), "resident": resident.run(inputs),
            "tracks_only": resident.run(inputs, outputs=tracks)}


def _traffic(result: PipelineResult) -> dict[str, Traffic]:
    out = {}
    for timing in result.timings:
        kinds = timing.transfers.by_kind
        assert set(kinds) <= {_kind(timing.stage)}, (timing.stage, kinds)
        out[timing.stage] = kinds.get(_kind(timing.stage), Traffic())
    return out


def test_residency_changes_no_output(runs) -> None:
    plain, resident = runs["plain"].tensors, runs["resident"].tensors
    assert sorted(plain) == sorted(resident)
    for name, value in plain.items():
        assert value.dtype == resident[name].dtype, name
        np.testing.assert_array_equal(value, resident[name], err_msg=name)
    assert len(plain["tracks.chi2"]) > 0
    # the tracks-only caller gets the same tracks and never the GNN's edges
    tracks_only = runs["tracks_only"].tensors
    assert not any(n.startswith("edges.") for n in tracks_only)
    for name in (n for n in plain if n.startswith("tracks.")):
        np.testing.assert_array_equal(tracks_only[name], plain[name], err_msg=name)


def test_gnn_stages_cross_as_many_times_as_their_inputs_say(runs) -> None:
    """Without residency every GNN stage uploads what it reads and downloads its edges; with
    it the space-point columns go over once and the edges stay on the device."""
    # columns the shipped (cells) models' features read: cos/sin phi come from phi
    features = {c for c in FEATURE_SETS["cells"] if c not in ("cos_phi", "sin_phi")}
    graph_up = len(features | {"x", "y", "z"})  # the radius graph needs the positions too
    plain, resident = _traffic(runs["plain"]), _traffic(runs["resident"])
    only_tracks = _traffic(runs["tracks_only"])

    assert (plain["graph_construction"].to_device, plain["graph_construction"].to_host) == (
        graph_up, 3)
    assert (plain["edge_classification"].to_device,
            plain["edge_classification"].to_host) == (len(features) + 2, 3)
    # graph construction: the same uploads, its edges never come back (the GNN replaces them)
    assert (resident["graph_construction"].to_device,
            resident["graph_construction"].to_host) == (graph_up, 0)
    # edge classification: nothing up; its edges come back once, for the caller, or never
    assert (resident["edge_classification"].to_device,
            resident["edge_classification"].to_host) == (0, 3)
    assert (only_tracks["edge_classification"].to_device,
            only_tracks["edge_classification"].to_host) == (0, 0)
    # track building: the three edge columns are already there; the same host round trips
    assert resident["track_building"].to_device == plain["track_building"].to_device - 3
    assert resident["track_building"].to_host == plain["track_building"].to_host
    assert plain["track_building"].to_host >= 2  # proto-tracks (offsets, nodes) to the host

    saved_up = sum(plain[s].to_device - resident[s].to_device for s in GNN)
    saved_down = sum(plain[s].to_host - resident[s].to_host for s in GNN)
    assert (saved_up, saved_down) == (len(features) + 2 + 3, 3)
    assert sum(plain[s].to_host - only_tracks[s].to_host for s in GNN) == 6


def test_every_stage_is_labelled(runs) -> None:
    """Bytes only for real copies; every gpu stage (front end, GNN, bridge, CKF, ambiguity,
    fit) says which kind it made; host stages cross nothing."""
    for name in ("plain", "resident"):
        assert [t.backend for t in runs[name].timings] == ["gpu"] * len(SPEC.steps)
        for timing in runs[name].timings:
            kind = transfer_fields(timing.transfers, timing.counted)["transfer_kind"]
            if timing.backend == "cpu":
                assert (timing.counted, kind) == (True, "none"), timing
            else:
                assert (timing.counted, kind) == (True, _kind(timing.stage)), timing
                traffic = timing.transfers.by_kind[_kind(timing.stage)]
                if _kind(timing.stage) == HANDOVER:
                    assert traffic.to_device_bytes == traffic.to_host_bytes == 0
                else:
                    assert traffic.to_device_bytes > 0


def test_bridge_starts_stay_on_the_device(runs) -> None:
    """With residency the bridge's start parameters and covariances (two tensors, 6x6 float64
    per seed) stay on the device for the CKF, and its surface order (offsets and indices,
    sorted there) with them: they come down only for a caller who wants them, and the CKF
    does not take the starts up again; the rest of both stages' traffic (the CKF's per-batch
    seeds and found measurements) does not depend on residency."""
    plain, resident, only_tracks = (_traffic(runs[n]) for n in ("plain", "resident",
                                                                "tracks_only"))
    for traffic in (resident, only_tracks):
        assert traffic["prototrack_seeding"].to_device == plain["prototrack_seeding"].to_device
        assert traffic["prototrack_ckf"].to_device == plain["prototrack_ckf"].to_device - 2 > 0
        assert traffic["prototrack_ckf"].to_host == plain["prototrack_ckf"].to_host > 0
    assert resident["prototrack_seeding"].to_host == plain["prototrack_seeding"].to_host
    assert only_tracks["prototrack_seeding"].to_host == plain["prototrack_seeding"].to_host - 4


def test_handovers_carry_no_bytes_copies_do() -> None:
    traffic = StageTraffic()
    traffic.record(HANDOVER, True, 800, 1e-6)
    traffic.record(COPY, False, 96, 2e-6)
    traffic.record(COPY, True, 24, 1e-6)
    row = transfer_fields(traffic)
    assert row["transfer_kind"] == "copy+handover"
    assert (row["to_device"], row["to_device_bytes"], row["to_host"],
            row["to_host_bytes"]) == (2, 24, 1, 96)
    assert row["transfer_seconds"] == pytest.approx(4e-6)
    with pytest.raises(ValueError, match="crossing kind"):
        traffic.record("teleport", True, 1, 0.0)
