"""Track fit time per event: the numba fit against the torch (batched) fit on the CPU device.

Run: ``.venv/bin/python benchmarks/batched_fit.py [--preset medium] [--events 2] [--repeats 3]
[--sim-dir DIR] [--measurement-errors SOURCE] [--device cpu] [--torch-threads 1]``. Writes
``benchmarks/results/batched_fit.json`` (``--out`` elsewhere).

The fit's real input: each event (seed 11, as the scaling benchmarks) goes through the CPU
chain's clustering, space points, seeding, CKF and ambiguity resolution once; its proto-tracks
are then fitted by ``taas.tracking.fitter.fit_prototracks`` (numba, the ``cpu`` backend) and by
``taas.tracking.batched.fit.fit_prototracks_torch`` on the CPU device (the ``gpu`` backend's
code without CUDA; ``--device cuda`` on a GPU), in the same process, interleaved (the order
alternates every repeat), after one untimed warm-up fit of each. Recorded: per fit the median
and best time per event, their ratio, the event sizes, torch's thread count and device, and the
largest difference between the two fits' tracks in units of the parameters' sigmas (they share
every formula: ``taas.tracking.batched.formulas``), and the torch fit's host <-> device copies
on the last event (one batch of up to ``batch_size`` tracks, every length together).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scaling_runs import end_record, simulated, start_record

from backends.cpu.ambiguity import CpuAmbiguityResolution
from backends.cpu.ckf import CpuCkf
from backends.cpu.clustering import CpuClustering
from backends.cpu.seeding import CpuSeeding
from backends.cpu.spacepoints import CpuSpacepoints
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks, Tracks
from taas.events.dataset import open_dataset
from taas.events.presets import PRESETS
from taas.stages.device_tensors import TransferCounter
from taas.tracking.batched.fit import fit_prototracks_torch
from taas.tracking.fitter import TrackFitConfig, fit_prototracks
from taas.tracking.parameters import PHI, wrap_phi


def fit_inputs(sim: Path) -> list[tuple[Measurements, ProtoTracks]]:
    """Measurements and ambiguity-resolved proto-tracks of every event of ``sim``."""
    dataset = open_dataset(sim)
    det = dataset.detector
    stages = [CpuClustering(det), CpuSpacepoints(det), CpuSeeding(det), CpuCkf(det),
              CpuAmbiguityResolution(det)]
    out = []
    for event_id in dataset.event_ids:
        tensors = dataset.read(event_id).cells.to_tensors()
        for stage in stages:
            tensors.update(stage.run(tensors))
        out.append((Measurements.from_tensors(tensors), ProtoTracks.from_tensors(tensors)))
    return out


def deviation(reference: Tracks, other: Tracks) -> dict[str, float]:
    """Largest |difference| / sigma of the parameters and / (sigma_i sigma_j) of the
    covariances."""
    sigma = np.sqrt(np.diagonal(reference["covariance"], axis1=1, axis2=2))
    diff = other["params"] - reference["params"]
    diff[:, PHI] = wrap_phi(diff[:, PHI])
    scale = sigma[:, :, None] * sigma[:, None, :]
    return {"params_over_sigma": float(np.abs(diff / sigma).max()),
            "covariance_over_sigma2": float(np.abs((other["covariance"]
                                                    - reference["covariance"]) / scale).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="medium", choices=sorted(PRESETS))
    parser.add_argument("--events", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sim-dir", type=Path, default=None,
                        help="directory holding <preset>/ simulated with seed 11")
    parser.add_argument("--measurement-errors", default=TrackFitConfig().measurement_errors)
    parser.add_argument("--device", default="cpu",
                        help="torch device of the batched fit (cuda: the GPU backend's figure; "
                             "the device is synchronised before each clock reading)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads (numba's fit is single-threaded; on this "
                             "shared 2-core machine 2 threads ran the torch fit 12x slower "
                             "than 1, OpenMP barriers under oversubscription)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "batched_fit.json")
    args = parser.parse_args()
    config = TrackFitConfig(measurement_errors=args.measurement_errors)
    torch.set_num_threads(args.torch_threads)
    record = start_record(0.0)
    with tempfile.TemporaryDirectory() as work:
        sim = simulated(args.preset, args.events, Path(work), args.sim_dir)
        detector = open_dataset(sim).detector
        events = fit_inputs(sim)

    def numba_fit(meas: Measurements, protos: ProtoTracks) -> Tracks:
        return fit_prototracks(detector, meas, protos, config)[0]

    device = torch.device(args.device)
    torch_name = f"torch_{device.type}"

    copies = TransferCounter()

    def torch_fit(meas: Measurements, protos: ProtoTracks) -> Tracks:
        copies.reset()
        tracks = fit_prototracks_torch(detector, meas, protos, config, device=device,
                                       transfers=copies)[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return tracks

    fits = {"numba": numba_fit, torch_name: torch_fit}
    for fit in fits.values():  # compile / warm up
        fit(*events[0])
    times: dict[str, list[float]] = {name: [] for name in fits}
    deviations = []
    for repeat in range(args.repeats):
        order = list(fits) if repeat % 2 == 0 else list(reversed(fits))
        for meas, protos in events:
            tracks = {}
            for name in order:
                start = time.perf_counter()
                tracks[name] = fits[name](meas, protos)
                times[name].append(time.perf_counter() - start)
            if repeat == 0:
                assert len(tracks["numba"]) == len(tracks[torch_name])
                deviations.append(deviation(tracks["numba"], tracks[torch_name]))
    per_fit = {name: {"median_s": float(np.median(t)), "best_s": float(np.min(t))}
               for name, t in times.items()}
    result = {
        **end_record(record), "preset": args.preset, "events": args.events,
        "repeats": args.repeats, "config": {"measurement_errors": config.measurement_errors},
        "sizes": {"measurements_per_event": float(np.mean([len(m) for m, _ in events])),
                  "prototracks_per_event": float(np.mean([len(p) for _, p in events]))},
        "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "torch_device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                         else "cpu"),
        "fit_time_per_event": per_fit,
        "torch_over_numba_median": per_fit[torch_name]["median_s"]
        / per_fit["numba"]["median_s"],
        "max_deviation": {k: max(d[k] for d in deviations) for k in deviations[0]},
        "torch_copies_last_event": copies.summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
