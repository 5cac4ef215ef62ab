"""The CKF on the host (numba, ``ckf/cpu``) against the CKF in torch (``ckf/gpu``): the same
tracks, the time, and what the torch one copies between host and device.

Run: ``.venv/bin/python benchmarks/ckf_devices.py [--presets small medium] [--events 1 1]
[--repeats 3] [--sim-dir DIR] [--out FILE]``. Writes ``benchmarks/results/ckf_devices.json``.

The input is what the cpu chain's ckf stage sees (clustering, space points and triplet seeding
on the host) on seed-11 events of each preset (``scaling_runs.SEED``). Per event: tracks found
by each, whether their measurement lists are identical (they must be), the largest difference
of their fitted states in units of the numba state's sigma, the median seconds of each stage
over ``--repeats`` interleaved passes after one untimed pass, and the torch stage's host <->
device copies (tensors and bytes each way). The torch CKF runs on CUDA when torch sees it,
else on torch's CPU device (said in ``gpu_device``), where it is a correctness check and its
time is no GPU figure. Its candidates stay on the device for a batch of seeds
(``taas.tracking.ckf``, step 6), so the copies grow with the batches, not with the steps.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scaling_runs import RESULTS, SEED, interleaved_stage_seconds, simulated, write_result

from backends.cpu.ckf import CpuCkf
from backends.cpu.clustering import CpuClustering
from backends.cpu.seeding import CpuSeeding
from backends.cpu.spacepoints import CpuSpacepoints
from backends.gpu.ckf import GpuCkf
from taas.edm.tracks import Tracks
from taas.events.dataset import open_dataset


def compare(inputs: dict[str, np.ndarray], cpu: CpuCkf, gpu: GpuCkf,
            repeats: int) -> dict[str, Any]:
    """Both CKF stages on one event's seeds: agreement, median seconds, the torch copies."""
    outputs, seconds = interleaved_stage_seconds({"cpu": cpu, "gpu": gpu}, inputs, repeats)
    numba, torch_tracks = Tracks.from_tensors(outputs["cpu"]), Tracks.from_tensors(outputs["gpu"])
    same = all(np.array_equal(numba[k], torch_tracks[k])
               for k in ("meas_offsets", "meas_indices", "module_key"))
    sigma = np.sqrt(np.diagonal(numba["covariance"], axis1=1, axis2=2))[:, :5]
    diff = np.abs(torch_tracks["params"] - numba["params"])[:, :5] / sigma if same else None
    return {"seeds": len(inputs["seeds.quality"]), "tracks_cpu": len(numba),
            "tracks_gpu": len(torch_tracks), "same_measurement_lists": same,
            "max_state_difference_sigma": float(diff.max()) if diff is not None and len(diff)
            else None, "median_seconds": seconds, "gpu_transfers": gpu.transfers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "medium"])
    parser.add_argument("--events", type=int, nargs="+", default=[1, 1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sim-dir", type=Path, help="seed-11 simulations, one dir per preset")
    parser.add_argument("--out", default="ckf_devices.json",
                        help=f"file name under {RESULTS}")
    args = parser.parse_args()
    if len(args.events) != len(args.presets):
        parser.error("--events needs one count per preset")
    presets: dict[str, list[dict[str, Any]]] = {}
    gpu_device = ""
    with tempfile.TemporaryDirectory() as work:
        for preset, n_events in zip(args.presets, args.events, strict=True):
            dataset = open_dataset(simulated(preset, n_events, Path(work), args.sim_dir))
            det = dataset.detector
            front = (CpuClustering(det), CpuSpacepoints(det), CpuSeeding(det))
            cpu, gpu = CpuCkf(det), GpuCkf(det)
            gpu_device = gpu.device
            rows = presets.setdefault(preset, [])
            for event_id in dataset.event_ids[:n_events]:
                event = dataset.read(event_id)
                inputs = event.cells.to_tensors()
                for stage in front:
                    inputs.update(stage.run(inputs))
                row = {"event_id": int(event_id), **event.sizes(),
                       **compare(inputs, cpu, gpu, args.repeats)}
                rows.append(row)
                moved = row["gpu_transfers"]
                print(f"{preset} event {event_id}: {row['tracks_cpu']} tracks, same lists "
                      f"{row['same_measurement_lists']}, numba "
                      f"{row['median_seconds']['cpu']:.2f} s, torch on {gpu.device} "
                      f"{row['median_seconds']['gpu']:.2f} s, copies {moved['to_device']} up "
                      f"({moved['to_device_bytes'] / 1e6:.1f} MB), {moved['to_host']} down "
                      f"({moved['to_host_bytes'] / 1e6:.1f} MB)", flush=True)
    write_result({"benchmark": "ckf_devices", "seed": SEED, "repeats": args.repeats,
                  "machine": platform.node(), "torch_threads": torch.get_num_threads(),
                  "gpu_device": gpu_device, "presets": presets}, args.out)


if __name__ == "__main__":
    main()
