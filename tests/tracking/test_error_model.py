"""The measurement error model: table lookups, where it applies, and that it is right on events
it was not calibrated on (truth residuals and fitted-track pulls on the ``tiny`` events)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from taas.detector.detector import Detector
from taas.edm.hits import Measurements
from taas.metrics.resolution import pulls, summarize
from taas.tracking.ckf import CkfConfig
from taas.tracking.fitter import TrackFitConfig
from taas.tracking.measurement_errors import (
    CALIBRATION_FILE,
    MeasurementErrorModel,
    check_error_source,
    load_error_model,
    measurement_variances,
)
from tests.tracking.toy import barrel_detector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from script_module import load_script

MODEL = MeasurementErrorModel(detector="toy-barrel", volumes=(8, 9),
                              sigma_u=((0.2, 0.15, 0.05), (0.3,)),
                              sigma_v=((0.21, 0.09), (0.13, 0.11)))


def _measurements(detector: Detector, rows: np.ndarray, size_u: list[int],
                  size_v: list[int]) -> Measurements:
    n = len(rows)
    return Measurements(module_key=detector.modules["module_key"][rows], local_u=np.zeros(n),
                        local_v=np.zeros(n), var_u=np.full(n, 7.0), var_v=np.full(n, 9.0),
                        size_u=np.array(size_u), size_v=np.array(size_v),
                        n_cells=np.ones(n, int), charge=np.ones(n))


def test_lookup_by_volume_axis_and_size() -> None:
    volume = np.array([8, 8, 8, 8, 9, 9, 7, 8])
    size = np.array([1, 2, 3, 9, 1, 4, 1, 0])
    u = MODEL.sigma_over_pitch(volume, size, "u")
    np.testing.assert_array_equal(u[:6], [0.2, 0.15, 0.05, 0.05, 0.3, 0.3])  # wide: last entry
    assert np.isnan(u[6])
    assert np.isnan(u[7])
    np.testing.assert_array_equal(MODEL.sigma_over_pitch(volume[:2], size[:2], "v"),
                                  [0.21, 0.09])


def test_variances_scale_with_pitch_and_keep_what_the_table_lacks() -> None:
    detector = barrel_detector()  # all modules in volume 8, named "toy-barrel"
    meas = _measurements(detector, np.array([0, 1, 2]), [1, 3, 0], [2, 1, 1])
    var = MODEL.variances(detector, meas)
    pu, pv = detector.modules["pitch_u"][:3], detector.modules["pitch_v"][:3]
    np.testing.assert_allclose(var[:2, 0], (np.array([0.2, 0.05]) * pu[:2]) ** 2)
    np.testing.assert_allclose(var[:, 1], (np.array([0.09, 0.21, 0.21]) * pv) ** 2)
    assert var[2, 0] == 7.0  # size 0: the stated variance
    other = MeasurementErrorModel(detector="acts-generic", volumes=MODEL.volumes,
                                  sigma_u=MODEL.sigma_u, sigma_v=MODEL.sigma_v)
    np.testing.assert_array_equal(other.variances(detector, meas),
                                  np.column_stack([np.full(3, 7.0), np.full(3, 9.0)]))


@pytest.mark.parametrize(("field", "kwargs"), [
    ("volumes", {"volumes": (8, 8)}),
    ("sigma_u", {"sigma_u": ((0.2,), (0.0,))}),
    ("sigma_v", {"sigma_v": ((0.2,),)}),
    ("detector", {"detector": ""}),
])
def test_bad_tables_are_refused(field: str, kwargs: dict) -> None:
    values = {"detector": "d", "volumes": (8, 9), "sigma_u": ((0.2,), (0.3,)),
              "sigma_v": ((0.2,), (0.3,)), **kwargs}
    with pytest.raises(ValueError, match=field):
        MeasurementErrorModel(**values)


def test_error_source_is_validated_by_the_fit_and_ckf_configs() -> None:
    for ok in ("calibrated", "cluster", "my/errors.json"):
        check_error_source(ok)
    for config in (TrackFitConfig, CkfConfig):
        with pytest.raises(ValueError, match="measurement_errors"):
            config(measurement_errors="calibrate")


def test_packaged_calibration_and_its_provenance() -> None:
    import json

    doc = json.loads(CALIBRATION_FILE.read_text())
    model = load_error_model()
    assert model.detector == doc["detector"] == "acts-generic"
    assert set(model.volumes) == {7, 8, 9, 12, 13, 14, 16, 17, 18}
    prov = doc["provenance"]
    assert prov["seed"] == 1001  # the training seed, never the evaluated events'
    assert prov["script"] == "benchmarks/calibrate_errors.py"
    assert prov["single_hit_measurements"] > 50_000


@pytest.fixture(scope="module")
def calibration_script() -> ModuleType:
    return load_script("calibrate_errors.py", "calibrate_errors_script")


@pytest.fixture(scope="module")
def tiny_residuals(tiny_sim_dir: Path, calibration_script: ModuleType) -> dict[str, np.ndarray]:
    from taas.events.dataset import open_dataset
    from taas.pipeline.runner import Pipeline

    ds = open_dataset(tiny_sim_dir)
    pipeline = Pipeline(calibration_script.CLUSTERING, ds.detector)
    parts = [calibration_script.truth_residuals(ds.read(e), pipeline) for e in ds.event_ids]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_residual_widths_are_one_on_other_events(tiny_residuals: dict,
                                                 calibration_script: ModuleType) -> None:
    """Residual / sigma on the tiny events (seed 42, not the calibration's): ~1 with the model,
    ~0.7 with the clustering's variances (the overstated errors the model corrects)."""
    assert len(tiny_residuals["res_u"]) > 500
    calibrated = calibration_script.pull_widths(tiny_residuals, load_error_model())
    clustering = calibration_script.pull_widths(tiny_residuals, None)
    for axis in ("u", "v"):
        assert 0.9 < calibrated[axis] < 1.1, calibrated
        assert clustering[axis] < 0.8, clustering


def test_fitted_track_pulls_within_a_loose_band(tiny_sim_dir: Path) -> None:
    """Truth proto-tracks of the tiny events (~100 tracks) fitted with the calibrated errors:
    perigee pull widths near one for all five parameters (the benchmark's 'small' sample,
    ~2500 tracks, measures them to a few %: benchmarks/results/acts_fit_comparison.json)."""
    comparison = load_script("acts_fit_comparison.py", "acts_fit_comparison_pulls")
    inputs, _ = comparison.prepare_inputs(tiny_sim_dir, 2, 7)
    params, cov, truth = [], [], []
    for data in inputs:
        fit = comparison.taas_fit(data, "calibrated")
        params.append(fit["params"])
        cov.append(fit["cov"])
        truth.append(data.truth[fit["track"]])
    table = summarize(pulls(np.concatenate(params), np.concatenate(cov),
                            np.concatenate(truth)))
    for name in ("d0", "z0", "phi", "theta", "qop"):
        assert table[name]["pull_n"] >= 60
        assert 0.75 < table[name]["pull_width68"] < 1.3, (name, table[name])
        assert abs(table[name]["pull_mean"]) < 0.3, (name, table[name])


def test_cluster_source_returns_the_stated_variances() -> None:
    detector = barrel_detector()
    meas = _measurements(detector, np.array([0, 1]), [1, 2], [1, 1])
    np.testing.assert_array_equal(measurement_variances(detector, meas, "cluster"),
                                  [[7.0, 9.0], [7.0, 9.0]])
