"""MODELLED FPGA hardware figures for the taas chain (no vendor tool, no board: a model).

Run: ``.venv/bin/python benchmarks/fpga_hardware_model.py [--workloads FILE] [--out FILE]``.

Per MLP block of the shipped GNN chain (layer sizes read from the checkpoints): latency in
cycles and ns, initiation interval, DSP / LUT / BRAM estimates; per preset (event sizes measured
by ``benchmarks/gnn_scaling.py``: cells, space points, edges before and after the filter, in
``benchmarks/results/gnn_scaling.json``) the modelled time per FPGA stage, the latency of one
event and events/s per device; a reuse-factor scan at ``medium``; the same on an Alveo U250; and
the model applied to the published FPGA interaction network of Elabd et al. 2022 (same graph
size and precision) and to a synthesized version of it whose C-synthesis report is public
(``HUANG_SYNTHESIZED``: latency and DSP-cycles per graph, model against report). Every
assumption and rule is written into the JSON next to the numbers
(``backends.fpga.hardware_model``). Writes ``benchmarks/results/fpga_hardware_model.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from backends.fpga import hardware_model
from backends.fpga.hardware_model import (
    DEVICES,
    ELABD_2022,
    FRONTEND_KERNELS,
    HUANG_SYNTHESIZED,
    EventWorkload,
    ModelAssumptions,
    estimate_block,
    event_model,
    mlp_blocks_from_checkpoints,
    published_design_check,
)
from taas.gnn.checkpoint import SHIPPED, load_shipped
from taas.io.atomic import atomic_write

log = logging.getLogger(__name__)

RESULTS = Path(__file__).parent / "results"


def workloads(path: Path, gnn_iterations: int) -> list[EventWorkload]:
    """Mean items per event of each preset, as measured by the GNN scaling benchmark."""
    data = json.loads(path.read_text())
    out = []
    for result in data["results"]:
        sizes = result["mean_sizes"]
        out.append(EventWorkload(
            preset=result["preset"], cells=sizes["cells"], spacepoints=sizes["spacepoints"],
            graph_edges=result["edges"]["graph"]["edges_per_event"],
            filtered_edges=result["edges"]["filter"]["edges_per_event"],
            gnn_iterations=gnn_iterations))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=Path, default=RESULTS / "gnn_scaling.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "fpga_hardware_model.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    checkpoints = {name: load_shipped(name) for name in SHIPPED}
    blocks = mlp_blocks_from_checkpoints(checkpoints)
    iterations = int(checkpoints["gnn"].config["n_iterations"])
    events = workloads(args.workloads, iterations)
    base = ModelAssumptions()
    medium = next(w for w in events if w.preset == "medium")
    result: dict[str, Any] = {
        "label": "MODELLED hardware figures (not measured: no synthesis, no board)",
        "assumptions": asdict(base),
        "device": asdict(base.fpga),
        "rules": hardware_model.__doc__,
        "workload_source": str(args.workloads.name),
        "blocks": [asdict(estimate_block(b, base)) for b in blocks],
        "frontend_kernels": [asdict(k) for k in FRONTEND_KERNELS],
        "per_preset": [event_model(w, blocks, base) for w in events],
        "reuse_scan_medium": [
            {"reuse_factor": r, **event_model(medium, blocks, replace(base, reuse_factor=r))}
            for r in (1, 2, 4, 8, 16, 32)],
        "per_preset_u250": [event_model(w, blocks, replace(base, device="u250"))
                            for w in events],
        "devices": {k: asdict(v) for k, v in DEVICES.items()},
        "published_design_check": {
            "elabd_2022": {
                **published_design_check(ELABD_2022, hidden=8),
                "comparison": "the latency of the paper's 448-node / 896-edge design (its "
                              "results tables) was not available offline; the synthesized "
                              "report below is the check"},
            "huang_synthesized": {
                **published_design_check(HUANG_SYNTHESIZED, hidden=8),
                "comparison": "same graph size, precision, reuse factor, device and clock as "
                              "the synthesized design; it processes the whole section in "
                              "parallel (11x the model's DSPs), the model streams it through "
                              "one instance per block: compare DSP-cycles per graph (the "
                              "throughput per multiplier) and the order of the latency"},
        },
    }
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    for row in result["per_preset"]:
        log.info("%s: %s us per event (slowest %s), %.0f events/s per device (%d chain copies)",
                 row["preset"], {k: round(v, 1) for k, v in row["stage_time_us"].items()},
                 row["slowest_stage"], row["events_per_s_per_device"], row["chain_copies"])
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
