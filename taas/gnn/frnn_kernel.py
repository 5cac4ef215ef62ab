"""The cell-list FRNN as one numba CUDA kernel: candidates are visited, never materialised.

``taas.gnn.frnn.frnn_torch`` gathers every (query, candidate) pair of the 3**g cells around
each query into tensors, then filters and sorts them. On a ``large`` event (194k space points,
12-D embedding) that is 0.9 billion candidate pairs for 9 million edges: measured on an H100,
the gathers and sorts took 360-690 ms (``benchmarks/results/gnn_gpu_profile_large.json``).
Here one thread per query walks the same cells (``taas.gnn.frnn._Grid``), computes each
distance in registers and keeps its ``k`` nearest in a sorted local list, so memory traffic is
the points alone. Queries are taken in cell order, so the threads of a warp mostly read the
same candidates.

The arithmetic is the module's definition (``taas.gnn.frnn``): squared distances summed one
dimension at a time in float32, ``d2 < r2`` strict, ties at the k-th place broken by the
smaller index. ``fastmath`` stays off, which also keeps NVVM from fusing the multiply-adds, so
the sums round exactly as numpy's do and the edges equal the k-d tree's.

CI has no GPU: the same kernel runs under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, on CPU tensors), which is how ``tests/gnn/test_frnn.py`` checks it.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import torch
from numba import cuda, float32, int64

log = logging.getLogger(__name__)

#: Largest ``k`` the kernel's per-thread list holds (a compile-time size of local memory).
MAX_K = 64
#: Largest point dimension the kernel holds in registers (the embedding has 12).
MAX_DIMS = 16
#: Threads per block.
_BLOCK = 128


def _neighbours(x, order, point_cell, nb_ptr, nb_start, nb_count, r2, k, out_dst, out_n):
    """Thread ``i``: query ``order[i]``; its at most ``k`` nearest points with squared distance
    below ``r2`` into ``out_dst[q, :out_n[q]]``, nearest first, ties by index.

    A candidate is dropped as soon as its partial sum reaches ``r2`` or exceeds the k-th best
    (sums of squares only grow, so the answer is the one of the full sums)."""
    i = cuda.grid(1)
    if i >= order.shape[0]:
        return
    q = order[i]
    n_dims = x.shape[1]
    xq = cuda.local.array(MAX_DIMS, float32)
    for col in range(n_dims):
        xq[col] = x[q, col]
    best_d = cuda.local.array(MAX_K, float32)
    best_i = cuda.local.array(MAX_K, int64)
    found = 0
    worst = r2  # the k-th best distance once the list is full
    c = point_cell[q]
    for run in range(nb_ptr[c], nb_ptr[c + 1]):
        first = nb_start[run]
        for t in range(first, first + nb_count[run]):
            p = order[t]
            if p == q:
                continue
            d2 = float32(0.0)
            for col in range(n_dims):
                diff = xq[col] - x[p, col]
                d2 += diff * diff
                if d2 >= r2 or d2 > worst:
                    break
            if not d2 < r2 or d2 > worst:
                continue
            if found == k:  # full: only a nearer (or as near, lower-index) point enters
                last = k - 1
                if d2 == best_d[last] and p > best_i[last]:
                    continue
                pos = last
            else:
                pos = found
                found += 1
            while pos > 0 and (best_d[pos - 1] > d2
                               or (best_d[pos - 1] == d2 and best_i[pos - 1] > p)):
                best_d[pos] = best_d[pos - 1]
                best_i[pos] = best_i[pos - 1]
                pos -= 1
            best_d[pos] = d2
            best_i[pos] = p
            if found == k:
                worst = best_d[k - 1]
    out_n[q] = found
    for t in range(found):
        out_dst[q, t] = best_i[t]


@functools.cache
def _compiled():
    """The kernel, compiled for the device on first use (CPU-only runs never compile it)."""
    return cuda.jit(_neighbours)


@functools.cache
def kernel_works() -> bool:
    """Whether numba compiles and launches the kernel on this machine's GPU (tried once).

    If not, the reason is logged and ``frnn_torch`` gathers candidates with torch instead:
    numba-cuda 0.30 (the latest on 2026-11-23) cannot compile under numpy 2.5, which removed
    ``np.row_stack``, hence the project's ``numpy<2.5`` pin.
    """
    if not torch.cuda.is_available():
        return False
    def ints(*values: int) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int64, device="cuda")

    try:  # two coincident points in one cell: each finds the other
        src, _ = frnn_kernel(torch.zeros((2, 1), device="cuda"), 1.0, 1, order=ints(0, 1),
                             point_cell=ints(0, 0), nb_ptr=ints(0, 1), nb_start=ints(0),
                             nb_count=ints(2))
    except Exception as exc:  # whatever failed, the torch path answers
        log.warning("numba CUDA FRNN kernel unusable here (%s: %s); using torch gathers",
                    type(exc).__name__, exc)
        return False
    return len(src) == 2


def kernel_applies(x: torch.Tensor, k: int) -> bool:
    """Whether :func:`frnn_kernel` answers by default: float32 points on CUDA, ``k <= MAX_K``,
    at most ``MAX_DIMS`` dimensions, and a kernel that compiles here."""
    return (x.is_cuda and x.dtype == torch.float32 and k <= MAX_K and x.shape[1] <= MAX_DIMS
            and kernel_works())


def frnn_kernel(x: torch.Tensor, r: float, k: int, order: torch.Tensor,
                point_cell: torch.Tensor, nb_ptr: torch.Tensor, nb_start: torch.Tensor,
                nb_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed FRNN edges ``(src, dst)`` in canonical order from a built cell list.

    ``x``: (n, d) float32 points on CUDA (or on the CPU under the CUDA simulator); the other
    tensors are a ``_Grid``'s. Rows come out by query index, each sorted by distance then index.
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"frnn_kernel holds at most {MAX_K} neighbours, got k={k}")
    if x.dtype != torch.float32:
        raise ValueError(f"frnn_kernel needs float32 points, got {x.dtype}")
    if x.ndim != 2 or not 1 <= x.shape[1] <= MAX_DIMS:
        raise ValueError(f"frnn_kernel takes (n, d) points with d <= {MAX_DIMS}, got "
                         f"{tuple(x.shape)}")
    n = len(x)
    dev = x.device
    out_dst = torch.empty((n, k), dtype=torch.int64, device=dev)
    out_n = torch.zeros(n, dtype=torch.int64, device=dev)
    args = [x.contiguous(), order, point_cell, nb_ptr, nb_start, nb_count]
    view = cuda.as_cuda_array if dev.type == "cuda" else (lambda t: t.numpy())
    r2 = np.float32(r) * np.float32(r)
    _compiled()[math.ceil(n / _BLOCK), _BLOCK](*map(view, args), r2, k, view(out_dst), view(out_n))
    keep = torch.arange(k, device=dev)[None, :] < out_n[:, None]
    src = torch.arange(n, device=dev).repeat_interleave(out_n)
    return src, out_dst[keep]
