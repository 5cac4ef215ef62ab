"""Stage configs as mappings: building, merging, files, and pipelines that carry them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taas.errors import TaasError
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN, CPU, PipelineSpec
from taas.seeding.config import SeedingConfig
from taas.stages import registry
from taas.stages.configs import (
    build_config,
    config_type,
    merge_configs,
    read_stage_configs,
    resolve_paths,
)


def test_every_configurable_stage_names_its_config_type() -> None:
    assert config_type(registry.resolve("seeding", "cpu")) is SeedingConfig
    assert config_type(registry.resolve("spacepoints", "cpu")) is None


def test_build_config_fills_fields_and_keeps_defaults() -> None:
    cfg = build_config(registry.resolve("seeding", "cpu"), {"min_pt": 900.0})
    assert cfg == SeedingConfig(min_pt=900.0)


@pytest.mark.parametrize(("stage", "values", "message"), [
    (("seeding", "cpu"), {"min_ptt": 1.0}, "unknown config key"),
    (("seeding", "cpu"), {"min_pt": -1.0}, "bad config"),
    (("spacepoints", "cpu"), {"x": 1}, "takes no configuration"),
])
def test_build_config_errors_name_the_stage(stage, values, message) -> None:
    with pytest.raises(TaasError, match=message) as info:
        build_config(registry.resolve(*stage), values)
    assert stage[0] in str(info.value)


def test_merge_is_field_wise_and_later_layers_win() -> None:
    merged = merge_configs({"a": {"x": 1, "y": 2}}, None, {"a": {"y": 3}, "b": {"z": 4}})
    assert merged == {"a": {"x": 1, "y": 3}, "b": {"z": 4}}
    with pytest.raises(TaasError, match="must be a mapping"):
        merge_configs({"a": 5})


def test_read_stage_configs(tmp_path: Path) -> None:
    assert read_stage_configs(None) == {}
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"seeding": {"min_pt": 700.0}}))
    assert read_stage_configs(good) == {"seeding": {"min_pt": 700.0}}
    for text in ("[1, 2]", "{not json"):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(TaasError, match=r"bad\.json"):
            read_stage_configs(bad)
    with pytest.raises(TaasError, match="cannot read"):
        read_stage_configs(tmp_path / "missing.json")


def test_resolve_paths_only_touches_relative_path_fields(tmp_path: Path) -> None:
    configs = {"graph_construction": {"checkpoint_dir": "files/x", "r": 0.1},
               "edge_classification": {"checkpoint_dir": "/abs/y"}}
    resolved = resolve_paths(configs, tmp_path)
    assert resolved["graph_construction"] == {"checkpoint_dir": str(tmp_path / "files/x"),
                                              "r": 0.1}
    assert resolved["edge_classification"]["checkpoint_dir"] == "/abs/y"
    assert configs["graph_construction"]["checkpoint_dir"] == "files/x"  # input untouched


def test_spec_configs_validate_merge_and_survive_routing() -> None:
    with pytest.raises(TaasError, match="does not run"):
        PipelineSpec("x", (("seeding", "cpu"),), stage_configs={"ckf": {}})
    spec = CPU.with_configs({"seeding": {"min_pt": 800.0}, "graph_construction": {"r": 1.0}})
    assert spec.stage_configs == {"seeding": {"min_pt": 800.0}}  # other pipelines' keys dropped
    assert spec.with_routing({"clustering": "gpu"}).stage_configs == spec.stage_configs
    assert dict(ACORN.with_accel("cpu").steps)["edge_classification"] == "cpu"
    assert dict(ACORN.with_accel("cpu").steps)["clustering"] == "cpu"


def test_pipeline_builds_stages_from_spec_configs_and_overrides(generic_detector) -> None:
    spec = PipelineSpec("s", (("clustering", "cpu"), ("seeding", "cpu")),
                        stage_configs={"seeding": {"min_pt": 800.0, "impact_max": 2.0}})
    pipeline = Pipeline(spec, generic_detector, {"seeding": {"min_pt": 900.0},
                                                 "clustering": {"connectivity": 4}})
    clustering, seeding = pipeline.stages
    assert clustering.config.connectivity == 4
    assert seeding.config == SeedingConfig(min_pt=900.0, impact_max=2.0)
    ready = SeedingConfig(min_pt=600.0)
    assert Pipeline(spec, generic_detector, {"seeding": ready}).stages[1].config is ready
