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
    legacy = {**config["parameters"], "taas.stage_configs": {"string_value": "{}"}}
    with pytest.raises(TaasError, match="before model versions"):  # never silently unconfigured
        ModelSettings.from_config({"name": "x", "parameters": legacy}, tmp_path / "repo" / "x")
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


def _parameters(config_text: str) -> dict[str, str]:
    """The string parameters of a generated config.pbtxt (unescaped)."""
    pairs = re.findall(r'key: "([^"]+)" value: \{ string_value: "((?:[^"\\]|\\.)*)" \}',
                       config_text)
    return {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in pairs}


def test_stage_configs_travel_into_every_model_and_files_are_copied(
        tmp_path: Path, tiny_sim_dir: Path) -> None:
    import json

    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    (checkpoints / "gnn.pt").write_bytes(b"weights")
    spec = PipelineSpec("p", FRONT_END.steps, stage_configs={"seeding": {"min_pt": 800.0}})
    out = build_model_repository(
        tmp_path / "repo", detector_path=tiny_sim_dir / "detector.parquet", pipelines=[spec],
        stages=[*FRONT_END.steps, ("graph_construction", "cpu")], ensembles=False,
        stage_configs={"graph_construction": {"checkpoint_dir": str(checkpoints)}})
    # Triton loads every top-level directory as a model: copied files must live inside models
    assert all((d / "config.pbtxt").is_file() for d in out.iterdir() if d.is_dir())
    for model in ("pipeline_p", "graph_construction_cpu", "seeding_cpu"):
        text = (out / model / "config.pbtxt").read_text()
        assert 'name: "taas.device" data_type: TYPE_UINT8' in text
        configs = json.loads(_parameters(text)["taas.v1.stage_configs"])
        if model in ("pipeline_p", "seeding_cpu"):
            assert configs["seeding"] == {"min_pt": 800.0}
        if model == "graph_construction_cpu":
            relative = configs["graph_construction"]["checkpoint_dir"]
            assert not Path(relative).is_absolute()  # the repository stays relocatable
            assert Path(relative).parts[:2] == (model, "1")  # the files belong to version 1
            assert (out / relative / "gnn.pt").read_bytes() == b"weights"
        settings = ModelSettings.from_config(
            {"name": model, "parameters": {k: {"string_value": v}
                                           for k, v in _parameters(text).items()}},
            out / model)
        if "graph_construction" in settings.stage_configs:
            assert Path(settings.stage_configs["graph_construction"]["checkpoint_dir"]
                        ).is_absolute()


def test_conflicting_stage_configs_of_a_shared_stage_model_are_refused(
        tmp_path: Path, tiny_sim_dir: Path) -> None:
    a = PipelineSpec("a", FRONT_END.steps, stage_configs={"seeding": {"min_pt": 800.0}})
    b = PipelineSpec("b", FRONT_END.steps)
    with pytest.raises(TaasError, match="configure it differently"):
        build_model_repository(tmp_path / "repo", detector_path=tiny_sim_dir / "detector.parquet",
                               pipelines=[a, b])
    with pytest.raises(TaasError, match="does not exist"):
        build_model_repository(tmp_path / "repo", detector_path=tiny_sim_dir / "detector.parquet",
                               pipelines=[b], stages=[("graph_construction", "cpu")],
                               stage_configs={"graph_construction": {
                                   "checkpoint_dir": str(tmp_path / "nowhere")}})
    with pytest.raises(TaasError, match="unknown config key"):  # caught at build, not at load
        build_model_repository(tmp_path / "repo", detector_path=tiny_sim_dir / "detector.parquet",
                               pipelines=[b], stage_configs={"seeding": {"min_ptt": 1.0}})


def test_instances_share_the_cores() -> None:
    from taas.service.python_model import threads_per_instance

    def config(*counts: int) -> dict:
        return {"instance_group": [{"count": c, "kind": "KIND_CPU"} for c in counts]}

    assert threads_per_instance(config(1), cores=8) == 8
    assert threads_per_instance(config(2), cores=8) == 4
    assert threads_per_instance(config(2, 1), cores=8) == 2
    assert threads_per_instance(config(4), cores=2) == 1  # never zero
    assert threads_per_instance({}, cores=2) == 2
