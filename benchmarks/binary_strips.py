"""Binary strip readout: the shipped cells models against the ``binary_strips`` set (issue 19).

Run: ``.venv/bin/python benchmarks/binary_strips.py [--trackml DIR] [--sim-dir DIR]``.
Writes ``benchmarks/results/binary_strips.json``.

TrackML's strip volumes read out binary (every strip cell 1.0); taas' simulation gave analog
values (summed path lengths ~0.3), the only readout the shipped ``cells`` models were trained
on (``benchmarks/trackml_real_data.py``). The ``binary_strips`` models
(``taas.gnn.binary_strips``) were trained on ``small`` events simulated with
``strip_readout="binary"``. The ``acorn`` pipeline runs with each model set on three events:

* the real TrackML event (``../shared/data/trackml``);
* one ``small`` event, seed 11, simulated with binary strips;
* the same ``small`` seed-11 event with analog strips (the shipped models' own input).

Per run: two_way efficiency, fake and duplicate rates (fiducial pT > 1 GeV, Clopper-Pearson
68.3% errors), the pT > 1 GeV truth-edge efficiency after the filter and after the GNN (score
cut 0.3), the track count, and which set ``taas reconstruct`` picks for that event on its own
(``taas.pipeline.reconstruct.strip_readout``). Machine time is not measured here.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from scaling_runs import SEED, simulated, write_result
from trackml_real_data import TARGET_PT, edge_counts, rates

from taas.events.dataset import open_dataset
from taas.events.event import Event
from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.gnn.checkpoint import DEFAULT_MODEL_SET
from taas.pipeline.evaluation import evaluate_reco
from taas.pipeline.reconstruct import event_inputs, strip_readout, with_model_set
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PIPELINES

ROOT = Path(__file__).resolve().parents[1]
MODEL_SETS = (DEFAULT_MODEL_SET, "binary_strips")


def first_event(directory: Path) -> Event:
    dataset = open_dataset(directory)
    return dataset.read(dataset.event_ids[0])


def acorn(event: Event, model_set: str) -> dict[str, Any]:
    """The acorn pipeline on ``event`` with the GNN models of ``model_set``: rates, edge
    efficiencies, tracks."""
    spec = with_model_set(PIPELINES["acorn"], model_set)
    reco = Pipeline(spec, event.detector).run(event_inputs(event)).tensors
    summary = evaluate_reco(event, reco)
    counts = summary["counts"]
    return {**rates(summary), **edge_counts(event, reco),
            "tracks": counts["n_tracks"], "reconstructed": counts["n_reconstructed_particles"],
            "fiducial_particles": counts["n_fiducial_particles"],
            "spacepoints": len(reco["spacepoints.x"])}


def compare(name: str, event: Event) -> dict[str, Any]:
    readout = strip_readout(event)
    out: dict[str, Any] = {"sizes": event.sizes(), "strip_readout": readout,
                           "picked_by_reconstruct": "binary_strips" if readout == "binary"
                           else DEFAULT_MODEL_SET}
    for model_set in MODEL_SETS:
        out[model_set] = acorn(event, model_set)
        eff = out[model_set]["efficiency"]
        print(f"{name:>14} {model_set:>14}: efficiency {eff['value']:.3f} "
              f"+{eff['err_high']:.3f} -{eff['err_low']:.3f} "
              f"(of {out[model_set]['fiducial_particles']}), filter edges "
              f"{out[model_set]['filter_target_efficiency']:.3f}, GNN edges "
              f"{out[model_set]['gnn_target_efficiency']:.3f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackml", type=Path, default=ROOT.parent / "shared" / "data" / "trackml")
    parser.add_argument("--sim-dir", type=Path,
                        help="analog events simulated before (its small/, seed 11)")
    parser.add_argument("--out", default="binary_strips.json")
    args = parser.parse_args()
    preset = PRESETS["small"]
    with tempfile.TemporaryDirectory() as work:
        analog = first_event(simulated("small", 1, Path(work), args.sim_dir))
        binary = first_event(simulate(
            Path(work) / "small_binary", events=1, vertices=preset.vertices,
            particles_per_vertex=preset.particles_per_vertex, seed=SEED,
            strip_readout="binary", progress=False))
    events = {"trackml": first_event(args.trackml), "small_binary": binary,
              "small_analog": analog}
    result = {"benchmark": "binary_strips", "pipeline": "acorn",
              "matching": f"two_way, fiducial pT > {TARGET_PT:g} GeV, |eta| < 2.5, primary; "
                          "Clopper-Pearson 68.3% errors",
              "edge_efficiency": f"truth edges of particles with pT > {TARGET_PT:g} GeV kept "
                                 "after the filter and after the GNN (score > 0.3)",
              "simulated_seed": SEED,
              **{name: compare(name, event) for name, event in events.items()}}
    write_result(result, args.out)


if __name__ == "__main__":
    main()
