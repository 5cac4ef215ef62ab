"""Side-by-side summary of pipelines: time per stage, event sizes and physics figures.

Every time is stated with the event sizes it was measured on and the device each stage actually
ran on, as the honesty rules of ``docs/architecture.md`` require.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from taas.pipeline.timings import read_timings, seconds_by_stage

RATES = ("efficiency", "fake_rate", "duplicate_rate")


def pipeline_summary(reco_dir: str | Path, metrics_path: str | Path) -> dict[str, Any]:
    """One pipeline's mean time per event per stage, mean event sizes and rates."""
    reco_dir = Path(reco_dir)
    run = json.loads((reco_dir / "run.json").read_text())
    per_stage = seconds_by_stage(read_timings(reco_dir))
    stages = [{"stage": s, "backend": b, "device": d, "median_s": float(np.median(v)),
               "events": len(v)} for (s, b, d), v in per_stage.items()]
    sizes = list(run["sizes"].values())
    mean_sizes = {k: float(np.mean([s[k] for s in sizes])) for k in sizes[0]} if sizes else {}
    metrics = json.loads(Path(metrics_path).read_text())
    return {
        "pipeline": run["pipeline"],
        "events": len(sizes),
        "mean_sizes": mean_sizes,
        "stages": stages,
        "total_median_s": sum(s["median_s"] for s in stages),
        "warmup": run.get("warmup", False),
        "metrics": {k: metrics.get(k) for k in (*RATES, "n_tracks", "n_fiducial_particles")},
        "matching": metrics.get("matching"),
    }


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def to_markdown(summaries: list[dict[str, Any]]) -> str:
    """A report a person reads: one table of physics, one of time per stage."""
    lines = ["# taas pipeline summary", ""]
    if summaries:
        sizes = summaries[0]["mean_sizes"]
        lines += ["Mean event size: " + ", ".join(f"{v:.0f} {k}" for k, v in sizes.items()),
                  f"({summaries[0]['events']} events).", ""]
        matching = summaries[0]["matching"] or {}
        lines += [f"Matching: {matching.get('style', '?')}, fiducial pT > "
                  f"{matching.get('pt_min', '?')} GeV, |eta| < {matching.get('eta_max', '?')}.",
                  ""]
    lines += ["| pipeline | efficiency | fake rate | duplicate rate | tracks | s/event |",
              "|---|---|---|---|---|---|"]
    for s in summaries:
        m = s["metrics"]
        lines.append(f"| {s['pipeline']} | {_fmt(m['efficiency'], '.4f')} | "
                     f"{_fmt(m['fake_rate'], '.4f')} | {_fmt(m['duplicate_rate'], '.4f')} | "
                     f"{m['n_tracks']} | {s['total_median_s']:.3f} |")
    lines += ["", "| pipeline | stage | backend | ran on | median s/event |",
              "|---|---|---|---|---|"]
    for s in summaries:
        for st in s["stages"]:
            lines.append(f"| {s['pipeline']} | {st['stage']} | {st['backend']} | {st['device']} "
                         f"| {st['median_s']:.4f} |")
    return "\n".join(lines) + "\n"


def write_summary(reco_dirs: list[Path], metrics_paths: list[Path], out: Path) -> Path:
    """``out`` (markdown) and ``out`` with suffix .json."""
    if len(reco_dirs) != len(metrics_paths):
        raise ValueError("one metrics file per reconstruction directory")
    summaries = [pipeline_summary(r, m) for r, m in zip(reco_dirs, metrics_paths, strict=True)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summaries, indent=2))
    out.write_text(to_markdown(summaries))
    return out
