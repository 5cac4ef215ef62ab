"""taas' Kalman fit against ACTS' KalmanFitter (pyacts) on identical measurement lists.

The truth proto-tracks of a ``tiny`` event are fitted by both with the same measurements,
variances and start parameters (``benchmarks/acts_fit_comparison.py``, whose full run on
``small`` events is ``benchmarks/results/acts_fit_comparison.json``). Without material effects
the two fits are the same algebra, so their covariances must agree to rounding; with material
both model the Generic detector's material and must agree closely on average.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("acts", reason="pyacts (ACTS' Python bindings) is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from script_module import load_script


@pytest.fixture(scope="module")
def comparison() -> ModuleType:
    return load_script("acts_fit_comparison.py", "acts_fit_comparison_test")


@pytest.fixture(scope="module")
def tiny_inputs(comparison: ModuleType, tiny_sim_dir: Path) -> list:
    inputs, sizes = comparison.prepare_inputs(tiny_sim_dir, 1, 7)
    assert sizes[0]["truth_prototracks"] >= 30
    return inputs


def _both(comparison: ModuleType, inputs: list, work: Path, material: bool) -> dict:
    data = inputs[0]
    ours = comparison.taas_fit(data, "calibrated", material=material)
    theirs = comparison.acts_fit(inputs, "calibrated", work, material=material)[data.event_id]
    return comparison.compare(ours, theirs) | {"n": len(data.prototracks),
                                               "acts_fitted": theirs["n_fitted"]}


def test_covariances_identical_without_material(comparison: ModuleType, tiny_inputs: list,
                                                tmp_path: Path) -> None:
    result = _both(comparison, tiny_inputs, tmp_path, material=False)
    assert len(result["track"]) >= 0.9 * result["n"]
    ratio = result["sigma_ratio"]
    np.testing.assert_allclose(ratio[:, [0, 2, 4]], 1.0, atol=5e-3)  # d0, phi, q/p
    # z0, theta: without noise the smoothed theta variance on the first module is the loose
    # prior's minus ~all of it (1e-11 of 2.5e-3); ACTS' smoother loses that cancellation for
    # ~20% of tracks when the (identical) prior is handed over at the perigee, where it is
    # strongly correlated: its theta sigma then shrinks between the second and the first module
    # although nothing measures theta there, while taas' stays the filtered one of the last
    # module, as a constant of motion must (benchmarks/acts_fit_comparison.py)
    np.testing.assert_allclose(ratio[:, [1, 3]], 1.0, atol=0.05)
    assert np.all(np.abs(result["delta"]) < comparison.AGREEMENT_SIGMAS)


def test_parameters_and_covariances_agree_with_material(comparison: ModuleType,
                                                        tiny_inputs: list,
                                                        tmp_path: Path) -> None:
    result = _both(comparison, tiny_inputs, tmp_path, material=True)
    assert len(result["track"]) >= 0.9 * result["n"]
    delta, ratio = result["delta"], result["sigma_ratio"]
    np.testing.assert_allclose(np.median(ratio, axis=0), 1.0, atol=0.02)
    np.testing.assert_allclose(np.median(delta, axis=0), 0.0, atol=0.03)
    # same measurements, start and prior: small events put 99.9% of tracks within 0.1 sigma on
    # all five (benchmarks/results/acts_fit_comparison.json; the target is 99%)
    assert np.mean(np.all(np.abs(delta) < comparison.AGREEMENT_SIGMAS, axis=1)) > 0.97
