"""The report's service-option sections and plots, drawn from the measured study results of
``benchmarks/service_options.py`` (real server runs, not hand-made numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taas.report import service_options
from taas.report.markdown import _table

RESULT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "service_options.json"


@pytest.fixture(scope="module")
def data() -> dict:
    studies = json.loads(RESULT.read_text())["studies"]
    return {"service_options": {"pipelines": studies}, "short_size_text": "20k cells per event"}


def test_table_has_one_row_per_option_and_pipeline(data: dict) -> None:
    section = service_options.section(data)
    assert section.title == service_options.TITLE
    table, placement = section.tables
    studies = data["service_options"]["pipelines"]
    expected = [(s["pipeline"], r["key"]) for s in studies for r in s["options"]]
    assert [(row[0], row[1].split()[0]) for row in table.rows] == expected
    assert ("cpu", "S1") not in expected
    assert ("acorn", "S1") in expected
    assert any("cpu: S1 (networks served) not measured" in t for t in section.text)
    concurrency = studies[0]["concurrency"]
    assert [h for h in table.header if h.startswith("events/s")] == [
        f"events/s c={c}" for c in concurrency]
    direct = next(row for row in table.rows if row[1].startswith("S0"))
    assert direct[2] == "none (in-process)"
    custom = next(row for row in table.rows if row[:2] == ["acorn", "custom pipeline model"])
    assert custom[2] == "whole pipeline (pipeline_acorn)"
    assert next(row for row in table.rows if row[:2] == ["acorn", "S1 networks served"])[2] \
        == "graph_construction, edge_classification"
    assert direct[4] == "1.000"
    assert all("cells x" in row[-1] for row in table.rows)  # event size on every row
    assert {row[3] for row in placement.rows} == {"in-process", "served"}
    assert all(row[4] for row in placement.rows)  # every stage names its device
    markdown = "\n".join(_table(table))
    assert markdown.count("\n| acorn |") == sum(1 for p, _ in expected if p == "acorn")


def test_queue_vs_compute_table_from_prometheus(data: dict) -> None:
    section = service_options.queue_section(data)
    (table,) = section.tables
    models = {(row[0], row[1]) for row in table.rows}
    assert ("acorn", "pipeline_acorn") in models
    assert ("acorn", "edge_classification_cpu") in models
    for row in table.rows:
        assert int(row[2]) > 0
        assert float(row[4]) > 0


def test_plots_are_drawn(data: dict, tmp_path: Path) -> None:
    images = service_options.write_plots(data, tmp_path)
    assert set(images) == set(service_options.PLOTS)
    assert all(path.stat().st_size > 5000 for path in images.values())


def test_without_a_study_the_sections_say_so(tmp_path: Path) -> None:
    section = service_options.section({})
    assert section.tables == []
    assert "Not measured in this run." in section.text
    assert service_options.queue_section({}).tables == []
    images = service_options.write_plots({}, tmp_path)
    assert all(path.is_file() for path in images.values())
