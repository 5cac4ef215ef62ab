"""The ``acorn_traccc`` chain on CUDA with and without device residency: same tracks, fewer
copies, and what each costs, on the first ``medium`` event.

Skips unless torch sees a CUDA device (``tests/pipeline/test_copy_ledger.py`` checks the same
bookkeeping on the CPU device, where the crossings are handovers). The chain: the front end on
the gpu backend when an OpenCL GPU is present (else on the cpu backend, and the record says
so), the GNN stages, the bridge and the CKF on CUDA (accel=gpu), the fit on the gpu backend.
Without residency every GPU stage uploads its inputs and downloads its outputs; with it the
GNN stages hand their tensors over on the device, and the bridge its starts to the CKF. Both
pipelines run the event once untimed, then ``REPEATS`` times interleaved; the record
(``benchmarks/results/cuda_resident_chain.json``, or ``$TAAS_RESULTS_DIR``) holds each stage's
copies (tensors, bytes, seconds synchronised) on the last pass and the median seconds per
pass, with the event size and the GPU's name.

Outputs must be identical with and without residency. CUDA kernels with atomics may order
equal results differently from run to run; should two passes *without* residency differ, the
record says so and the comparison is reported rather than asserted.

The event: ``TAAS_MEDIUM_SIM_DIR`` (a ``medium`` simulation with seed 11, as
``docs/gpu_machine.md`` carries it), else one simulated here when pyacts is installed.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)

from taas.events.dataset import open_dataset  # noqa: E402
from taas.events.presets import PRESETS  # noqa: E402
from taas.pipeline.runner import Pipeline, PipelineResult  # noqa: E402
from taas.pipeline.spec import ACORN_TRACCC  # noqa: E402
from taas.pipeline.timings import transfer_fields  # noqa: E402
from taas.reco.hit_spacepoints import event_inputs  # noqa: E402

SEED = 11
REPEATS = 3
GNN = ("graph_construction", "edge_classification", "track_building")


def _opencl_gpu() -> bool:
    try:
        import pyopencl as cl

        from backends.gpu.opencl import list_devices
    except ImportError:
        return False
    return any(d.type & cl.device_type.GPU for d in list_devices())


@pytest.fixture(scope="module")
def medium_event(tmp_path_factory: pytest.TempPathFactory):
    from taas.events.simulation import check_simulated, simulate

    preset = PRESETS["medium"]
    want = {"seed": SEED, "vertices": preset.vertices,
            "particles_per_vertex": preset.particles_per_vertex}
    if given := os.environ.get("TAAS_MEDIUM_SIM_DIR"):
        directory = check_simulated(given, want, min_events=1)
    else:
        pytest.importorskip("acts", reason="no TAAS_MEDIUM_SIM_DIR and no pyacts to simulate")
        directory = simulate(tmp_path_factory.mktemp("medium_sim"), events=1,
                             vertices=preset.vertices,
                             particles_per_vertex=preset.particles_per_vertex, seed=SEED,
                             progress=False)
    dataset = open_dataset(directory)
    return dataset.detector, event_inputs(dataset.read(dataset.event_ids[0]))


def _timed(pipeline: Pipeline, inputs: dict) -> tuple[PipelineResult, float]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = pipeline.run(inputs)
    torch.cuda.synchronize()
    return result, time.perf_counter() - start


def _differing(a: dict, b: dict) -> list[str]:
    return sorted(n for n in set(a) | set(b)
                  if n not in a or n not in b or a[n].dtype != b[n].dtype
                  or not np.array_equal(a[n], b[n]))


def _ledger(result: PipelineResult) -> list[dict]:
    return [{"stage": t.stage, "backend": t.backend, "device": t.device, "seconds": t.seconds,
             **transfer_fields(t.transfers, t.counted)} for t in result.timings]


@pytest.mark.gpu
def test_resident_chain_on_cuda(medium_event) -> None:
    detector, inputs = medium_event
    front = "gpu" if _opencl_gpu() else "cpu"
    spec = ACORN_TRACCC.with_accel("gpu").with_routing({"clustering": front,
                                                        "spacepoints": front})
    pipelines = {"plain": Pipeline(spec, detector, resident=False),
                 "resident": Pipeline(spec, detector, resident=True)}
    for pipeline in pipelines.values():
        pipeline.run(inputs)  # untimed: CUDA context, kernels, numba caches
    seconds: dict[str, list[float]] = {name: [] for name in pipelines}
    results: dict[str, list[PipelineResult]] = {name: [] for name in pipelines}
    for _ in range(REPEATS):
        for name, pipeline in pipelines.items():
            result, s = _timed(pipeline, inputs)
            results[name].append(result)
            seconds[name].append(s)

    plain, resident = results["plain"][-1], results["resident"][-1]
    run_to_run = _differing(results["plain"][0].tensors, plain.tensors)
    with_residency = _differing(plain.tensors, resident.tensors)
    ledgers = {name: _ledger(r[-1]) for name, r in results.items()}
    gpu_stages = [t.stage for t in plain.timings if t.device.startswith("cuda")]
    record = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "front_end": front, "steps": [list(s) for s in spec.steps],
        "sizes": {"cells": len(inputs["cells.ch0"]),
                  "spacepoints": len(plain.tensors["spacepoints.x"]),
                  "tracks": len(plain.tensors["tracks.chi2"])},
        "repeats": REPEATS,
        "median_seconds": {name: statistics.median(v) for name, v in seconds.items()},
        "ledger_last_pass": ledgers,
        "differs_run_to_run_without_residency": run_to_run,
        "differs_with_residency": with_residency,
    }
    out_dir = Path(os.environ.get("TAAS_RESULTS_DIR",
                                  Path(__file__).resolve().parents[1] / "benchmarks" / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cuda_resident_chain.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: record[k] for k in ("gpu", "sizes", "median_seconds",
                                             "differs_with_residency")}, indent=1))

    assert set(GNN) <= set(gpu_stages), gpu_stages
    if not run_to_run:  # deterministic passes: residency must change nothing
        assert with_residency == [], with_residency
    by_stage = {name: {row["stage"]: row for row in ledger} for name, ledger in ledgers.items()}
    for stage in GNN:
        assert by_stage["plain"][stage]["transfer_kind"] == "copy"
    # the edges stay on the device: graph construction brings nothing back, edge
    # classification uploads nothing, and the GNN stages copy fewer bytes up in all
    assert by_stage["resident"]["graph_construction"]["to_host"] == 0
    assert by_stage["resident"]["edge_classification"]["to_device"] == 0
    up = {name: sum(by_stage[name][s]["to_device_bytes"] for s in GNN) for name in by_stage}
    assert up["resident"] < up["plain"]
    # the bridge's starts stay on the device: the CKF does not take them up again
    ckf = {name: by_stage[name]["prototrack_ckf"] for name in by_stage}
    assert ckf["resident"]["to_device"] == ckf["plain"]["to_device"] - 2
    assert ckf["resident"]["to_device_bytes"] < ckf["plain"]["to_device_bytes"]
