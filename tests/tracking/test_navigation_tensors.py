"""The CKF's navigation in torch (``NavigationTensors``) against the numba one (``Navigation``):
the same next layers and candidate module lists, on the CPU device (and CUDA when present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taas.tracking import helix
from taas.tracking.batched.navigation_tensors import NavigationTensors
from taas.tracking.batched.torch_arrays import TorchArrays
from taas.tracking.navigation import build_navigation
from taas.tracking.parameters import direction

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(scope="module")
def navigation(generic_detector):
    return build_navigation(generic_detector)


def _states(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Free states along helices from near the origin (pT 0.3-50 GeV, |eta| < 3.5, both
    charges, some running inwards), moved up to 1.2 m along them; random path floors and
    excluded layers (-1 for a third of them); per-state turning rates in a 2 T field."""
    rng = np.random.default_rng(seed)
    eta = rng.uniform(-3.5, 3.5, n)
    theta = 2 * np.arctan(np.exp(-eta))
    pt = np.exp(rng.uniform(np.log(0.3), np.log(50.0), n))
    free = np.zeros((n, 8))
    free[:, :3] = rng.normal(0.0, [0.05, 0.05, 40.0], (n, 3))
    free[:, 4:7] = direction(rng.uniform(-np.pi, np.pi, n), theta)
    free[:, 7] = rng.choice([-1.0, 1.0], n) * np.sin(theta) / pt
    bz = 2.0
    moved = helix.helix_at(free, rng.uniform(0.0, 1200.0, n), bz)
    backwards = rng.random(n) < 0.2
    moved[backwards, 4:7] *= -1
    moved[backwards, 7] *= -1
    s_min = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 50.0, n))
    exclude = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 50, n))
    return moved, s_min, exclude, np.full(n, bz)


@pytest.mark.parametrize("device", DEVICES)
def test_next_layer_and_candidate_modules_match_the_numba_navigation(navigation, device):
    free, s_min, exclude, bz = _states(3000, seed=5)
    exclude = np.minimum(exclude, navigation.n_layers - 1)
    s_max = np.where(np.arange(len(free)) % 7 == 0, 300.0, np.inf)
    layer, s = navigation.next_layer(free, s_min, exclude, bz, s_max)
    assert (layer >= 0).sum() > 2000  # both outcomes exercised
    assert (layer < 0).sum() > 50
    assert len(np.unique(layer)) > 30  # barrels and endcaps

    on = NavigationTensors(navigation, TorchArrays(torch.device(device)))

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), device=device)

    t_layer, t_s = on.next_layer(put(free.T), put(helix.turning_rate(free[:, 7], bz)),
                                 put(s_min), put(exclude), put(s_max))
    np.testing.assert_array_equal(t_layer.cpu().numpy(), layer)
    np.testing.assert_allclose(t_s.cpu().numpy(), s, rtol=1e-12)

    found = layer >= 0
    at = helix.helix_at(free[found], s[found], bz[found])
    offsets, rows = navigation.candidate_modules(layer[found], at[:, :3], at[:, 4:7], 1.0)
    assert offsets[-1] > 2 * found.sum()  # several modules per window
    t_offsets, t_rows = on.candidate_modules(put(layer[found]), put(at[:, :3].T),
                                             put(at[:, 4:7].T), 1.0)
    np.testing.assert_array_equal(t_offsets.cpu().numpy(), offsets)
    np.testing.assert_array_equal(t_rows.cpu().numpy(), rows)


def test_candidate_modules_of_no_queries(navigation):
    on = NavigationTensors(navigation, TorchArrays(torch.device("cpu")))
    offsets, rows = on.candidate_modules(torch.zeros(0, dtype=torch.int64),
                                         torch.zeros((3, 0)), torch.zeros((3, 0)))
    assert offsets.tolist() == [0]
    assert rows.numel() == 0
