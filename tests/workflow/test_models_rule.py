"""The workflow's models step: shipped checkpoints (or trained ones) handed to the GNN stages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taas.errors import TaasError
from taas.gnn.checkpoint import SHIPPED, shipped_path
from taas.pipeline.spec import ACORN, CPU
from taas.workflow.models import model_stages, prepare_models, with_models

REPO = Path(__file__).resolve().parents[2]


def test_model_stages_are_the_gnn_stages() -> None:
    assert model_stages(CPU) == []
    assert model_stages(ACORN) == ["graph_construction", "edge_classification"]


def test_cpu_pipeline_needs_no_models(tmp_path: Path) -> None:
    info = prepare_models(CPU, "shipped", tmp_path)
    assert json.loads((tmp_path / "stage_configs.json").read_text()) == {}
    assert info["stages"] == []
    assert not (tmp_path / "checkpoints").exists()


def test_shipped_models_are_copied_and_named_in_the_stage_configs(tmp_path: Path) -> None:
    info = prepare_models(ACORN, "shipped", tmp_path)
    configs = json.loads((tmp_path / "stage_configs.json").read_text())
    assert set(configs) == {"graph_construction", "edge_classification"}
    ckpt = Path(configs["graph_construction"]["checkpoint_dir"])
    assert ckpt.is_absolute()
    for name in SHIPPED:
        assert (ckpt / f"{name}.pt").read_bytes() == shipped_path(name).read_bytes()
    assert info["training"]["preset"] in ("small", "medium")
    assert 0.5 < info["validation"]["gnn"]["efficiency"] <= 1.0
    with pytest.raises(TaasError, match="source"):
        prepare_models(ACORN, "download", tmp_path)


def test_acorn_workflow_runs_on_the_models_step_output(tmp_path: Path) -> None:
    """Snakemake up to the acorn reconstruction: the GNN stages load the checkpoints the
    models rule wrote (not the package's), and say they ran on the CPU device."""
    results = tmp_path / "results"
    target = results / "reco" / "tiny" / "acorn"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", "preset=tiny",
           "n_events=1", "seed=3", "pipelines=[acorn]", "accel=gpu", "allow_cpu_device=true",
           f"results={results}", "--", str(target)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    info = json.loads((target / "run.json").read_text())
    ckpt = info["stage_configs"]["graph_construction"]["checkpoint_dir"]
    assert Path(ckpt) == (results / "models" / "tiny" / "acorn" / "checkpoints").resolve()
    timings = (target / "timings.csv").read_text()
    assert "edge_classification,gpu,cpu (CUDA unavailable)" in timings


def test_report_states_model_provenance(tmp_path: Path) -> None:
    from taas.gnn.checkpoint import load_shipped
    from taas.report.sections import _models_text

    prepare_models(ACORN, "shipped", tmp_path)
    text = _models_text("acorn", json.loads((tmp_path / "models.json").read_text()))
    assert text.startswith("acorn: models `shipped` for graph_construction, edge_classification")
    data = load_shipped("gnn").metadata["data"]
    assert (f"trained on {data['train_events']} `{data['preset']}` events, "
            f"seed {data['train_seed']}") in text
    assert "validation edge efficiency 0." in text


def test_trained_models_are_used_by_the_stages(tmp_path: Path, generic_detector) -> None:
    """models=train: a short training on freshly simulated tiny events; the GNN stages load
    the result through the stage configs the step wrote."""
    from taas.pipeline.runner import Pipeline

    info = prepare_models(ACORN.with_accel("cpu"), "train", tmp_path, train_preset="tiny",
                          train_events=2, seed=7)
    assert info["training"] == {"preset": "tiny", "train_events": 2, "val_events": 1,
                                "seed": 7}
    configs = json.loads((tmp_path / "stage_configs.json").read_text())
    ckpt = Path(configs["edge_classification"]["checkpoint_dir"])
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(f"{n}.pt" for n in SHIPPED)
    assert (ckpt / "gnn.pt").read_bytes() != shipped_path("gnn").read_bytes()
    spec = with_models(ACORN.with_accel("cpu"), tmp_path)
    assert spec.stage_configs["edge_classification"] == configs["edge_classification"]
    stages = Pipeline(spec, generic_detector).stages
    gnn = next(s for s in stages if s.NAME == "edge_classification")
    assert gnn.models["gnn"].metadata["data"]["preset"] == "tiny"
