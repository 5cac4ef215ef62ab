"""The report shows the modelled FPGA figures beside an emulated fpga pipeline, labelled as a
model, and not at all when no stage ran on the fpga backend."""

from __future__ import annotations

from pathlib import Path

from taas.report.build import _fpga_model
from taas.report.sections import _fpga_model as fpga_section

MODEL = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "fpga_hardware_model.json"


def _pipeline(backend: str) -> dict:
    return {"pipeline": "p", "stages": [{"stage": "clustering", "backend": backend}]}


def test_modelled_figures_are_shown_for_an_fpga_pipeline_only() -> None:
    assert _fpga_model([_pipeline("cpu")], MODEL) is None
    assert _fpga_model([_pipeline("fpga")], None) is None
    model = _fpga_model([_pipeline("fpga")], MODEL)
    assert model is not None
    section = fpga_section({"fpga_model": model})
    assert section is not None
    assert "modelled, not measured" in section.title
    assert "MODELLED" in section.text[0]
    assert "emulation" in section.text[0]
    presets = [row[0] for row in section.tables[0].rows]
    assert presets == [p["preset"] for p in model["per_preset"]]
    assert fpga_section({"fpga_model": None}) is None
