"""Served stages, pipelines and ensembles give exactly the direct results."""

from __future__ import annotations

from dataclasses import replace

import pytest

from taas.edm import Cells
from taas.pipeline.runner import Pipeline
from taas.service.client import (
    RemotePipeline,
    RemoteStage,
    ServiceUnavailableError,
    make_pipeline,
    make_stage,
)
from taas.service.server import free_port
from tests.service.conftest import FRONT_END, assert_same

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def direct(generic_detector: object, tiny_sim_dir: object) -> Pipeline:
    from taas.events.dataset import open_dataset

    return Pipeline(FRONT_END, open_dataset(tiny_sim_dir).detector)


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "grpc"])
def test_every_stage_model_matches_direct(triton, direct, tiny_event, shared_memory) -> None:
    pool = dict(tiny_event)
    for stage in direct.stages:
        inputs = {s.name: pool[s.name] for s in stage.INPUTS}
        want = stage.run(inputs)
        remote = make_stage(stage.NAME, stage.BACKEND, None, "served", triton.url,
                            shared_memory=shared_memory)
        try:
            assert [s.name for s in remote.INPUTS] == [s.name for s in stage.INPUTS]
            assert [(s.name, s.dtype, s.shape) for s in remote.OUTPUTS] == \
                   [(s.name, s.dtype, s.shape) for s in stage.OUTPUTS]
            assert remote.device == "cpu"  # from the instance group, before any call
            assert_same(remote.run(inputs), want)
            assert remote.device == stage.device  # what the served stage reported
        finally:
            remote.close()
        pool.update(want)


def test_front_end_config_is_not_the_default(direct, tiny_event) -> None:
    """The served comparisons use 4-connectivity: it must change the clusters, or they would
    not show that the config reached the server."""
    default = Pipeline(replace(FRONT_END, stage_configs={}), direct.stages[0].detector)
    assert direct.stages[0].config.connectivity == 4
    n4 = len(direct.run(tiny_event).tensors["measurements.local_u"])
    n8 = len(default.run(tiny_event).tensors["measurements.local_u"])
    assert n4 > n8


@pytest.mark.parametrize("mode", ["served", "pipeline", "ensemble"])
@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "grpc"])
def test_pipelines_match_direct(triton, direct, tiny_event, mode, shared_memory) -> None:
    want = direct.run(tiny_event).tensors
    if mode == "served":
        served = make_pipeline(FRONT_END, None, "served", triton.url,
                               shared_memory=shared_memory)
    else:
        served = RemotePipeline(FRONT_END.name, triton.url, ensemble=mode == "ensemble",
                                shared_memory=shared_memory)
    try:
        assert_same(served.run(tiny_event).tensors, want)
    finally:
        served.close()


def test_empty_event_is_served(triton, direct) -> None:
    empty = Cells.empty().to_tensors()
    with RemotePipeline(FRONT_END.name, triton.url).client as client:
        got = client.infer(empty)
    want = direct.run(empty).tensors
    assert_same({**empty, **got}, want)


def test_outputs_beyond_the_shared_memory_guess_fall_back(triton, direct, tiny_event,
                                                          caplog) -> None:
    """Output sizes are guessed; a wrong guess costs one gRPC round, not a failure."""
    stage = RemoteStage("clustering", "cpu", triton.url, shared_memory=True)
    stage.client.output_rows_factor, stage.client.output_slack_bytes = 0, 64
    want = direct.stages[0].run(tiny_event)
    try:
        with caplog.at_level("INFO", logger="taas.service.client"):
            assert_same(stage.run(tiny_event), want)
            assert "outgrew" in caplog.text
            caplog.clear()
            assert_same(stage.run(tiny_event), want)  # sizes learnt from the first event
            assert "outgrew" not in caplog.text
    finally:
        stage.close()


def test_server_down_names_the_url() -> None:
    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailableError, match=url):
        RemoteStage("clustering", "cpu", url, retries=1)


def test_shared_memory_regions_are_released(triton, tiny_event) -> None:
    import tritonclient.grpc as grpcclient

    stage = RemoteStage("clustering", "cpu", triton.url, shared_memory=True)
    stage.run(tiny_event)
    client = grpcclient.InferenceServerClient(triton.url)
    try:
        ours = {stage.client._in.name, stage.client._out.name}
        registered = {r["name"] for r in client.get_system_shared_memory_status(as_json=True)
                      .get("regions", {}).values()}
        assert ours <= registered
        stage.close()
        registered = {r["name"] for r in client.get_system_shared_memory_status(as_json=True)
                      .get("regions", {}).values()}
        assert not ours & registered
    finally:
        client.close()
