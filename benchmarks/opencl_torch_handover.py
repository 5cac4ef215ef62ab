"""What the OpenCL front end's handover to torch costs: space points from OpenCL to the GNN.

Run: ``.venv/bin/python benchmarks/opencl_torch_handover.py [--presets small] [--events 1]
[--repeat 20] [--sim-dir DIR] [--out FILE]``. Writes
``benchmarks/results/opencl_torch_handover.json``.

The OpenCL space-point kernel (``backends.gpu.spacepoints``) writes one (16, n) float64 block;
the GNN's graph construction reads 14 of its columns as torch tensors. No API joins the two
(pyopencl has no DLPack, torch cannot wrap a ``cl_mem``), so the block goes through host
memory in two legs:

1. OpenCL -> host: the block's download (``OpenClRuntime.to_host``);
2. host -> torch device: the columns graph construction uploads (14 tensors).

Both legs are measured twice: inside the chain (``clustering/gpu``, ``spacepoints/gpu``,
``graph_construction/gpu`` under ``Pipeline``; the copy ledger of ``taas.stages.transfers``
gives tensors, bytes and seconds per stage) and in isolation (median of ``--repeat`` runs
after one warm-up: the block's download from a device buffer, the columns' upload to the torch
device, synchronised on CUDA). On a machine without CUDA the torch leg is a handover on the
CPU device -- shared memory, no bytes copied -- and the OpenCL device is PoCL on the CPU,
whose "download" is a memcpy between two host buffers: the figures then bound the
bookkeeping, not a PCIe transfer. The stage times of space points and graph construction are
recorded beside them, to say what fraction of the chain the handover is.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from gnn_components import timed
from scaling_runs import SEED, simulated

from backends.gpu.opencl import get_runtime
from taas.events.dataset import open_dataset
from taas.gnn.stages import GnnStage
from taas.pipeline.runner import Pipeline, StageTiming
from taas.pipeline.spec import PipelineSpec
from taas.pipeline.timings import transfer_fields
from taas.reco.hit_spacepoints import event_inputs
from taas.stages.device_tensors import DeviceTensors

log = logging.getLogger("benchmarks.opencl_torch_handover")

SPEC = PipelineSpec("opencl_front_end_gnn", (("clustering", "gpu"), ("spacepoints", "gpu"),
                                             ("graph_construction", "gpu")))
#: rows of the OpenCL space-point block (backends.gpu.spacepoints: 6 point + 10 feature rows)
BLOCK_ROWS = 16


def ledger(timing: StageTiming) -> dict[str, object]:
    return {"stage": timing.stage, "device": timing.device, "stage_s": timing.seconds,
            **transfer_fields(timing.transfers, timing.counted)}


def isolated_legs(tensors: dict[str, np.ndarray], columns: list[str], repeat: int,
                  device: torch.device) -> dict[str, object]:
    """Both legs alone: the (16, n) block from an OpenCL buffer to the host, the columns
    graph construction reads from the host to ``device``."""
    runtime = get_runtime()
    n = len(tensors["spacepoints.x"])
    block = runtime.to_device(np.zeros((BLOCK_ROWS, n)))
    host_columns = [np.ascontiguousarray(tensors[c]) for c in columns]
    sync = device.type == "cuda"
    down = timed(block.get, repeat, sync=False)
    up = timed(lambda: [torch.as_tensor(c).to(device) for c in host_columns],
                        repeat, sync=sync)
    down_bytes = BLOCK_ROWS * n * 8
    up_bytes = sum(c.nbytes for c in host_columns)
    return {"opencl_to_host": {"device": runtime.description, "tensors": 1,
                               "bytes": down_bytes, "median_s": down,
                               "GB_per_s": down_bytes / down / 1e9},
            "host_to_torch": {"device": str(device),
                              "kind": "copy" if sync else "handover (shared memory, no copy)",
                              "tensors": len(host_columns), "bytes": up_bytes,
                              "median_s": up,
                              "GB_per_s": up_bytes / up / 1e9 if sync else None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small"])
    parser.add_argument("--events", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sim-dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results"
                        / "opencl_torch_handover.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    with tempfile.TemporaryDirectory() as work:
        for preset in args.presets:
            dataset = open_dataset(simulated(preset, args.events, Path(work), args.sim_dir))
            pipeline = Pipeline(SPEC, dataset.detector)
            graph = pipeline.stages[2]
            assert isinstance(graph, GnnStage)
            first = event_inputs(dataset.read(dataset.event_ids[0]))
            pipeline.run(first)  # untimed: kernel builds, numba and torch warm-up
            for event_id in dataset.event_ids[:args.events]:
                result = pipeline.run(event_inputs(dataset.read(event_id)))
                stages = {t.stage: ledger(t) for t in result.timings}
                probe = DeviceTensors(dict(result.tensors), graph.torch_device)
                graph.node_inputs(probe)  # the columns graph construction uploads
                columns = list(probe.on_device)
                legs = isolated_legs(result.tensors, columns, args.repeat, device)
                timings = {t.stage: t for t in result.timings}
                down = timings["spacepoints"].transfers.by_kind["copy"]
                up = next(iter(timings["graph_construction"].transfers.by_kind.values()))
                chain_s = down.to_host_seconds + up.to_device_seconds
                results.append({
                    "preset": preset, "event_id": event_id,
                    "sizes": {"cells": len(result.tensors["cells.ch0"]),
                              "spacepoints": len(result.tensors["spacepoints.x"])},
                    "chain_ledger": stages,
                    # the two legs as the ledger timed them inside the chain
                    "handover_in_chain": {
                        "opencl_to_host": {"tensors": down.to_host, "bytes": down.to_host_bytes,
                                           "seconds": down.to_host_seconds},
                        "host_to_torch": {"tensors": up.to_device,
                                          "bytes_copied": up.to_device_bytes,
                                          "seconds": up.to_device_seconds},
                        "seconds": chain_s},
                    "handover_fraction_of_sp_plus_graph": chain_s / (
                        stages["spacepoints"]["stage_s"]
                        + stages["graph_construction"]["stage_s"]),
                    "isolated": legs})
                log.info("%s event %d: %d space points, handover %.3f ms in the chain",
                         preset, event_id, results[-1]["sizes"]["spacepoints"], chain_s * 1e3)
    out = {"benchmark": "opencl_torch_handover", "seed": SEED, "repeat": args.repeat,
           "torch_device": str(device), "machine": platform.platform(),
           "processor": platform.processor() or platform.machine(),
           "torch": torch.__version__, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
