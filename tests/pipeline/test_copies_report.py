"""A reconstruction run records its host <-> device copies in timings.csv and run.json, and the
report turns them into the "host<->device copies per event" table (the OpenCL front end's
copies where an OpenCL device exists, the GNN's handovers on the CPU device)."""

from __future__ import annotations

import json

import numpy as np
import torch

from taas.pipeline.reconstruct import reconstruct
from taas.pipeline.spec import PipelineSpec
from taas.pipeline.timings import copies_by_stage, read_timings
from taas.report.markdown import _table
from taas.report.sections import _copies


def _opencl_device() -> bool:
    try:
        from backends.gpu.opencl import list_devices
    except ImportError:
        return False
    return bool(list_devices())


def test_copies_table_from_a_run(tiny_sim_dir, tmp_path) -> None:
    front = "gpu" if _opencl_device() else "cpu"
    spec = PipelineSpec("gpu_graph", (("clustering", front), ("spacepoints", front),
                                      ("graph_construction", "gpu")))
    out = reconstruct(tiny_sim_dir, tmp_path / "reco", spec, progress=False)
    rows = read_timings(out)
    run = json.loads((out / "run.json").read_text())
    assert run["device_residency"] is True
    copies = copies_by_stage(rows)
    assert run["copies_per_event"] == copies
    by_stage = {c["stage"]: c for c in copies}
    graph = by_stage["graph_construction"]
    assert graph["events"] == len(run["sizes"]) == 2
    assert graph["to_device"] == 14  # 12 feature columns + x, y (z is both)
    # its edges are the run's output: brought back once, counted with the stage
    assert graph["to_host"] == 3
    if torch.cuda.is_available():
        assert graph["kind"] == "copy"
        assert graph["to_device_bytes"] > 0
    else:
        assert graph["kind"] == "handover"
        assert graph["to_device_bytes"] == 0
    if front == "gpu":
        points = by_stage["spacepoints"]
        assert points["kind"] == "copy"
        assert points["device"].startswith("OpenCL")
        # 5 columns up; one (16, n) float64 block down: the handover's first leg
        assert (points["to_device"], points["to_host"]) == (5, 1)
        n_points = [s["spacepoints"] for s in run["sizes"].values()]
        assert points["to_host_bytes"] == 16 * 8 * np.median(n_points)
        assert by_stage["clustering"]["to_host"] == by_stage["clustering"]["to_device"] - 1
    else:
        assert {"clustering", "spacepoints"}.isdisjoint(by_stage)  # host stages: no row

    data = {"event_size_text": "tiny events",
            "pipelines": [{"pipeline": "gpu_graph", "steps": run["steps"], "copies": copies,
                           "device_residency": run["device_residency"]},
                          {"pipeline": "host_only", "steps": [["clustering", "cpu"]],
                           "copies": [], "device_residency": True}]}
    section = _copies(data)
    assert section is not None
    assert section.title == "Host<->device copies per event"
    assert "gpu_graph: on" in " ".join(section.text)
    table = "\n".join(_table(section.tables[0]))
    assert "| gpu_graph | graph_construction |" in table
    assert f"| {graph['kind']} | 14 (" in table
    assert "host_only" not in table
    assert _copies({**data, "pipelines": data["pipelines"][1:]}) is None
