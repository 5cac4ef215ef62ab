"""The event-filter capacity plan: devices = rate x time per event, extrapolated stage by stage
with the measured slopes, nothing planned from FPGA emulation times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taas.report.capacity import CapacityConfig, device_kind, plan, read_slopes

REPO = Path(__file__).resolve().parents[2]


def _pipeline(name: str, stages: list[tuple[str, float, str]], spacepoints: float = 30e3
              ) -> dict:
    return {"pipeline": name, "mean_sizes": {"spacepoints": spacepoints},
            "stages": [{"stage": s, "median_s": t, "device": d} for s, t, d in stages]}


def test_devices_are_rate_times_time_and_stages_scale_with_their_slopes() -> None:
    cpu = _pipeline("cpu", [("seeding", 0.1, "cpu"), ("ckf", 0.4, "cpu")])
    config = CapacityConfig(full_scan_hz=100.0, roi_hz=1000.0, roi_fraction=0.1,
                            spacepoints=300e3)
    (row,) = plan([cpu], config, {"seeding": 2.0})  # ckf: no slope, linear
    assert row["device"] == "CPU core"
    assert row["seconds_measured"] == pytest.approx(0.5)
    assert row["devices_full_scan_measured_size"] == pytest.approx(50.0)
    # seeding 0.1 * 10^2, ckf 0.4 * 10^1
    assert row["seconds_extrapolated"] == pytest.approx(10.0 + 4.0)
    assert row["devices_full_scan"] == pytest.approx(1400.0)
    # RoI: 30k space points, the measured size: no scaling at all
    assert row["seconds_roi"] == pytest.approx(0.5)
    assert row["devices_roi"] == pytest.approx(500.0)
    assert row["slopes"] == {"seeding": 2.0, "ckf": None}


def test_device_kind_follows_where_stages_ran() -> None:
    assert device_kind([{"stage": "a", "device": "cpu"}]) == "CPU core"
    assert device_kind([{"stage": "a", "device": "cuda:0 bf16 autocast"}]) == "GPU"
    assert device_kind([{"stage": "a", "device": "OpenCL NVIDIA CUDA / H100 (GPU)"}]) == "GPU"
    fpga = _pipeline("fpga", [("graph_construction", 9.0, "fpga (hls4ml C simulation)")])
    (row,) = plan([fpga], CapacityConfig(), {})
    assert row["device"] is None
    assert "emulation" in row["reason"]


@pytest.mark.parametrize("device", ["cpu (CUDA unavailable)", "cpu",
                                    "OpenCL Portable Computing Language / pthread-x86 (CPU)"])
def test_gpu_backend_on_a_cpu_device_is_not_a_gpu(device: str) -> None:
    assert device_kind([{"stage": "a", "device": device}]) == "CPU core"


def test_slopes_come_from_the_shipped_scaling_benchmarks(tmp_path: Path) -> None:
    files = [REPO / "benchmarks" / "results" / n
             for n in ("cpu_chain_scaling.json", "gnn_scaling.json")]
    slopes = read_slopes([*files, tmp_path / "missing.json"])
    assert {"seeding", "ckf", "graph_construction", "edge_classification"} <= set(slopes)
    first = json.loads(files[0].read_text())["loglog_slope_vs_measurements"]
    assert slopes["clustering"] == pytest.approx(first["clustering"])  # first file wins


@pytest.mark.parametrize("bad", [{"roi_fraction": 0.0}, {"roi_fraction": 1.5},
                                 {"full_scan_hz": -1.0}, {"spacepoints": 0.0}])
def test_bad_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="capacity"):
        CapacityConfig(**bad)
