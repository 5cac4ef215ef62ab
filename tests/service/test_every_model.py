"""Every registered (stage, backend) and every landed pipeline, served by one real tritonserver,
gives what the same stage gives in-process on a tiny event.

The repository is the one ``taas model-repo build`` writes by default (all stage models, the
``cpu`` and ``acorn`` pipeline models and their ensembles). Each stage model is fed the pool a
direct chain built up to it, so every model sees realistic inputs (the CKF needs seeds, the GNN
a graph). gpu backends run where they can: OpenCL on PoCL's CPU device, torch on the CPU device
(the device label says so, and the served model must report the same label).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN, CPU, PipelineSpec
from taas.service.client import RemotePipeline, RemoteStage
from taas.stages import registry
from tests.service.conftest import assert_same

pytestmark = [pytest.mark.triton, pytest.mark.slow]

#: Chains that between them pass through every registered (stage, backend): the two pipelines
#: with their own backends, and the same pipelines with every other backend swapped in.
CHAINS = (
    CPU,
    ACORN,
    ACORN.with_accel("cpu"),
    CPU.with_routing({"clustering": "gpu", "spacepoints": "gpu"}),
)


def test_the_chains_cover_every_registered_stage() -> None:
    covered = {step for chain in CHAINS for step in chain.steps}
    assert covered == set(registry.available())


@pytest.fixture(scope="module")
def full_server(tmp_path_factory: pytest.TempPathFactory, tiny_sim_dir: Path) -> Iterator[object]:
    from taas.service.model_repo import build_model_repository
    from taas.service.server import ServerError, TritonServer, find_binary

    try:
        find_binary()
    except ServerError as exc:
        pytest.skip(f"no tritonserver: {exc}")
    repo = build_model_repository(tmp_path_factory.mktemp("full_repo"),
                                  detector_path=tiny_sim_dir / "detector.parquet",
                                  pipelines=[CPU, ACORN])
    with TritonServer(repo, ready_timeout=300) as server:
        yield server


@pytest.fixture(scope="module")
def event(tiny_sim_dir: Path) -> tuple[object, dict[str, np.ndarray]]:
    from taas.events.dataset import open_dataset

    dataset = open_dataset(tiny_sim_dir)
    return dataset.detector, dataset.read(0).cells.to_tensors()


def _served_stage_config(spec: PipelineSpec, stage: str) -> dict:
    """What the repository gave that stage model: its pipeline's settings if the step belongs
    to a served pipeline, else none."""
    for pipeline in (CPU, ACORN):
        if (stage, dict(spec.steps)[stage]) in pipeline.steps:
            return dict(pipeline.stage_configs.get(stage, {}))
    return {}


@pytest.mark.parametrize("spec", CHAINS, ids=lambda s: "+".join(b for _, b in s.steps))
def test_every_stage_model_matches_direct(full_server, event, spec: PipelineSpec) -> None:
    detector, cells = event
    configs = {stage: _served_stage_config(spec, stage) for stage, _ in spec.steps}
    direct = Pipeline(replace(spec, stage_configs={}), detector,
                      {k: v for k, v in configs.items() if v})
    pool = dict(cells)
    for stage in direct.stages:
        inputs = {s.name: pool[s.name] for s in stage.INPUTS}
        want = stage.run(inputs)
        remote = RemoteStage(stage.NAME, stage.BACKEND, full_server.url)
        try:
            assert_same(remote.run(inputs), want)
            assert remote.device == stage.device
        finally:
            remote.close()
        pool.update(want)
    assert len(pool["tracks.chi2"]) > 0  # the chain got all the way to fitted tracks


@pytest.mark.parametrize("ensemble", [False, True], ids=["pipeline", "ensemble"])
@pytest.mark.parametrize("spec", [CPU, ACORN], ids=["cpu", "acorn"])
def test_pipeline_models_match_direct(full_server, event, spec, ensemble) -> None:
    detector, cells = event
    want = Pipeline(spec, detector).run(cells).tensors
    served = RemotePipeline(spec.name, full_server.url, ensemble=ensemble)
    try:
        got = served.run(cells).tensors
    finally:
        served.close()
    assert_same({k: got[k] for k in want}, want)
