"""config.pbtxt generation and repository layout: no server needed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from taas.edm.table import TensorSpec
from taas.errors import TaasError
from taas.pipeline.spec import PipelineSpec
from taas.service import pbtxt
from taas.service.graph import PipelineGraph, StepIO
from taas.service.model_repo import build_model_repository, servable_pipelines
from taas.service.python_model import ModelSettings, check_limits, parse_steps

FRONT_END = PipelineSpec("front_end", (("clustering", "cpu"), ("spacepoints", "cpu"),
                                       ("seeding", "cpu")))


@pytest.mark.parametrize(("dtype", "wire"), [
    ("u8", "UINT64"), ("u4", "UINT32"), ("i4", "INT32"), ("i8", "INT64"), ("f4", "FP32"),
    ("f8", "FP64"), ("?", "BOOL"), ("u1", "UINT8"), ("f2", "FP16"),
])
def test_dtype_mapping(dtype: str, wire: str) -> None:
    assert pbtxt.triton_dtype(np.dtype(dtype)) == wire
    assert pbtxt.NUMPY_DTYPES[wire] == np.dtype(dtype)


def test_unsupported_dtype_is_a_clear_error() -> None:
    with pytest.raises(TaasError, match="no Triton equivalent"):
        pbtxt.triton_dtype(np.dtype("c16"))


def test_python_config_dims_kind_and_parameters() -> None:
    text = pbtxt.python_model_config(
        "m", [TensorSpec("cells.ch0", np.dtype("i4"))],
        [TensorSpec("seeds.spacepoints", np.dtype("i8"), (-1, 3))],
        parameters={"taas.kind": "stage", "odd": 'a"b'}, instances=3, kind="KIND_GPU")
    assert 'name: "cells.ch0" data_type: TYPE_INT32 dims: [ -1 ]' in text
    assert 'name: "seeds.spacepoints" data_type: TYPE_INT64 dims: [ -1, 3 ]' in text
    assert "instance_group [ { count: 3 kind: KIND_GPU } ]" in text
    assert 'backend: "python"' in text
    assert "max_batch_size: 0" in text
    assert r'string_value: "a\"b"' in text
    with pytest.raises(TaasError, match="instance kind"):
        pbtxt.python_model_config("m", [], [], parameters={}, kind="KIND_FPGA")
    with pytest.raises(TaasError, match="instances"):
        pbtxt.python_model_config("m", [], [], parameters={}, instances=0)


def _spec(name: str) -> TensorSpec:
    return TensorSpec(name, np.dtype("f8"))


def test_ensemble_wiring_follows_the_pool_rule() -> None:
    """A later producer of ``t.x`` wins; the earlier one stays private but still feeds b."""
    graph = PipelineGraph((
        StepIO("a", "cpu", (_spec("in"),), (_spec("t.x"), _spec("u"))),
        StepIO("b", "cpu", (_spec("t.x"),), (_spec("p"),)),
        StepIO("c", "cpu", (_spec("p"), _spec("in")), (_spec("t.x"),)),
    ))
    assert [s.name for s in graph.inputs] == ["in"]
    assert [s.name for s in graph.outputs] == ["u", "p", "t.x"]
    a, b, c = graph.ensemble_steps()
    assert a.output_map == {"t.x": "a_cpu/t.x", "u": "u"}
    assert b.input_map == {"t.x": "a_cpu/t.x"}
    assert c.input_map == {"p": "p", "in": "in"}
    assert c.output_map == {"t.x": "t.x"}


def test_unused_overwritten_outputs_are_not_mapped() -> None:
    graph = PipelineGraph((StepIO("a", "cpu", (_spec("in"),), (_spec("t"),)),
                           StepIO("b", "cpu", (_spec("in"),), (_spec("t"),))))
    a, b = graph.ensemble_steps()
    assert a.output_map == {}
    assert b.output_map == {"t": "t"}


def test_repository_layout_is_relocatable(tmp_path: Path) -> None:
    detector = tmp_path / "somewhere" / "detector.parquet"
    detector.parent.mkdir()
    detector.write_bytes(b"not read by the generator")
    repo = build_model_repository(tmp_path / "repo", detector_path=detector,
                                  stages=[("clustering", "cpu")], pipelines=[FRONT_END],
                                  instances=2, max_rows=123)
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    assert models == ["clustering_cpu", "ensemble_front_end", "pipeline_front_end",
                      "seeding_cpu", "spacepoints_cpu"]
    assert (repo / "detector.parquet").read_bytes() == detector.read_bytes()
    for config in repo.glob("*/config.pbtxt"):
        text = config.read_text()
        assert str(tmp_path) not in text, "absolute paths break relocation"
        assert re.search(rf'name: "{config.parent.name}"', text)
        assert (config.parent / "1").is_dir()
    model_py = (repo / "clustering_cpu" / "1" / "model.py").read_text()
    assert "TritonAdapter" in model_py
    assert len(model_py.splitlines()) < 20
    assert "count: 2 kind: KIND_CPU" in (repo / "pipeline_front_end" / "config.pbtxt").read_text()


def test_settings_read_back_what_the_generator_wrote(tmp_path: Path) -> None:
    params = {"taas.kind": "pipeline", "taas.steps": "clustering/cpu,seeding/cpu",
              "taas.detector": "detector.parquet", "taas.max_rows": "7"}
    config = {"name": "x", "parameters": {k: {"string_value": v} for k, v in params.items()}}
    settings = ModelSettings.from_config(config, tmp_path / "repo" / "x")
    assert settings.steps == (("clustering", "cpu"), ("seeding", "cpu"))
    assert settings.detector == tmp_path / "repo" / "detector.parquet"
    assert settings.max_rows == 7
    with pytest.raises(TaasError, match="lacks parameters"):
        ModelSettings.from_config({"name": "x"}, tmp_path)
    with pytest.raises(TaasError, match="stage/backend"):
        parse_steps("clustering")


def test_size_limit() -> None:
    check_limits({"a": np.zeros(5)}, 5)
    check_limits({"a": np.zeros(50)}, 0)  # 0: no limit
    with pytest.raises(ValueError, match="event too large"):
        check_limits({"a": np.zeros(6)}, 5)


def test_default_pipelines_are_the_servable_ones() -> None:
    from taas.pipeline.spec import PIPELINES
    from taas.stages.registry import IMPLEMENTATIONS

    for name in servable_pipelines():
        assert all(step in IMPLEMENTATIONS for step in PIPELINES[name].steps)
