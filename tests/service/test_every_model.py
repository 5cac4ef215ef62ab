"""Every registered (stage, backend) and every landed pipeline, served by one real tritonserver,
gives what the same stage gives in-process on a tiny event.

The repository is the one ``taas model-repo build`` writes by default (all stage models, the
``cpu``, ``acorn`` and ``acorn_traccc`` pipeline models and their ensembles). Each stage model
is fed the pool a direct chain built up to it, so every model sees realistic inputs (the CKF
needs seeds, the GNN a graph). gpu backends run where they can: OpenCL on PoCL's CPU device,
torch on the CPU device (the device label says so, and the served model must report the same
label).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import ACORN, ACORN_TRACCC, CPU, FPGA, PipelineSpec
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
    CPU.with_routing({"clustering": "gpu", "spacepoints": "gpu", "ckf": "gpu",
                      "track_fit": "gpu"}),
    ACORN_TRACCC.with_accel("cpu"),
    ACORN_TRACCC.with_accel("cpu").with_routing({"prototrack_seeding": "gpu",
                                                 "prototrack_ckf": "gpu", "ambiguity": "gpu"}),
    FPGA,
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
                                  pipelines=[CPU, ACORN, ACORN_TRACCC, FPGA])
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
    for pipeline in (CPU, ACORN, ACORN_TRACCC, FPGA):
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
@pytest.mark.parametrize("spec", [CPU, ACORN, ACORN_TRACCC],
                         ids=["cpu", "acorn", "acorn_traccc"])
def test_pipeline_models_match_direct(full_server, event, spec, ensemble) -> None:
    detector, cells = event
    want = Pipeline(spec, detector).run(cells).tensors
    served = RemotePipeline(spec.name, full_server.url, ensemble=ensemble)
    try:
        got = served.run(cells).tensors
    finally:
        served.close()
    assert_same({k: got[k] for k in want}, want)


def _probes(stage: object, inputs: dict[str, np.ndarray]) -> list[tuple[str, dict, str]]:
    """Malformed copies of a stage's real inputs: a NaN in the first float tensor, an index past
    the end of the table it numbers, CSR offsets running past their index list."""
    probes = []
    specs = stage.INPUTS  # type: ignore[attr-defined]
    floats = [s for s in specs if s.dtype.kind == "f" and len(inputs[s.name])]
    if floats:
        bad = inputs[floats[0].name].copy()
        bad.reshape(len(bad), -1)[0, 0] = np.nan
        probes.append(("nan", {**inputs, floats[0].name: bad}, "NaN or infinite"))
    names = {s.name for s in specs}
    for spec in specs:
        rows = [len(inputs[n]) for n in names if n.startswith(f"{spec.index_of}.")]
        if spec.index_of and rows and len(inputs[spec.name]):
            bad = inputs[spec.name].copy()
            bad.reshape(len(bad), -1)[0, 0] = rows[0]
            probes.append(("index", {**inputs, spec.name: bad}, "lies outside"))
            break
    for spec in specs:
        if spec.name.endswith("offsets") and len(inputs[spec.name]) > 1:
            bad = inputs[spec.name].copy()
            bad[-1] += 5
            probes.append(("offsets", {**inputs, spec.name: bad}, "must rise from 0"))
            break
    return probes


@pytest.mark.parametrize("spec", CHAINS, ids=lambda s: "+".join(b for _, b in s.steps))
def test_every_stage_model_answers_bad_events_with_a_bad_event_error(full_server, event,
                                                                    spec: PipelineSpec) -> None:
    """Every kind of malformed event, sent past the client's own checks to every served stage
    model, comes back as a 'bad event' error naming the tensor; the model serves on."""
    from taas.service.client import ServiceError

    detector, cells = event
    configs = {stage: _served_stage_config(spec, stage) for stage, _ in spec.steps}
    direct = Pipeline(replace(spec, stage_configs={}), detector,
                      {k: v for k, v in configs.items() if v})
    pool = dict(cells)
    sent = 0
    for stage in direct.stages:
        inputs = {s.name: pool[s.name] for s in stage.INPUTS}
        remote = RemoteStage(stage.NAME, stage.BACKEND, full_server.url)
        try:
            for _kind, bad, reason in _probes(stage, inputs):
                with pytest.raises(ServiceError, match=f"bad event.*{reason}"):
                    remote.compute(bad)  # compute: past the client-side validation
                sent += 1
            assert_same(remote.run(inputs), stage.run(inputs))  # and it still serves
        finally:
            remote.close()
        pool.update(stage.run(inputs))
    assert sent >= len(direct.stages)


@pytest.mark.parametrize("served_as", ["pipeline", "stages"])
def test_taas_reconstruct_through_a_server(full_server, tiny_sim_dir: Path, tmp_path: Path,
                                           served_as: str) -> None:
    """``taas reconstruct --server URL`` gives what the in-process run gives, and run.json says
    where it ran."""
    import json

    from taas.cli import main
    from taas.pipeline.reconstruct import load_reco

    for name, extra in (("direct", []), ("served", ["--server", full_server.url,
                                                    "--served-as", served_as])):
        assert main(["reconstruct", "--events", str(tiny_sim_dir), "--pipeline", "cpu", "-q",
                     "--out", str(tmp_path / name), *extra]) == 0
    assert_same(load_reco(tmp_path / "served", 0), load_reco(tmp_path / "direct", 0))
    run = json.loads((tmp_path / "served" / "run.json").read_text())
    assert run["service"]["servers"] == [full_server.url]
    assert set(run["service"]["served_by"]) == {full_server.url}
    assert run["service"]["status"] == "served"
    assert run["mode"] == ("served-pipeline" if served_as == "pipeline" else "served")
