"""What the benchmarks that retrain the binary-strips GNN recipe on another particle gun share.

``forward_eta_training.py``, ``soft_spectrum_training.py`` and ``noise_training.py`` train
``taas.gnn.binary_strips``' recipe (same preset, event counts, seeds, config and epochs) on
events of another gun, into a scratch directory, and compare the result with the shipped
set: the gun (``Gun``), its simulated events (``simulated``), the training (``train_set``), and
what their records hold (``training_summary``, ``forward_efficiency``). One thread throughout
(``THREADS``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from binary_strips import first_event

from taas.events.event import Event
from taas.events.presets import get_preset
from taas.events.simulation import simulate
from taas.gnn.binary_strips import BINARY_STRIPS_DATA, binary_strips_config
from taas.gnn.checkpoint import SHIPPED, load_checkpoint, save_checkpoint
from taas.metrics.rates import binomial_rate

THREADS = 1
#: The |eta| of the fiducial particles (and of taas' default gun).
FIDUCIAL_ETA_MAX = 2.5


@dataclass(frozen=True)
class Gun:
    """The particle gun's kinematics (``taas.events.simulation.simulate``) and the share of
    noise hits added to its events (``noise_fraction``; 0: none, as Fatras alone)."""

    pt_min: float
    pt_max: float
    pt_spectrum: str
    eta_max: float
    noise_fraction: float = 0.0

    def kwargs(self) -> dict[str, Any]:
        """``simulate`` keyword arguments."""
        return {"pt_range": (self.pt_min, self.pt_max), "pt_spectrum": self.pt_spectrum,
                "eta_max": self.eta_max, "noise_fraction": self.noise_fraction}

    def describe(self) -> dict[str, Any]:
        """What a record says of the gun (the noise only where there is some, so that the
        records of the noiseless guns stay as they were)."""
        noise = {"noise_fraction": self.noise_fraction} if self.noise_fraction else {}
        return {"pt_range_gev": [self.pt_min, self.pt_max], "pt_spectrum": self.pt_spectrum,
                "eta_max": self.eta_max, **noise}


#: The shipped set's gun (taas' default: ACTS' benchmark gun).
SHIPPED_GUN = Gun(0.5, 10.0, "flat", FIDUCIAL_ETA_MAX)


def simulated(out: Path, preset: str, events: int, seed: int, gun: Gun) -> Path:
    """``events`` binary-strip ``preset`` events with ``seed`` and ``gun`` in ``out``,
    simulated unless already there (then their ``dataset.json`` must name the same gun)."""
    manifest = out / "dataset.json"
    if manifest.exists():
        meta = json.loads(manifest.read_text())
        have = (tuple(meta.get("pt_range_gev", ())), meta.get("pt_spectrum", "flat"),
                meta.get("eta_max"), meta.get("noise_fraction", 0.0), meta.get("seed"),
                meta.get("events"))
        want = ((gun.pt_min, gun.pt_max), gun.pt_spectrum, gun.eta_max, gun.noise_fraction,
                seed, events)
        if have != want:
            raise ValueError(f"{out} holds other events ({have}, want {want}); use another "
                             "--work")
        return out
    p = get_preset(preset)
    return simulate(out, events=events, vertices=p.vertices,
                    particles_per_vertex=p.particles_per_vertex, seed=seed,
                    strip_readout="binary", progress=False, **gun.kwargs())


def train_set(out: Path, gun: Gun, epochs: dict[str, int | None], *, retrain: bool,
              training_seed: int = 0) -> dict[str, Any]:
    """The binary-strips recipe on events of ``gun`` into ``out`` (a run already there with the
    same data, epochs and training seed is reused unless ``retrain``). ``epochs``: per-stage
    epoch counts for ``binary_strips_config`` (None: the recipe's); ``training_seed``:
    ``TrainingConfig.seed`` (the recipe's 0; the events stay the recipe's). Returns its metrics
    with wall times."""
    data = {**BINARY_STRIPS_DATA, **gun.describe(),
            "epochs": {k: v for k, v in epochs.items() if v is not None} or "recipe",
            **({"training_seed": training_seed} if training_seed else {})}
    done = out / "metrics.json"
    if done.exists() and not retrain and all((out / f"{n}.pt").exists() for n in SHIPPED):
        metrics = json.loads(done.read_text())
        if metrics.get("data") == data:
            print(f"reusing the training in {out}", flush=True)
            return metrics
    from taas.gnn.training import train_all

    t0 = time.perf_counter()
    train = simulated(out / "events" / "train", data["preset"], data["train_events"],
                      data["train_seed"], gun)
    val = simulated(out / "events" / "val", data["preset"], data["val_events"],
                    data["val_seed"], gun)
    simulation_s = time.perf_counter() - t0
    print(f"{out}: simulated the training events in {simulation_s:.0f} s", flush=True)
    t0 = time.perf_counter()
    config = binary_strips_config(**{f"{k}_epochs": v for k, v in epochs.items()})
    metrics = train_all(out, events_dir=train, val_dir=val,
                        config=replace(config, seed=training_seed),
                        num_threads=THREADS, progress=False)
    metrics["wall_s"] = {"simulation": simulation_s, "training": time.perf_counter() - t0}
    metrics["data"] = data
    done.write_text(json.dumps(metrics, indent=1))
    for name in SHIPPED:
        ckpt = load_checkpoint(out / f"{name}.pt")
        save_checkpoint(out / f"{name}.pt", ckpt.model, kind=ckpt.kind,
                        metadata={**ckpt.metadata, "data": data})
    return metrics


def timed_training(name: str, out: Path, gun: Gun, epochs: dict[str, int | None], *,
                   retrain: bool, training_seed: int = 0) -> tuple[dict[str, Any], float]:
    """``train_set`` with the script's wall time (a reused training takes seconds), said on
    stdout; torch's thread count is set back to ``THREADS`` after it (training changes it)."""
    import torch

    t0 = time.perf_counter()
    metrics = train_set(out, gun, epochs, retrain=retrain, training_seed=training_seed)
    seconds = time.perf_counter() - t0
    torch.set_num_threads(THREADS)
    print(f"{name}: trained in {seconds:.0f} s", flush=True)
    return metrics, seconds


def training_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Validation metrics per stage, the working points, the epochs and the wall times."""
    out: dict[str, Any] = {"data": metrics.get("data"), "timing_s": metrics.get("timing"),
                           "wall_s": metrics.get("wall_s"),
                           "torch_threads": metrics.get("torch_threads")}
    for stage in ("embedding", "filter", "gnn"):
        m = metrics[stage]
        out[stage] = {"epochs": len(m["loss_history"]), "final_val_loss": m["val_loss_history"][-1],
                      "validation": m["validation"],
                      **{k: m[k] for k in ("r", "k", "cut", "stage_efficiency") if k in m}}
    return out


def rates_text(r: dict[str, Any]) -> str:
    """One line of an evaluation record (``soft_spectrum_training.evaluate``'s keys): the
    efficiency with its errors, fake and duplicate rates, the filter's and GNN's target edge
    efficiencies."""
    eff, fake = r["efficiency"], r["fake_rate"]
    return (f"eff {r['reconstructed']}/{r['fiducial_particles']} = {eff['value']:.3f} "
            f"+{eff['err_high']:.3f} -{eff['err_low']:.3f}, fake {fake['value']:.3f} "
            f"({r['fake_tracks']}/{r['tracks']}), dup {r['duplicate_rate']['value']:.3f} | "
            f"edges filter {r['filter_target_efficiency']:.3f} GNN "
            f"{r['gnn_target_efficiency']:.3f}")


def forward_efficiency(summary: dict[str, Any]) -> dict[str, Any]:
    """Efficiency of the particles fiducial except for their |eta| (pT > 1 GeV, primary, at
    least 3 measurements) with |eta| > 2.5: the forward particles the rates leave out."""
    p = summary["particles"]
    sel = np.asarray(p["fiducial_except_eta"], bool) & (np.abs(p["eta"]) > FIDUCIAL_ETA_MAX)
    reco = np.asarray(p["reconstructed"], bool)
    return binomial_rate(int((reco & sel).sum()), int(sel.sum())).to_dict()


def evaluation_events(trackml: Path, work: Path, eval_events: dict[str, tuple[int, Gun]]
                      ) -> tuple[dict[str, Event], dict[str, Any]]:
    """The real TrackML event and one fresh binary-strip ``small`` event per (seed, gun) of
    ``eval_events`` (simulated into ``work``), with what the record says of each."""
    preset = get_preset("small")
    events = {"trackml": first_event(trackml)}
    info: dict[str, Any] = {
        "trackml": {"path": str(trackml), "event_id": int(events["trackml"].event_id),
                    **events["trackml"].sizes(), "strip_readout": "binary",
                    "detector_acceptance_abs_eta": "about 4"}}
    for name, (seed, gun) in eval_events.items():
        events[name] = first_event(simulated(work / name, "small", 1, seed, gun))
        info[name] = {"preset": "small", "vertices": preset.vertices,
                      "particles_per_vertex": preset.particles_per_vertex, "seed": seed,
                      **gun.describe(), "strip_readout": "binary", **events[name].sizes()}
    return events, info


def retrain_parser(doc: str | None, name: str) -> argparse.ArgumentParser:
    """The options every such benchmark takes: ``--trackml``, ``--work`` (scratch, default
    ``/tmp/<name>``), ``--out`` (``<name>.json`` in ``results/``) and ``--retrain``."""
    parser = argparse.ArgumentParser(description=(doc or name).splitlines()[0])
    parser.add_argument("--trackml", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "trackml")
    parser.add_argument("--work", type=Path, default=Path("/tmp") / name,
                        help="scratch: training events, samples, checkpoints, eval events")
    parser.add_argument("--out", default=f"{name}.json")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even when --work holds a finished training")
    return parser


def run_environment() -> dict[str, Any]:
    """A retraining record's threads and machine (the timings mean little without them)."""
    import torch

    return {"threads": THREADS, "torch_threads": torch.get_num_threads(),
            "thread_env": {var: os.environ.get(var) for var in
                           ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")},
            "machine": {"processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "note": "2 cores shared with other work"}}
