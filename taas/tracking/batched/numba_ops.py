"""Elementary operations of the numba flavour of ``formulas.py``: one track per call.

Values are float scalars and small C arrays; the linear-algebra primitives take the sizes
they work on as arguments (the formulas spell them out as literals). ``kernel`` compiles with
numba's numpy error model (a division by zero gives inf / NaN, as in the torch flavour, instead
of raising: the formulas evaluate both sides of every ``select``). The dense linear algebra is
written as plain loops (no BLAS call per 6 x 6 product).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

sin, cos, sqrt, log = np.sin, np.cos, np.sqrt, np.log
atan2, hypot, sinc, sign = np.arctan2, np.hypot, np.sinc, np.sign
abs, isfinite, floor = np.abs, np.isfinite, np.floor


def kernel(func: Callable[..., Any]) -> Any:
    """numba.njit with the numpy error model, cached on disk."""
    return numba.njit(cache=True, error_model="numpy")(func)


def linear_algebra(func: Callable[..., Any]) -> Any:
    """A small-matrix loop inlined into its caller at numba IR level, where the formulas pass
    the matrix sizes as literals: LLVM then sees constant trip counts and unrolls (without
    both, ``kalman_update`` ran 6x slower than hand-written loops)."""
    return numba.njit(cache=True, error_model="numpy", inline="always")(func)


@kernel
def select(cond, a, b):
    return a if cond else b


@kernel
def max_scalar(x, c):
    return max(x, c)


@kernel
def min_scalar(x, c):
    return min(x, c)


@kernel
def minimum(a, b):
    return min(a, b)


@kernel
def maximum(a, b):
    return max(a, b)


@kernel
def logical_not(x):
    return not x


@kernel
def all_true(x):
    return x


@linear_algebra
def matmul_into(out, a, b, rows, inner, cols):
    """out[:rows, :cols] = a[:rows, :inner] b[:inner, :cols] (out must not alias a or b)."""
    for r in range(rows):
        for c in range(cols):
            acc = 0.0
            for k in range(inner):
                acc += a[r, k] * b[k, c]
            out[r, c] = acc


@linear_algebra
def matmul_nt_into(out, a, b, rows, inner, cols):
    """out[:rows, :cols] = a[:rows, :inner] b[:cols, :inner]^T (out must not alias a or b)."""
    for r in range(rows):
        for c in range(cols):
            acc = 0.0
            for k in range(inner):
                acc += a[r, k] * b[c, k]
            out[r, c] = acc


@linear_algebra
def lincomb_into(out, a, alpha, b, beta, rows, cols):
    """out = alpha a + beta b, entry by entry (out may be a or b)."""
    for r in range(rows):
        for c in range(cols):
            out[r, c] = alpha * a[r, c] + beta * b[r, c]


@linear_algebra
def symmetrize(a, n):
    for r in range(n):
        for c in range(r + 1, n):
            mean = 0.5 * (a[r, c] + a[c, r])
            a[r, c] = mean
            a[c, r] = mean


@linear_algebra
def transpose_into(out, a, rows, cols):
    for r in range(rows):
        for c in range(cols):
            out[c, r] = a[r, c]


@linear_algebra
def copy_into(out, a, rows, cols):
    for r in range(rows):
        for c in range(cols):
            out[r, c] = a[r, c]


@linear_algebra
def sub_outer_into(m, u, v, rows, cols):
    """m -= u v^T."""
    for r in range(rows):
        for c in range(cols):
            m[r, c] -= u[r] * v[c]


@kernel
def invalidate(a, ok):
    """a = NaN unless ok."""
    if not ok:
        a.fill(np.nan)


@kernel
def zero_unless(a, ok):
    if not ok:
        a.fill(0.0)


@linear_algebra
def zero_nonfinite(a, rows, cols):
    for r in range(rows):
        for c in range(cols):
            if not np.isfinite(a[r, c]):
                a[r, c] = 0.0


@linear_algebra
def solve_into(a, b, n, cols):
    """Solve a x = b in place (b becomes x; a is overwritten) by LU with partial pivoting, as
    LAPACK's gesv; False for a non-finite or singular a (an exactly zero pivot)."""
    for i in range(n):
        for j in range(n):
            if not np.isfinite(a[i, j]):
                return False
    for c in range(n):
        p = c
        for r in range(c + 1, n):
            if abs(a[r, c]) > abs(a[p, c]):
                p = r
        if a[p, c] == 0.0:
            return False
        if p != c:
            for j in range(n):
                a[c, j], a[p, j] = a[p, j], a[c, j]
            for j in range(cols):
                b[c, j], b[p, j] = b[p, j], b[c, j]
        for r in range(c + 1, n):
            f = a[r, c] / a[c, c]
            for j in range(c, n):
                a[r, j] -= f * a[c, j]
            for j in range(cols):
                b[r, j] -= f * b[c, j]
    for c in range(n - 1, -1, -1):
        for j in range(cols):
            acc = b[c, j]
            for q in range(c + 1, n):
                acc -= a[c, q] * b[q, j]
            b[c, j] = acc / a[c, c]
    return True
