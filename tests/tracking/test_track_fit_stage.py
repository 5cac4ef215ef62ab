"""The track_fit stage on CPU: contract, ordering, skipped and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backends.cpu.track_fit import CpuTrackFit
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.errors import InputError
from taas.tracking.fitter import TrackFitConfig, fit_prototracks
from tests.tracking.toy import barrel_detector, generate_particles, measure, simulate


@pytest.fixture(scope="module")
def detector():
    return barrel_detector()


@pytest.fixture(scope="module")
def event(detector):
    rng = np.random.default_rng(21)
    truth = simulate(detector, generate_particles(50, rng), rng)
    meas, protos = measure(detector, truth, rng)
    return truth, meas, protos


def inputs(meas: Measurements, protos: ProtoTracks) -> dict[str, np.ndarray]:
    return {**meas.to_tensors(), **protos.to_tensors()}


def test_stage_contract(detector, event):
    truth, meas, protos = event
    stage = CpuTrackFit(detector)
    assert (stage.NAME, stage.BACKEND) == ("track_fit", "cpu")
    assert {s.name for s in stage.INPUTS} == set(inputs(meas, protos))
    out = stage.run(inputs(meas, protos))
    tracks = Tracks.from_tensors(out)
    assert len(tracks) == 50
    np.testing.assert_array_equal(tracks["ndf"], 15)
    # parameters on the first layer's module, measurement lists ordered outwards
    np.testing.assert_array_equal(tracks["module_key"],
                                  detector.modules["module_key"][truth.rows[:, 0]])
    xyz = detector.local_to_global(detector.index_of(meas["module_key"]), meas["local_u"],
                                   meas["local_v"])
    r = np.hypot(xyz[:, 0], xyz[:, 1])[tracks["meas_indices"]].reshape(50, 10)
    assert np.all(np.diff(r, axis=1) > 0)
    # the same set of measurements as the proto-track
    np.testing.assert_array_equal(np.sort(tracks["meas_indices"].reshape(50, 10), axis=1),
                                  np.sort(protos["indices"].reshape(50, 10), axis=1))


def test_config_from_mapping_and_validation(detector):
    stage = CpuTrackFit(detector, {"bz": 1.5, "max_iterations": 3})
    assert stage.config == TrackFitConfig(bz=1.5, max_iterations=3)
    for bad in ({"bz": 0.0}, {"max_iterations": 0}, {"min_measurements": 2},
                {"x0": -1.0}, {"batch_size": 0}, {"bz": float("nan")}):
        with pytest.raises(ValueError):  # noqa: PT011 - each message names its field
            TrackFitConfig(**bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stage.config.bz = 3.0  # type: ignore[misc]


def test_empty_prototracks(detector, event):
    _, meas, _ = event
    for offsets in ([], [0]):
        protos = ProtoTracks(offsets=np.array(offsets, np.int64), indices=np.zeros(0, np.int64))
        tracks = Tracks.from_tensors(CpuTrackFit(detector).run(inputs(meas, protos)))
        assert len(tracks) == 0
        np.testing.assert_array_equal(tracks["meas_offsets"], [0])
    empty = Measurements.empty()
    protos = ProtoTracks(offsets=np.zeros(1, np.int64), indices=np.zeros(0, np.int64))
    assert len(Tracks.from_tensors(CpuTrackFit(detector).run(inputs(empty, protos)))) == 0


def test_short_prototracks_are_skipped(detector, event):
    _, meas, protos = event
    idx = protos["indices"].reshape(50, 10)
    lists = [idx[0, :2], idx[1], idx[2, :3], idx[3, :0], idx[4, :5]]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
    short = ProtoTracks(offsets=offsets, indices=np.concatenate(lists))
    tracks, keep = fit_prototracks(detector, meas, short)
    np.testing.assert_array_equal(keep, [1, 2, 4])
    np.testing.assert_array_equal(tracks["ndf"], [15, 1, 5])
    np.testing.assert_array_equal(tracks["meas_offsets"], [0, 10, 13, 18])
    for i, src in enumerate(keep):
        got = tracks["meas_indices"][tracks["meas_offsets"][i]:tracks["meas_offsets"][i + 1]]
        assert sorted(got) == sorted(lists[src])
    # the 3-measurement track is fitted with the other lengths, not alone: same answer alone
    alone, _ = fit_prototracks(detector, meas, ProtoTracks(offsets=np.array([0, 3]),
                                                           indices=lists[2]))
    np.testing.assert_allclose(alone["params"], tracks["params"][1:2], rtol=1e-12)


@pytest.mark.parametrize("column", ["local_u", "local_v", "var_u", "var_v"])
def test_nan_measurement_is_an_input_error(detector, event, column):
    _, meas, protos = event
    cols = meas.columns()
    cols[column] = cols[column].copy()
    cols[column][7] = np.nan
    with pytest.raises(InputError, match=column) as info:
        CpuTrackFit(detector).run(inputs(Measurements(cols), protos))
    assert info.value.row == 7


def test_bad_variance_and_indices_are_input_errors(detector, event):
    _, meas, protos = event
    cols = meas.columns()
    cols["var_v"] = cols["var_v"].copy()
    cols["var_v"][3] = 0.0
    with pytest.raises(InputError, match="var_v"):
        CpuTrackFit(detector).run(inputs(Measurements(cols), protos))
    bad = ProtoTracks(offsets=np.array([0, 3]), indices=np.array([0, 1, len(meas)]))
    with pytest.raises(InputError, match=r"lies outside the .* rows of .measurements."):
        CpuTrackFit(detector).run(inputs(meas, bad))
    bad = ProtoTracks(offsets=np.array([0, 4]), indices=np.array([0, 1, 2]))
    with pytest.raises(InputError, match="offsets"):
        CpuTrackFit(detector).run(inputs(meas, bad))


def test_iterations_agree(detector, event):
    _, meas, protos = event
    one, _ = fit_prototracks(detector, meas, protos, TrackFitConfig(max_iterations=1))
    three, _ = fit_prototracks(detector, meas, protos,
                               TrackFitConfig(max_iterations=3, convergence=1e-9))
    sigma = np.sqrt(np.diagonal(one["covariance"], axis1=1, axis2=2))
    assert np.all(np.abs(one["params"] - three["params"]) < 0.05 * sigma)
    # the chi2 moves a little with the linearisation point and the prior's centre
    np.testing.assert_allclose(one["chi2"], three["chi2"], atol=0.2)


def test_garbage_prototracks_do_not_break_the_batch(detector, event):
    """Random hit combinations and degenerate lists fit (badly) or drop out, without warnings
    (warnings are errors in this test suite) and without spoiling the good tracks."""
    _, meas, protos = event
    rng = np.random.default_rng(3)
    good = protos["indices"].reshape(50, 10)
    same_module = np.flatnonzero(meas["module_key"] == meas["module_key"][0])
    lists = [good[0], rng.choice(len(meas), 10, replace=False), good[1],
             np.repeat(same_module[:1], 4), good[2][::-1]]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
    tracks, keep = fit_prototracks(detector, meas,
                                   ProtoTracks(offsets=offsets, indices=np.concatenate(lists)))
    assert {0, 2, 4} <= set(keep.tolist())
    assert np.all(np.isfinite(tracks["params"]))
    assert np.all(np.isfinite(tracks["covariance"]))
    reference, _ = fit_prototracks(detector, meas, ProtoTracks(
        offsets=np.array([0, 10, 20, 30]), indices=good[:3].reshape(-1)))
    where = {int(k): i for i, k in enumerate(keep)}
    for src, ref in ((0, 0), (2, 1), (4, 2)):
        np.testing.assert_allclose(tracks["params"][where[src]], reference["params"][ref],
                                   rtol=1e-10)
    if 1 in where:
        assert tracks["chi2"][where[1]] > 100  # random hits are no track
