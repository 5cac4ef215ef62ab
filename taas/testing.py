"""The conformance check every (stage, backend) of the registry must pass, inside the package.

A backend is checked the day it is registered: the tests run ``check_conformance`` over every
registry entry (``taas.stages.registry.IMPLEMENTATIONS``) on real event inputs, and anyone
adding a backend can run it on their own. It asks four things of a stage:

1. **Specs**: ``compute`` returns exactly the declared output tensors, each with the declared
   dtype and rank (``Stage.run`` would cast a wrong dtype silently; this check does not).
2. **Empty event**: inputs with zero rows give outputs with zero rows.
3. **Row order**: where the stage base declares ``ROW_ORDER``, shuffling the rows of those
   input tables (and renumbering the input tensors that point at them) gives the same result
   up to that permutation.
4. **Backends agree**: a backend's outputs match the reference backend's (``cpu``) on the same
   inputs, within the tolerance its class declares (``CONFORMANCE_TOLERANCE``).

Outputs are compared as *canonical tables*: each output table's rows (a CSR table's row
includes its index list) sorted by their integer columns then their rounded floats, so that two
results that differ only in row order compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from taas.detector.detector import Detector
from taas.errors import TaasError
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PIPELINES
from taas.stages.base import RowOrder, Stage, Tolerance
from taas.stages.registry import resolve

REFERENCE_BACKEND = "cpu"

Tensors = dict[str, np.ndarray]


class ConformanceError(TaasError, AssertionError):
    """A stage broke its contract; the message names the stage, the check and the tensor."""


def reference_inputs(detector: Detector, cells: Mapping[str, np.ndarray]) -> dict[str, Tensors]:
    """Per stage name, the inputs it receives in a pipeline run on the reference backends.

    Every registered pipeline runs on the event (each stage on ``cpu``); a stage's inputs are
    the pool of tensors just before it ran, in the first pipeline that has it.
    """
    found: dict[str, Tensors] = {}
    for spec in PIPELINES.values():
        reference = spec.with_routing(dict.fromkeys((s for s, _ in spec.steps),
                                                    REFERENCE_BACKEND))
        pipeline = Pipeline(reference, detector)
        pool: Tensors = dict(cells)
        for stage in pipeline.stages:
            inputs = {s.name: pool[s.name] for s in stage.INPUTS}
            found.setdefault(stage.NAME, inputs)
            pool.update(stage.run(inputs))
    return found


def empty_inputs(stage: type[Stage]) -> Tensors:
    """Zero-row tensors for every input (CSR offsets hold their single leading 0)."""
    return {s.name: np.zeros((1 if _is_offsets(s.name) else 0, *s.shape[1:]), s.dtype)
            for s in stage.INPUTS}


def check_specs(stage: Stage, inputs: Mapping[str, np.ndarray]) -> Tensors:
    """``compute``'s raw outputs: exactly the declared names, dtypes and ranks."""
    checked = {s.name: s.check(inputs[s.name], owner=stage.qualified_name) for s in stage.INPUTS}
    out = stage.compute(checked)
    declared = {s.name: s for s in stage.OUTPUTS}
    if set(out) != set(declared):
        raise ConformanceError(f"{stage.qualified_name}: outputs {sorted(out)}, declared "
                               f"{sorted(declared)}")
    for name, spec in declared.items():
        a = np.asarray(out[name])
        if a.dtype != spec.dtype or a.ndim != len(spec.shape):
            raise ConformanceError(f"{stage.qualified_name}: output {name!r} is {a.dtype} of "
                                   f"rank {a.ndim}, declared {spec.dtype} of rank "
                                   f"{len(spec.shape)}")
    return out


def check_empty(stage: Stage) -> None:
    """An event without rows gives outputs without rows (CSR offsets: ``[0]`` or ``[]``, both
    of which the track tables read as zero tracks)."""
    out = stage.run(empty_inputs(type(stage)))
    for name, a in out.items():
        if len(a) > (1 if _is_offsets(name) else 0):
            raise ConformanceError(f"{stage.qualified_name}: empty event gave {len(a)} rows "
                                   f"of {name!r}")


def check_row_order(stage: Stage, inputs: Mapping[str, np.ndarray], seed: int = 0) -> None:
    """Shuffled input rows (as ``ROW_ORDER`` declares) give the same outputs, renumbered."""
    order = type(stage).ROW_ORDER
    if order is None:
        return
    n = _table_rows(inputs, order.shuffled[0])
    perm = np.random.default_rng(seed).permutation(n)
    new_row = np.empty(n, np.int64)
    new_row[perm] = np.arange(n)  # old row i is new row new_row[i]
    shuffled = dict(inputs)
    for name, a in inputs.items():
        if _prefix(name) in order.shuffled:
            shuffled[name] = a[perm]
        elif name in order.index_inputs:
            shuffled[name] = new_row[a]
    direct = stage.run(inputs)
    out = stage.run(shuffled)
    for name in out:
        if _prefix(name) in order.aligned_outputs:
            out[name] = out[name][new_row]
        if name in order.index_outputs:
            out[name] = perm[out[name]]
    compare_outputs(stage, out, direct, Tolerance(rtol=1e-6, atol=1e-9),
                    what=f"with its {'/'.join(order.shuffled)} rows shuffled")


def check_against_reference(stage: Stage, inputs: Mapping[str, np.ndarray]) -> None:
    """The reference backend's stage, built on the same detector, gives the same outputs
    within ``stage.CONFORMANCE_TOLERANCE``."""
    reference = resolve(stage.NAME, REFERENCE_BACKEND)(stage.detector)
    compare_outputs(stage, stage.run(inputs), reference.run(inputs),
                    type(stage).CONFORMANCE_TOLERANCE,
                    what=f"against {reference.qualified_name}")


def check_conformance(stage: Stage, inputs: Mapping[str, np.ndarray]) -> None:
    """Every check above on ``stage`` with real event ``inputs`` (``reference_inputs``)."""
    check_specs(stage, inputs)
    check_empty(stage)
    check_row_order(stage, inputs)
    if stage.BACKEND != REFERENCE_BACKEND:
        check_against_reference(stage, inputs)


def compare_outputs(stage: Stage, got: Mapping[str, np.ndarray],
                    want: Mapping[str, np.ndarray], tolerance: Tolerance, *, what: str) -> None:
    """``ConformanceError`` unless every output table of ``got`` matches ``want``."""
    for table in sorted({_prefix(n) for n in want}):
        g = canonical_rows({k: v for k, v in got.items() if _prefix(k) == table})
        w = canonical_rows({k: v for k, v in want.items() if _prefix(k) == table})
        problem = _table_difference(g, w, tolerance)
        if problem:
            raise ConformanceError(f"{stage.qualified_name} {what}: table {table!r}: {problem}")


@dataclass(frozen=True)
class CanonicalRows:
    """A table's rows in canonical order: an integer key and the float values of each row."""

    keys: list[tuple[int, ...]]
    floats: np.ndarray  # (rows, float values per row)


def canonical_rows(tensors: Mapping[str, np.ndarray]) -> CanonicalRows:
    """The rows of one output table (its tensors by name), sorted into a canonical order."""
    offsets = next((n for n in tensors if _is_offsets(n)), None)
    csr_indices = offsets.replace("offsets", "indices") if offsets else None
    n = len(tensors[offsets]) - 1 if offsets else len(next(iter(tensors.values())))
    columns = [np.asarray(a).reshape(n, -1) for name, a in sorted(tensors.items())
               if name not in (offsets, csr_indices) and len(a) == n]
    ints = [c for c in columns if c.dtype.kind in "iub"]
    floats = [c.astype(np.float64) for c in columns if c.dtype.kind == "f"]
    int_part = np.concatenate(ints, axis=1) if ints else np.zeros((n, 0), np.int64)
    float_part = np.concatenate(floats, axis=1) if floats else np.zeros((n, 0))
    lists: list[tuple[int, ...]] = [()] * n
    if offsets and csr_indices:
        o, idx = tensors[offsets], tensors[csr_indices]
        lists = [tuple(int(v) for v in idx[o[i]:o[i + 1]]) for i in range(n)]
    rows = [(tuple(int(v) for v in int_part[i]) + (-1,) + lists[i],
             tuple(np.round(float_part[i], 6))) for i in range(n)]
    order = sorted(range(n), key=lambda i: rows[i])
    return CanonicalRows([rows[i][0] for i in order],
                         float_part[order] if n else float_part)


def _table_difference(got: CanonicalRows, want: CanonicalRows, tol: Tolerance) -> str:
    """What differs beyond ``tol`` between two canonical tables ('' when nothing)."""
    if tol.row_fraction > 0:  # compare the sets of integer keys only
        g, w = set(got.keys), set(want.keys)
        differing = len(g ^ w) / max(len(w), 1)
        if differing > tol.row_fraction:
            return (f"{differing:.4%} of rows differ ({len(g)} vs {len(w)} rows), tolerance "
                    f"{tol.row_fraction:.4%}")
        return ""
    if len(got.keys) != len(want.keys):
        return f"{len(got.keys)} rows, expected {len(want.keys)}"
    bad = [i for i, (a, b) in enumerate(zip(got.keys, want.keys, strict=True)) if a != b]
    if bad:
        return f"{len(bad)} rows differ in their integer columns, first {got.keys[bad[0]]} " \
               f"vs {want.keys[bad[0]]}"
    if got.floats.size and not np.allclose(got.floats, want.floats, rtol=tol.rtol,
                                           atol=tol.atol, equal_nan=True):
        diff = np.nanmax(np.abs(got.floats - want.floats))
        return f"float values differ by up to {diff:.3g} (rtol {tol.rtol}, atol {tol.atol})"
    return ""


def _prefix(name: str) -> str:
    return name.split(".", 1)[0]


def _is_offsets(name: str) -> bool:
    return name.split(".", 1)[-1].endswith("offsets")


def _table_rows(tensors: Mapping[str, np.ndarray], table: str) -> int:
    lengths = {len(a) for n, a in tensors.items() if _prefix(n) == table}
    if len(lengths) != 1:
        raise TaasError(f"table {table!r} has no single row count: {sorted(lengths)}")
    return lengths.pop()


__all__ = ["ConformanceError", "RowOrder", "Tolerance", "check_conformance", "reference_inputs"]
