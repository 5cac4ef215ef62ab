"""Fixed-radius nearest neighbours against a brute-force answer, and CPU against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taas.gnn.frnn import _Grid, frnn, frnn_cpu, frnn_torch, principal_coordinates


def brute_force(x: np.ndarray, r: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair by the full distance matrix, in the canonical order (src, distance, dst)."""
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    src, dst = [], []
    for i in range(len(x)):
        near = [j for j in np.lexsort((np.arange(len(x)), d2[i])) if j != i and d2[i, j] < r * r]
        src += [i] * len(near[:k])
        dst += near[:k]
    return np.array(src, np.int64), np.array(dst, np.int64)


def as_numpy(edges: tuple[torch.Tensor, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    return edges[0].numpy(), edges[1].numpy()


def assert_same(got: tuple, want: tuple) -> None:
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize(("d", "radii"), [(3, (0.05, 0.15, 0.4)), (12, (0.6, 0.9))])
@pytest.mark.parametrize("k", [1, 4, 1000])
def test_matches_brute_force(d: int, radii: tuple[float, ...], k: int) -> None:
    x = np.random.default_rng(d * 100 + k).random((300, d))
    for r in radii:
        want = brute_force(x, r, k)
        assert len(want[0]) > 0
        assert_same(frnn_cpu(x, r, k), want)
        assert_same(as_numpy(frnn_torch(torch.from_numpy(x), r, k)), want)


def test_k_keeps_the_nearest() -> None:
    x = np.random.default_rng(1).random((400, 3))
    full = brute_force(x, 0.3, 10_000)
    src, dst = frnn_cpu(x, 0.3, 5)
    counts = np.bincount(full[0], minlength=len(x))
    assert np.array_equal(np.bincount(src, minlength=len(x)), np.minimum(counts, 5))
    for i in range(0, len(x), 37):  # the first five of the full sorted list
        assert dst[src == i].tolist() == full[1][full[0] == i][:5].tolist()


@pytest.mark.parametrize("grid_dims", [1, 2, 3, None])
def test_torch_grid_and_chunking_do_not_change_the_answer(grid_dims: int | None) -> None:
    x = np.random.default_rng(2).normal(size=(500, 8))
    want = frnn_cpu(x, 1.5, 7)
    got = frnn_torch(torch.from_numpy(x), 1.5, 7, grid_dims=grid_dims, max_candidates=20_000)
    assert_same(as_numpy(got), want)


def test_principal_coordinates_keep_distances() -> None:
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(200, 6)) * [5, 1, 1, 1, 1, 3])
    p = principal_coordinates(x)
    def distances(a: torch.Tensor) -> torch.Tensor:
        return ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1).sqrt()

    torch.testing.assert_close(distances(p), distances(x), rtol=0, atol=1e-12)
    spread = p.var(0)
    assert torch.all(spread[:-1] >= spread[1:])  # widest axis first


def oblique_points(n: int, seed: int) -> torch.Tensor:
    """Points along a line that no coordinate axis follows, with a little noise."""
    rng = np.random.default_rng(seed)
    line = np.ones(6) / np.sqrt(6.0)
    return torch.from_numpy(rng.uniform(0, 20, (n, 1)) * line + rng.normal(0, 0.05, (n, 6)))


def test_grid_on_principal_axes_prunes_an_oblique_cloud() -> None:
    x = oblique_points(3000, 6)
    principal = _Grid.build(x, 0.3, 1).candidate_counts().sum()
    lo, extent = x.min(0).values, x.max(0).values - x.min(0).values
    raw = _Grid._with_dims(x, lo, extent, torch.tensor([0]), 0.3).candidate_counts().sum()
    assert principal * 2 < raw  # the cells lie along the line, not across it
    assert_same(as_numpy(frnn_torch(x, 0.3, 8, grid_dims=1)), frnn_cpu(x.numpy(), 0.3, 8))


def test_float32_cpu_and_torch_agree() -> None:
    x = np.random.default_rng(3).random((2000, 3)).astype(np.float32)
    assert_same(as_numpy(frnn_torch(torch.from_numpy(x), 0.05, 16)), frnn_cpu(x, 0.05, 16))


def test_wide_extent_small_radius() -> None:
    """Cell coordinates are capped so packed keys cannot overflow."""
    x = np.random.default_rng(4).random((200, 3)) * np.array([1e9, 1.0, 1.0])
    x[:100] = np.random.default_rng(5).random((100, 3)) * 2e-3
    want = brute_force(x, 1e-3, 50)
    assert len(want[0]) > 0
    assert_same(as_numpy(frnn_torch(torch.from_numpy(x), 1e-3, 50)), want)
    assert_same(frnn_cpu(x, 1e-3, 50), want)


def test_duplicate_points() -> None:
    x = np.zeros((6, 3))
    for src, dst in (frnn_cpu(x, 0.1, 3), as_numpy(frnn_torch(torch.from_numpy(x), 0.1, 3))):
        assert np.bincount(src).tolist() == [3] * 6
        assert not np.any(src == dst)
        assert src.tolist() == sorted(src.tolist())


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_inputs(n: int) -> None:
    x = np.arange(n * 3, dtype=float).reshape(n, 3) * 0.01
    for src, dst in (frnn_cpu(x, 1.0, 4), as_numpy(frnn_torch(torch.from_numpy(x), 1.0, 4))):
        assert src.dtype == dst.dtype == np.int64
        assert src.tolist() == ([0, 1] if n == 2 else [])
        assert dst.tolist() == ([1, 0] if n == 2 else [])


def test_zero_radius_gives_no_edges() -> None:
    x = np.zeros((5, 2))
    assert len(frnn_cpu(x, 0.0, 3)[0]) == 0
    assert len(frnn_torch(torch.from_numpy(x), 0.0, 3)[0]) == 0


@pytest.mark.parametrize(("r", "k"), [(-1.0, 3), (1.0, 0), (float("nan"), 3)])
def test_bad_arguments(r: float, k: int) -> None:
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"radius|k must"):
        frnn_cpu(x, r, k)
    with pytest.raises(ValueError, match=r"radius|k must"):
        frnn_torch(torch.from_numpy(x), r, k)


def test_non_finite_points() -> None:
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        frnn_cpu(x, 1.0, 3)
    with pytest.raises(ValueError, match="finite"):
        frnn_torch(torch.from_numpy(x), 1.0, 3)


def test_dispatch_by_type() -> None:
    x = np.random.default_rng(6).random((50, 3))
    assert isinstance(frnn(x, 0.3, 5)[0], np.ndarray)
    assert isinstance(frnn(torch.from_numpy(x), 0.3, 5)[0], torch.Tensor)


_SIMULATED_KERNEL = """
import numpy as np, torch
from taas.gnn.frnn import frnn_cpu, frnn_torch
rng = np.random.default_rng(5)
for n, d, r, k in [(250, 12, 0.9, 5), (250, 3, 0.15, 8), (200, 2, 0.2, 64)]:
    x = rng.random((n, d)).astype(np.float32)
    x[10] = x[11]  # a duplicate: distance 0
    got = frnn_torch(torch.from_numpy(x), r, k, kernel=True)
    want = frnn_cpu(x, r, k)
    assert len(want[0]) > n, (n, d, len(want[0]))
    np.testing.assert_array_equal(got[0].numpy(), want[0])
    np.testing.assert_array_equal(got[1].numpy(), want[1])
print("kernel ok")
"""


def test_cuda_kernel_under_the_simulator() -> None:
    """The numba CUDA kernel (the CUDA path of frnn_torch) gives the k-d tree's edges, k caps,
    ties and duplicates included, run by numba's CUDA simulator (the variable must be set
    before numba is imported, hence the subprocess)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run([sys.executable, "-c", _SIMULATED_KERNEL], env=env, text=True,
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "kernel ok" in done.stdout


def test_kernel_refuses_what_it_cannot_hold() -> None:
    from taas.gnn.frnn_kernel import MAX_K, frnn_kernel, kernel_applies

    x = torch.zeros((4, 3))
    assert not kernel_applies(x, 8)  # CPU tensors take the gather path unless asked
    empty = torch.zeros(0, dtype=torch.int64)
    with pytest.raises(ValueError, match="at most"):
        frnn_kernel(x, 0.1, MAX_K + 1, empty, empty, empty, empty, empty)
    with pytest.raises(ValueError, match="float32"):
        frnn_kernel(x.double(), 0.1, 4, empty, empty, empty, empty, empty)
