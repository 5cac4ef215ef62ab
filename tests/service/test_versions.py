"""Model versions: identities recorded per version, the client's check, a rollout under load."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from taas.errors import TaasError
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PipelineSpec
from taas.service import pbtxt
from taas.service.model_repo import build_model_repository
from taas.service.versions import (
    ModelIdentity,
    ModelMismatchError,
    VersionPolicy,
    checkpoint_hash,
    config_hash,
    pipeline_identity,
    served_identity,
)
from tests.service.conftest import FRONT_END, assert_same

CLUSTERING = (("clustering", "cpu"),)


def _config_json(path: Path) -> dict[str, object]:
    """config.pbtxt as ``get_model_config(as_json=True)["config"]`` shows its parameters."""
    params = pbtxt.read_parameters(path.read_text())
    return {"name": path.parent.name,
            "parameters": {k: {"string_value": v} for k, v in params.items()}}


def test_config_hash_is_of_the_resolved_config(tmp_path: Path) -> None:
    default = config_hash("clustering", "cpu", None)
    assert config_hash("clustering", "cpu", {}) == default
    assert config_hash("clustering", "cpu", {"connectivity": 8}) == default  # the default
    assert config_hash("clustering", "cpu", {"connectivity": 4}) != default
    assert config_hash("spacepoints", "cpu", None) != default  # so is the stage
    with pytest.raises(TaasError, match="unknown config key"):
        config_hash("clustering", "cpu", {"conectivity": 4})
    # paths are not hashed, the files they name are: same files elsewhere, same identity
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "gnn.pt").write_bytes(b"weights")
    assert checkpoint_hash(None) == ""
    assert checkpoint_hash({"checkpoint_dir": str(a)}) == checkpoint_hash({"checkpoint_dir": b})
    assert config_hash("graph_construction", "cpu", {"checkpoint_dir": str(a)}) == \
        config_hash("graph_construction", "cpu", {"checkpoint_dir": str(b)})
    (b / "gnn.pt").write_bytes(b"retrained")
    assert checkpoint_hash({"checkpoint_dir": str(a)}) != checkpoint_hash({"checkpoint_dir": b})
    with pytest.raises(ValueError, match="config_hash"):
        ModelIdentity("clustering", "cpu", "not-a-hash")


def test_every_model_records_its_identity_per_step(tmp_path: Path, tiny_sim_dir: Path) -> None:
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    (checkpoints / "gnn.pt").write_bytes(b"weights")
    gnn = {"graph_construction": {"checkpoint_dir": str(checkpoints), "r": 0.2}}
    repo = build_model_repository(tmp_path / "repo",
                                  detector_path=tiny_sim_dir / "detector.parquet",
                                  stages=[("graph_construction", "cpu")], pipelines=[FRONT_END],
                                  stage_configs=gnn)
    expected = pipeline_identity(FRONT_END.steps, FRONT_END.stage_configs)
    for model in ("pipeline_front_end", "ensemble_front_end"):
        assert served_identity(_config_json(repo / model / "config.pbtxt"), 1) == expected
    for step, identity in zip(FRONT_END.steps, expected, strict=True):
        assert served_identity(_config_json(repo / f"{step[0]}_{step[1]}" / "config.pbtxt"),
                               1) == (identity,)
    recorded, = served_identity(_config_json(repo / "graph_construction_cpu" / "config.pbtxt"),
                                1)
    assert recorded == ModelIdentity.of("graph_construction", "cpu", gnn["graph_construction"])
    assert recorded.checkpoint_hash  # hashed from the copy's source: equal to the copy's hash
    copied = json.loads(pbtxt.read_parameters(
        (repo / "graph_construction_cpu" / "config.pbtxt").read_text())["taas.v1.stage_configs"])
    assert checkpoint_hash({"checkpoint_dir": repo / copied["graph_construction"][
        "checkpoint_dir"]}) == recorded.checkpoint_hash
    with pytest.raises(ModelMismatchError, match="no identity for version 2"):
        served_identity(_config_json(repo / "pipeline_front_end" / "config.pbtxt"), 2)


def test_new_versions_sit_beside_the_old_ones_per_policy(tmp_path: Path,
                                                         tiny_sim_dir: Path) -> None:
    def build(connectivity: int, policy: VersionPolicy | None = None,
              spec: PipelineSpec | None = None) -> Path:
        spec = spec or PipelineSpec("c", CLUSTERING,
                                    stage_configs={"clustering": {"connectivity": connectivity}})
        return build_model_repository(tmp_path / "repo",
                                      detector_path=tiny_sim_dir / "detector.parquet",
                                      stages=list(CLUSTERING), pipelines=[spec],
                                      ensembles=False, add_version=True,
                                      policy=policy)

    def versions(repo: Path) -> tuple[list[int], list[int]]:
        model = repo / "clustering_cpu"
        recorded = sorted({int(k.split(".")[1][1:]) for k in
                           pbtxt.read_parameters((model / "config.pbtxt").read_text())
                           if k.startswith("taas.v")})
        return sorted(int(d.name) for d in model.iterdir() if d.is_dir()), recorded

    repo = build(8)
    assert versions(repo) == ([1], [1])
    assert versions(build(8)) == ([1], [1])  # unchanged: no new version
    assert versions(build(4, VersionPolicy(num_versions=2))) == ([1, 2], [1, 2])
    text = (repo / "clustering_cpu" / "config.pbtxt").read_text()
    assert "version_policy: { latest: { num_versions: 2 } }" in text
    assert versions(build(8, VersionPolicy(num_versions=2))) == ([2, 3], [2, 3])
    assert versions(build(4, VersionPolicy(versions=(2, 4)))) == ([2, 4], [2, 4])
    assert "specific: { versions: [ 2, 4 ] }" in (repo / "clustering_cpu" /
                                                   "config.pbtxt").read_text()
    with pytest.raises(TaasError, match="would not be served"):
        build(8, VersionPolicy(versions=(2, 4)))
    with pytest.raises(TaasError, match="needs a new name"):  # other steps, other tensors
        build(4, spec=PipelineSpec("c", (*CLUSTERING, ("spacepoints", "cpu"))))
    with pytest.raises(ValueError, match="num_versions"):
        VersionPolicy(num_versions=0)


@pytest.mark.triton
def test_client_checks_the_served_identity(triton, tiny_event) -> None:
    from taas.service.client import ModelClient, RemotePipeline, make_pipeline

    expected = pipeline_identity(FRONT_END.steps, FRONT_END.stage_configs)
    with ModelClient("ensemble_front_end", triton.url, expect=expected) as client:
        assert client.versions.served == "1"  # the latest ready one
    served = make_pipeline(FRONT_END, None, "served-pipeline", triton.url)  # expects the spec
    served.close()
    default = replace(FRONT_END, stage_configs={})  # 8-connectivity: not what is served
    with pytest.raises(ModelMismatchError) as refused:
        RemotePipeline("front_end", triton.url,
                       expect=pipeline_identity(default.steps, default.stage_configs))
    message = str(refused.value)
    want = config_hash("clustering", "cpu", {})
    got = config_hash("clustering", "cpu", {"connectivity": 4})
    assert "pipeline_front_end version 1" in message
    assert f"step 0 clustering/cpu: config_hash expected {want}, served {got}" in message
    assert "spacepoints" not in message  # only what differs
    with pytest.raises(ModelMismatchError, match="clustering_cpu version 1"):
        make_pipeline(default, None, "served", triton.url)
    with pytest.raises(ModelMismatchError, match=r"version 7 is not ready; ready versions: \[1\]"):
        ModelClient("clustering_cpu", triton.url, version="7")


@pytest.mark.triton
def test_rollout_under_load_loses_no_request(tmp_path: Path, tiny_sim_dir: Path,
                                             tiny_event: dict[str, np.ndarray]) -> None:
    """A client sends events while version 2 (another clustering config) is written and
    loaded: every request is answered, by v1 until the switch and by v2 after, each with what
    its config computes directly. A client that expects v1's config refuses v2."""
    import tritonclient.grpc as grpcclient

    from taas.events.dataset import open_dataset
    from taas.service.client import ModelClient
    from taas.service.server import ServerError, TritonServer, find_binary

    try:
        find_binary()
    except ServerError as exc:
        pytest.skip(f"no tritonserver: {exc}")
    v1, v2 = ({"clustering": {"connectivity": c}} for c in (8, 4))
    detector = open_dataset(tiny_sim_dir).detector
    direct = {version: Pipeline(PipelineSpec("c", CLUSTERING, stage_configs=configs),
                                detector).stages[0].run(tiny_event)
              for version, configs in (("1", v1), ("2", v2))}

    def build(configs: dict[str, dict[str, int]]) -> Path:
        return build_model_repository(
            tmp_path / "repo", detector_path=tiny_sim_dir / "detector.parquet",
            stages=list(CLUSTERING), pipelines=[], ensembles=False, stage_configs=configs,
            add_version=True)

    repo = build(v1)
    with TritonServer(repo, ready_timeout=180,
                      extra_args=("--model-control-mode=explicit", "--load-model=*")) as server:
        answers: list[tuple[str, dict[str, np.ndarray]]] = []
        failures: list[Exception] = []
        stop = threading.Event()
        pinned = ModelClient("clustering_cpu", server.url,
                             expect=pipeline_identity(CLUSTERING, v1))

        def send() -> None:
            with ModelClient("clustering_cpu", server.url) as client:
                while not stop.is_set():
                    try:
                        outputs = client.infer(tiny_event)
                        answers.append((client.versions.served, outputs))
                    except Exception as exc:  # every failure is counted
                        failures.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            while not answers and not failures and sender.is_alive():
                time.sleep(0.05)
            build(v2)
            admin = grpcclient.InferenceServerClient(server.url)
            admin.load_model("clustering_cpu")  # returns once v2 is ready
            deadline = time.monotonic() + 60
            while (ready := admin.get_model_metadata("clustering_cpu", as_json=True)[
                    "versions"]) != ["2"] and time.monotonic() < deadline:
                time.sleep(0.1)  # the policy keeps one version: v1 goes
            admin.close()
            assert ready == ["2"]
            after = len(answers)
            while len(answers) < after + 3 and not failures and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            sender.join()
        assert failures == []
        versions = [version for version, _ in answers]
        assert versions[0] == "1"
        assert versions[-1] == "2"
        assert versions == sorted(versions)  # v1 until the switch, v2 after, no going back
        for version in ("1", "2"):
            assert_same(next(out for v, out in answers if v == version), direct[version])
        with pytest.raises(ModelMismatchError, match="clustering_cpu version 2"):
            pinned.infer(tiny_event)  # v2 answers, but computes what this client refuses
        pinned.close()
