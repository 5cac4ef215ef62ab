"""The greedy ambiguity solver in torch (``ambiguity/gpu``): the same survivors as the numba
solver and the plain greedy rule, ties and iteration caps included, on the CPU device and on
CUDA where torch sees it (the GPU machine runs this file: ``docs/gpu_machine.md``)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.gpu.ambiguity import GpuAmbiguityResolution  # noqa: E402
from taas.edm import ProtoTracks  # noqa: E402
from taas.tracking.ambiguity import AmbiguityConfig, greedy_select  # noqa: E402
from taas.tracking.batched.ambiguity import TorchGreedySolver  # noqa: E402
from tests.tracking.test_ambiguity import reference_greedy, resolve, tracks  # noqa: E402

DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("max_shared", [0, 1, 3])
def test_same_survivors_as_numba_with_ties(max_shared: int, device: torch.device) -> None:
    """Few distinct lengths and qualities make equal shared fractions and equal chi2/ndf
    common, so the tie-breaks (worse quality first, then the lower index) are exercised."""
    rng = np.random.default_rng(7 + max_shared)
    solver = TorchGreedySolver(device)
    for _ in range(15):
        n_tracks = int(rng.integers(1, 60))
        lists = [rng.choice(50, int(rng.choice([7, 8, 10])), replace=False)
                 for _ in range(n_tracks)]
        quality = rng.integers(0, 3, n_tracks).astype(np.float64)
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
        indices = np.concatenate(lists)
        want = greedy_select(offsets, indices, quality, 50, max_shared, 10**6)
        got = solver(offsets, indices, quality, 50, max_shared, 10**6)
        assert got.dtype == bool
        assert got.tolist() == want.tolist() == reference_greedy(lists, quality, max_shared)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_same_survivors_under_random_iteration_caps(device: torch.device) -> None:
    """A step removes many tracks at once; wherever the cap falls, the survivors are the
    sequential solver's after as many removals."""
    rng = np.random.default_rng(99)
    solver = TorchGreedySolver(device)
    for _ in range(30):
        n_tracks = int(rng.integers(20, 120))
        lists = [rng.choice(150, int(rng.integers(7, 12)), replace=False)
                 for _ in range(n_tracks)]
        quality = rng.integers(0, 4, n_tracks).astype(np.float64)
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
        indices = np.concatenate(lists)
        cap = int(rng.integers(1, 40))
        want = greedy_select(offsets, indices, quality, 150, 2, cap)
        assert solver(offsets, indices, quality, 150, 2, cap).tolist() == want.tolist()


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_iteration_cap_and_empty_input(device: torch.device) -> None:
    solver = TorchGreedySolver(device)
    lists = [np.arange(8)] * 4  # four copies: three must go
    offsets = np.arange(5) * 8
    indices = np.concatenate(lists)
    quality = np.array([0.5, 0.1, 0.9, 0.3])
    assert solver(offsets, indices, quality, 8, 3, 10**6).tolist() == [False, True, False,
                                                                          False]
    assert solver(offsets, indices, quality, 8, 3, 1).tolist() == greedy_select(
        offsets, indices, quality, 8, 3, 1).tolist() == [True, True, False, True]
    assert solver(np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0), 0, 3,
                  10**6).tolist() == []


def test_gpu_stage_gives_the_cpu_stage_tracks_and_counts_its_copies() -> None:
    lists = [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 7], [10, 11, 12, 13, 14, 15, 16],
             [10, 11, 12, 13, 20, 21, 22], [30, 31, 32], [0, 1, 2, 3, 40, 41, 42, 43]]
    chi2 = [1.0, 2.0, 1.0, 1.0, 1.0, 3.0]
    stage = GpuAmbiguityResolution(None, AmbiguityConfig())
    out = ProtoTracks.from_tensors(stage.run(tracks(lists, chi2).to_tensors()))
    got = [out["indices"][out["offsets"][k]:out["offsets"][k + 1]].tolist()
           for k in range(len(out))]
    assert got == resolve(lists, chi2)
    assert stage.device.startswith("cuda" if torch.cuda.is_available() else "cpu")
    assert stage.transfers["to_device"] == 3  # offsets, indices, quality
    assert stage.transfers["to_host"] == 1  # the survivor mask
