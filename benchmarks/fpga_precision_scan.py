"""Fixed-point precision of the FPGA GNN chain against its physics, and its emulation speed.

Run: ``.venv/bin/python benchmarks/fpga_precision_scan.py [--preset small] [--events 1]
[--precisions 14,6 16,6 18,8 20,8] [--threads 2] [--sim-dir DIR] [--out NAME.json]``;
``--precisions`` with no value runs only the float rows and the sectioning check (minutes at
``medium``, where each emulated precision takes hours on this CPU).

For each data precision ``ap_fixed<W,I>`` (LayerNorm inputs keep ``W + 6`` bits with 6 integer
bits, weights 16 bits; see ``backends.fpga.config``) the FPGA stages (hls4ml C simulation)
reconstruct the events' graphs, and the edge efficiency / purity after the filter and after the
GNN (cut 0.5) are compared with the float CPU stages on the same events (truth: edges between
consecutive hits of one particle; efficiency also for particles with pT > 1 GeV). The
sectioning alone is checked in float: the fraction of true pT > 1 GeV edges that the whole-graph
float GNN keeps and the sectioned float GNN loses (target <= 0.1%). Emulation time per stage
(C simulation on this CPU, ``--threads`` threads over sections and edge chunks) is measured per
event; it is *emulation* time, not a hardware figure (``benchmarks/fpga_hardware_model.py``
models those). Writes ``benchmarks/results/fpga_precision_scan.json`` and a plot beside it.
Events are simulated with seed 11, unseen by the shipped models' training.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scaling_runs import end_record, simulated, start_record

from backends.cpu.edge_classification import CpuEdgeClassification
from backends.cpu.graph_construction import CpuGraphConstruction
from backends.fpga.config import FixedPoint, FpgaConfig, FpgaGnnStageConfig
from backends.fpga.edge_classification import FpgaEdgeClassification
from backends.fpga.graph_construction import FpgaGraphConstruction
from backends.fpga.sections import merge_scores, split_sections
from taas.events.dataset import open_dataset
from taas.gnn.data import GraphSample, build_sample, front_end
from taas.gnn.features import edge_features, node_feature_tensor
from taas.gnn.training import GraphCounts, pair_keys

RESULTS = Path(__file__).resolve().parent / "results"
GNN_CUT = 0.5
TARGET_PT = 1.0


def counts(sample: GraphSample, edges: dict[str, np.ndarray], cut: float = 0.0
           ) -> dict[str, float]:
    keep = edges["edges.score"] > cut
    c = GraphCounts()
    c.add(sample, edges["edges.src"][keep], edges["edges.dst"][keep], TARGET_PT)
    r = c.result()
    return {k: r[k] for k in ("efficiency", "purity", "target_efficiency")}


def sectioning_loss(tensors: dict[str, np.ndarray], sample: GraphSample,
                    graph: dict[str, np.ndarray], config: FpgaConfig) -> dict[str, float]:
    """True pT > 1 GeV edges kept by the whole-graph float GNN but lost by the sectioned one."""
    from taas.gnn.checkpoint import load_shipped

    gnn = load_shipped("gnn").model
    x = node_feature_tensor(tensors, tensors)
    src, dst = torch.from_numpy(graph["edges.src"]), torch.from_numpy(graph["edges.dst"])
    with torch.no_grad():
        whole = gnn(x, src, dst, edge_features(x, src, dst)).numpy()
        xn = x.numpy()
        sections = split_sections(xn[:, 3] * 3.0, xn[:, 1] * math.pi, src.numpy(),
                                  dst.numpy(), config)
        parts = []
        for s in sections:
            xs, a, b = x[s.nodes], torch.from_numpy(s.src), torch.from_numpy(s.dst)
            parts.append(gnn(xs, a, b, edge_features(xs, a, b)).numpy())
    sectioned = merge_scores(len(src), sections, parts)
    n = sample.n_nodes
    keys = pair_keys(graph["edges.src"], graph["edges.dst"], n)
    target = sample.truth_pt() > TARGET_PT
    true_target = np.isin(keys, pair_keys(sample.truth_src[target], sample.truth_dst[target], n))
    kept = true_target & (whole > 0.0)
    lost = kept & (sectioned <= 0.0)
    return {"sections": len(sections), "true_target_kept_whole": int(kept.sum()),
            "lost_by_sectioning": int(lost.sum()),
            "loss_fraction": float(lost.sum() / max(kept.sum(), 1)),
            "max_abs_logit_diff": float(np.abs(whole - sectioned).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--events", type=int, default=1)
    parser.add_argument("--precisions", nargs="*", default=["14,6", "16,6", "18,8", "20,8"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sim-dir", type=Path)
    parser.add_argument("--out", default="fpga_precision_scan.json",
                        help="result file name in benchmarks/results (the plot goes beside it)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    record = start_record(0.0)
    with tempfile.TemporaryDirectory() as work:
        ds = open_dataset(simulated(args.preset, args.events, Path(work), args.sim_dir))
        events = []
        for event_id in ds.event_ids[:args.events]:
            event = ds.read(event_id)
            tensors = front_end(event)
            events.append((tensors, build_sample(event, tensors)))

    float_rows, section_rows, graphs = [], [], []
    for tensors, sample in events:
        graph = CpuGraphConstruction(None).run(tensors)
        scored = CpuEdgeClassification(None).run({**tensors, **graph})
        graphs.append(graph)
        float_rows.append({"spacepoints": sample.n_nodes, "edges": len(graph["edges.src"]),
                           "filter": counts(sample, graph),
                           "gnn": counts(sample, scored, GNN_CUT)})
        section_rows.append(sectioning_loss(tensors, sample, graph, FpgaConfig()))

    scan = []
    for text in args.precisions:
        width, integer = map(int, text.split(","))
        config = FpgaConfig(data=FixedPoint(width, integer),
                            norm_input=FixedPoint(min(width + 6, 32), 6), threads=args.threads)
        t0 = time.perf_counter()
        construction = FpgaGraphConstruction(None, FpgaGnnStageConfig(fpga=config))
        classification = FpgaEdgeClassification(None, FpgaGnnStageConfig(fpga=config))
        load_s = time.perf_counter() - t0
        rows = []
        for (tensors, sample), float_graph in zip(events, graphs, strict=True):
            t0 = time.perf_counter()
            graph = construction.run(tensors)
            t1 = time.perf_counter()
            # the GNN on the float graph too, so that its figure isolates the GNN's precision
            scored = classification.run({**tensors, **float_graph})
            t2 = time.perf_counter()
            rows.append({"graph_construction_s": t1 - t0, "edge_classification_s": t2 - t1,
                         "edges": len(graph["edges.src"]), "filter": counts(sample, graph),
                         "gnn": counts(sample, scored, GNN_CUT)})
        scan.append({"precision": str(config.data), "width": width, "integer": integer,
                     "norm_input": str(config.norm_input),
                     "compiled_libraries": construction.chain.compiled
                     + classification.chain.compiled,
                     "build_or_load_s": load_s, "events": rows})
        print(json.dumps(scan[-1]), flush=True)

    result = {"benchmark": "fpga_precision_scan", "preset": args.preset,
              "events": args.events, "threads": args.threads, "gnn_cut": GNN_CUT,
              "target_pt": TARGET_PT,
              "note": "times are C simulation (emulation) on this CPU, not hardware figures",
              "float": float_rows, "sectioning_float": section_rows, "scan": scan,
              **end_record(record)}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps(result, indent=1))
    if scan:
        plot(result, out.with_suffix(".png"))
    print(f"wrote {out}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [row["precision"] for row in result["scan"]]
    for stage, marker in (("filter", "o"), ("gnn", "s")):
        for metric, style in (("efficiency", "-"), ("purity", "--"),
                              ("target_efficiency", ":")):
            reference = np.mean([e[stage][metric] for e in result["float"]])
            shift = [100 * (np.mean([e[stage][metric] for e in row["events"]]) - reference)
                     for row in result["scan"]]
            ax.plot(labels, shift, style, marker=marker, label=f"{stage} {metric}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("data precision (LayerNorm inputs W+6 bits, weights 16 bits)")
    ax.set_ylabel("emulated - float CPU (percentage points)")
    ax.set_title(f"FPGA GNN chain in C simulation, {result['preset']} "
                 f"({result['events']} event(s))", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
