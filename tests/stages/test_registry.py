from __future__ import annotations

import numpy as np
import pytest

from taas.edm import Cells, Clusters
from taas.errors import InputError
from taas.stages import registry
from taas.stages.base import Stage


class CountCells(Stage):
    """A minimal stage used to exercise the contract checks."""

    NAME = "count"
    BACKEND = "cpu"
    INPUTS = Cells.tensor_specs()
    OUTPUTS = Clusters.tensor_specs()

    def compute(self, inputs):
        return {"clusters.cluster_id": np.arange(len(inputs["cells.ch0"]))}


class Broken(CountCells):
    def compute(self, inputs):
        return {}


def cells_tensors(n=4):
    return Cells(module_key=np.ones(n, np.uint64), ch0=np.arange(n), ch1=np.arange(n),
                 value=np.ones(n), timestamp=np.zeros(n), hit_id=np.arange(n)).to_tensors()


def test_run_checks_and_casts():
    out = CountCells(detector=None).run(cells_tensors())
    assert out["clusters.cluster_id"].dtype == np.int64
    np.testing.assert_array_equal(out["clusters.cluster_id"], np.arange(4))


def test_missing_input_and_output_are_named():
    t = cells_tensors()
    del t["cells.ch1"]
    with pytest.raises(InputError, match=r"count_cpu needs tensor 'cells.ch1'"):
        CountCells(detector=None).run(t)
    with pytest.raises(InputError, match=r"did not produce tensor 'clusters.cluster_id'"):
        Broken(detector=None).run(cells_tensors())


def test_wrong_shape_is_rejected():
    t = cells_tensors()
    t["cells.value"] = np.ones((4, 2))
    with pytest.raises(InputError, match="shape"):
        CountCells(detector=None).run(t)


def test_resolver_lists_valid_choices(monkeypatch):
    monkeypatch.setitem(registry.IMPLEMENTATIONS, ("count", "cpu"),
                        registry.Implementation("tests.stages.test_registry:CountCells"))
    resolved = registry.resolve("count", "cpu")
    # pytest may import this file under another module name: compare by what it is
    assert issubclass(resolved, Stage)
    assert (resolved.__qualname__, resolved.NAME) == ("CountCells", "count")
    with pytest.raises(registry.UnknownStageError, match=r"'count' on backend 'gpu'.*count/cpu"):
        registry.resolve("count", "gpu")


def test_resolver_rejects_non_stage(monkeypatch):
    monkeypatch.setitem(registry.IMPLEMENTATIONS, ("bad", "cpu"),
                        registry.Implementation("taas.errors:InputError"))
    with pytest.raises(TypeError, match="not a Stage"):
        registry.resolve("bad", "cpu")
