"""Modelled FPGA hardware figures: latency, initiation interval and resources from layer sizes.

THIS IS A MODEL, NOT A MEASUREMENT. No vendor tool ran; every number here follows from the
assumptions in ``ModelAssumptions`` and the rules below, and is meant for the order of magnitude
(latency within ~2x, resources within ~2x for DSPs and worse for LUTs), to compare options
before anyone synthesizes. The synthesized truth comes from the projects ``backends.fpga.projects``
writes (``hardware_tests/test_fpga_synthesis.py``).

Rules, per dense layer of ``n_in`` x ``n_out`` (hls4ml, ``io_parallel``, reuse factor R):

* multiplier lanes ``ceil(n_in n_out / R)``: each lane does R multiplications per sample;
* DSPs: one per lane when the weights are 9 bits or wider (hls4ml's own rule, used by its
  DSP-aware pruning), none otherwise (narrow products go to LUTs);
* initiation interval: R cycles per sample for every layer, so R for a pipelined block (the
  hls4ml documentation's II ~ reuse factor for io_parallel dense layers);
* latency: R cycles of multiplier reuse + ``ceil(log2 n_in)`` adder-tree levels + 2 register
  stages, plus 1 cycle for ReLU and 2 for a table activation (tanh, sigmoid);
* LUTs (rough): per lane an accumulator adder of (weight + activation + log2 n_in) bits, plus,
  when R > 1, a weight multiplexer of ``weight_bits`` LUTs; LUT multipliers for narrow weights
  cost weight x activation bits / 2 per lane;
* block RAM: with hls4ml's Latency strategy (its io_parallel default) weights are constants in
  the fabric, no BRAM; with the Resource strategy a layer needs enough 18 Kb BRAMs for its weight
  bits and for reading ``lanes x weight_bits`` per cycle through 72-bit dual ports.

Streaming (how an event flows): each block processes one sample (a space point, an edge, a
node) every R cycles per instance; the front-end kernels run ``frontend_instances`` copies
(modules and measurements dealt out among them); the whole chain (front end + every MLP block)
is replicated as often as ``device_fill`` of the device's DSPs allows, and the copies share an
event's sections. A chain that does not fit even once is still modelled as one copy and flagged
(``fits_device`` false): a larger reuse factor or narrower weights would be needed. Within
the GNN each of its iterations runs the edge network over all edges, then the node network
over all nodes (the aggregation in between is a dependency); blocks do not overlap within a
stage (conservative). Stages work on different events at once (dataflow),
so the event rate is set by the slowest stage, while the latency of one event is the sum.

The front-end kernels are our own HLS C++ (``hls/clustering.cpp``, ``hls/spacepoints.cpp``);
their per-item cycle counts are the design intent of their pragmas (II = 1 space points; a few
cycles per cell for the union-find clustering), stated in ``FRONTEND_KERNELS``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Activation latencies (cycles) of the model; anything else is rejected.
_ACTIVATION_CYCLES = {"none": 0, "relu": 1, "tanh": 2, "sigmoid": 2}
_BRAM18_BITS = 18 * 1024
_BRAM18_PORT_BITS = 72  # two 36-bit ports read per cycle (ROM use)


@dataclass(frozen=True)
class FpgaDevice:
    """Resources of one FPGA (vendor product tables)."""

    name: str
    part: str
    dsp: int
    lut: int
    bram18: int
    uram: int


#: Virtex UltraScale+ VU9P (the device of the published FPGA GNN tracking designs; Alveo U200)
#: and Alveo U250 (XCU250), from AMD's product tables.
DEVICES: dict[str, FpgaDevice] = {
    "vu9p": FpgaDevice("Virtex UltraScale+ VU9P (Alveo U200 class)", "xcvu9p-flga2104-2L-e",
                       dsp=6840, lut=1_182_240, bram18=4320, uram=960),
    "u250": FpgaDevice("Alveo U250 (XCU250)", "xcu250-figd2104-2L-e",
                       dsp=12288, lut=1_728_000, bram18=5376, uram=1280),
}


@dataclass(frozen=True)
class ModelAssumptions:
    """Every assumption of the model, recorded with each result."""

    clock_mhz: float = 200.0
    device: str = "vu9p"
    reuse_factor: int = 8
    weight_bits: int = 16
    activation_bits: int = 16
    strategy: str = "latency"
    device_fill: float = 0.7
    frontend_instances: int = 8

    def __post_init__(self) -> None:
        if not 10 <= self.clock_mhz <= 1000:
            raise ValueError(f"clock_mhz must be within 10 .. 1000, got {self.clock_mhz!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {sorted(DEVICES)}, got {self.device!r}")
        for name in ("reuse_factor", "weight_bits", "activation_bits", "frontend_instances"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.strategy not in ("latency", "resource"):
            raise ValueError(f"strategy must be 'latency' or 'resource', got {self.strategy!r}")
        if not 0 < self.device_fill <= 1:
            raise ValueError(f"device_fill must be within (0, 1], got {self.device_fill!r}")

    @property
    def fpga(self) -> FpgaDevice:
        return DEVICES[self.device]

    @property
    def ns_per_cycle(self) -> float:
        return 1e3 / self.clock_mhz


@dataclass(frozen=True)
class DenseLayer:
    n_in: int
    n_out: int
    activation: str = "none"

    def __post_init__(self) -> None:
        if self.n_in < 1 or self.n_out < 1:
            raise ValueError(f"layer sizes must be positive, got {self.n_in} x {self.n_out}")
        if self.activation not in _ACTIVATION_CYCLES:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATION_CYCLES)}, got "
                             f"{self.activation!r}")


@dataclass(frozen=True)
class MlpBlock:
    """One MLP of the chain: the FPGA stage it belongs to, what one sample is (``per``), its
    layers."""

    name: str
    stage: str
    per: str
    layers: tuple[DenseLayer, ...]


@dataclass(frozen=True)
class BlockEstimate:
    """Modelled figures of one block instance."""

    name: str
    per: str
    n_weights: int
    latency_cycles: int
    latency_ns: float
    ii_cycles: int
    dsp: int
    lut: int
    bram18: int
    layers: list[dict[str, int | str]] = field(default_factory=list)


def _layer(layer: DenseLayer, a: ModelAssumptions) -> dict[str, int | str]:
    r = a.reuse_factor
    mults = layer.n_in * layer.n_out
    lanes = math.ceil(mults / r)
    tree = math.ceil(math.log2(layer.n_in)) if layer.n_in > 1 else 0
    wide = a.weight_bits >= 9
    lut = lanes * (a.weight_bits + a.activation_bits + tree)
    if r > 1:
        lut += lanes * a.weight_bits
    if not wide:
        lut += lanes * a.weight_bits * a.activation_bits // 2
    bram = 0
    if a.strategy == "resource" and r > 1:
        bram = max(math.ceil(mults * a.weight_bits / _BRAM18_BITS),
                   math.ceil(lanes * a.weight_bits / _BRAM18_PORT_BITS))
    return {"n_in": layer.n_in, "n_out": layer.n_out, "activation": layer.activation,
            "weights": mults, "lanes": lanes, "dsp": lanes if wide else 0, "lut": lut,
            "bram18": bram, "latency_cycles": r + tree + 2 + _ACTIVATION_CYCLES[layer.activation]}


def estimate_block(block: MlpBlock, assumptions: ModelAssumptions) -> BlockEstimate:
    """Latency, II and resources of one pipelined instance of ``block``."""
    layers = [_layer(layer, assumptions) for layer in block.layers]
    cycles = sum(int(x["latency_cycles"]) for x in layers)
    return BlockEstimate(
        name=block.name, per=block.per, n_weights=sum(int(x["weights"]) for x in layers),
        latency_cycles=cycles, latency_ns=cycles * assumptions.ns_per_cycle,
        ii_cycles=assumptions.reuse_factor, dsp=sum(int(x["dsp"]) for x in layers),
        lut=sum(int(x["lut"]) for x in layers), bram18=sum(int(x["bram18"]) for x in layers),
        layers=layers)


@dataclass(frozen=True)
class KernelModel:
    """A front-end HLS kernel's design intent: cycles per item and per extra item, latency,
    and resources (from its buffer widths and multiplier count)."""

    name: str
    per: str
    cycles_per_item: float
    cycles_per_secondary: float
    secondary: str
    latency_cycles: int
    dsp: int
    lut: int
    bram18: int


#: Clustering: reading a cell (II 1), linking it (1-3 union-find steps) and accumulating it
#: (a root lookup) take ~4 cycles per cell; each cluster's moments leave a pipelined divider
#: at one per cycle. Buffer: 4096 cells x (103 bits per cell + 517 per cluster slot) in
#: 18 Kb BRAMs. Space points: fully pipelined, one measurement per cycle; 15 rotation products
#: and 3 CORDIC gain products of up to 30 x 27 bits at 2 DSPs each; 12 CORDICs of 26 stages
#: x 3 adders of ~41 bits in LUTs; latency: 4 cycles of products + 2 circular and 1 hyperbolic
#: CORDIC in series (~80 stages) + normalisation.
FRONTEND_KERNELS = (
    KernelModel("clustering", per="cell", cycles_per_item=4.0, cycles_per_secondary=1.0,
                secondary="cluster", latency_cycles=60, dsp=8, lut=15_000,
                bram18=math.ceil(4096 * (103 + 517) / _BRAM18_BITS)),
    KernelModel("spacepoints", per="measurement", cycles_per_item=1.0, cycles_per_secondary=0.0,
                secondary="none", latency_cycles=100, dsp=36, lut=12 * 26 * 3 * 41,
                bram18=0),
)

_TORCH_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
#: FPGA stage of each shipped model (the radius search of graph construction is not modelled).
_STAGES = {"embedding": "graph_construction (embedding only)", "filter": "filter", "gnn": "gnn"}


def mlp_blocks_from_checkpoints(checkpoints: Mapping[str, Any] | None = None
                                ) -> list[MlpBlock]:
    """The MLP blocks of the shipped GNN chain with their layer sizes read from the weights.

    ``checkpoints``: {"embedding": Checkpoint, "filter": ..., "gnn": ...}; None loads the
    shipped ones (needs torch). LayerNorm layers are not counted (the FPGA variant folds or
    drops them); the GNN's recurrent node and edge networks appear once, run per iteration.
    """
    if checkpoints is None:
        from taas.gnn.checkpoint import SHIPPED, load_shipped

        checkpoints = {name: load_shipped(name) for name in SHIPPED}
    per = {"embedding.net": "space point", "filter.net": "graph edge",
           "gnn.node_encoder": "node", "gnn.edge_encoder": "edge",
           "gnn.edge_nets.0": "edge and iteration", "gnn.node_nets.0": "node and iteration",
           "gnn.classifier": "edge"}
    blocks = []
    for name, ckpt in checkpoints.items():
        for path, module in ckpt.model.named_modules():
            key = f"{name}.{path}"
            if key in per:
                blocks.append(MlpBlock(key, _STAGES[name], per[key],
                                       tuple(_dense_layers(module))))
    return blocks


def _dense_layers(sequential: Iterable[Any]) -> list[DenseLayer]:
    layers: list[DenseLayer] = []
    pending: tuple[int, int] | None = None
    for module in sequential:
        kind = type(module).__name__
        if kind == "Linear":
            if pending:
                layers.append(DenseLayer(*pending))
            pending = (module.in_features, module.out_features)
        elif kind in _TORCH_ACTIVATIONS and pending:
            layers.append(DenseLayer(*pending, _TORCH_ACTIVATIONS[kind]))
            pending = None
    if pending:
        layers.append(DenseLayer(*pending))
    return layers


@dataclass(frozen=True)
class EventWorkload:
    """Items per event that the FPGA stages process (from measured events)."""

    preset: str
    cells: float
    spacepoints: float
    graph_edges: float  # before the filter
    filtered_edges: float
    gnn_iterations: int


def event_model(workload: EventWorkload, blocks: list[MlpBlock],
                assumptions: ModelAssumptions) -> dict[str, Any]:
    """Modelled time per FPGA stage for one event, and events/s for one device."""
    a = assumptions
    estimates = {b.name: estimate_block(b, a) for b in blocks}
    mlp_dsp = sum(e.dsp for e in estimates.values())
    frontend_dsp = a.frontend_instances * sum(k.dsp for k in FRONTEND_KERNELS)
    fit = a.device_fill * a.fpga.dsp / (mlp_dsp + frontend_dsp)
    copies = max(1, math.floor(fit))  # one copy is modelled even where it does not fit
    r = a.reuse_factor
    w = workload
    by_per = {"space point": w.spacepoints, "graph edge": w.graph_edges,
              "node": w.spacepoints, "edge": w.filtered_edges,
              "node and iteration": w.spacepoints * w.gnn_iterations,
              "edge and iteration": w.filtered_edges * w.gnn_iterations}
    cluster, spacepoint = FRONTEND_KERNELS
    cycles = {
        "clustering": cluster.cycles_per_item * w.cells + cluster.cycles_per_secondary * (
            w.spacepoints) + cluster.latency_cycles,
        "spacepoints": spacepoint.cycles_per_item * w.spacepoints + spacepoint.latency_cycles,
    }
    for block in blocks:
        estimate = estimates[block.name]
        cycles[block.stage] = cycles.get(block.stage, 0.0) + by_per[estimate.per] * r + (
            estimate.latency_cycles)
    instances = {stage: copies * (a.frontend_instances if stage in ("clustering", "spacepoints")
                                  else 1) for stage in cycles}
    seconds = {stage: c / instances[stage] / (a.clock_mhz * 1e6) for stage, c in cycles.items()}
    slowest = max(seconds, key=lambda s: seconds[s])
    return {
        "preset": w.preset, "workload": asdict(w), "chain_copies": copies,
        "chain_dsp_per_copy": mlp_dsp + frontend_dsp, "fits_device": fit >= 1,
        "stage_time_us": {s: t * 1e6 for s, t in seconds.items()},
        "event_latency_us": sum(seconds.values()) * 1e6,
        "slowest_stage": slowest,
        "events_per_s_per_device": 1.0 / seconds[slowest],
        "utilisation": {
            "dsp": copies * (mlp_dsp + frontend_dsp) / a.fpga.dsp,
            "lut": copies * (sum(e.lut for e in estimates.values()) + a.frontend_instances
                             * sum(k.lut for k in FRONTEND_KERNELS)) / a.fpga.lut,
            "bram18": copies * (sum(e.bram18 for e in estimates.values()) + a.frontend_instances
                                * sum(k.bram18 for k in FRONTEND_KERNELS)) / a.fpga.bram18,
        },
    }


#: The published design the model is checked against: Elabd et al., "Graph Neural Networks for
#: Charged Particle Tracking on FPGAs", Front. Big Data 5:828666 (2022),
#: doi:10.3389/fdata.2022.828666. Interaction network (edge block R1, node block O, edge
#: classifier R2; layer sizes as in the authors' public code, github.com/abdelabd/
#: manual_GNN_conversion, utils/models/interaction_network_pyg.py, with the hidden width of
#: their FPGA runs' ``--n-neurons``) on graph sections of up to 448 nodes / 896 edges,
#: ap_fixed<14,7>, reuse factor 8, Xilinx VU9P.
@dataclass(frozen=True)
class PublishedDesign:
    """What a published FPGA GNN design processed, and on what; with the figures its authors
    reported where we have them (``reported_*``, None otherwise)."""

    reference: str
    nodes: int
    edges: int
    precision: str
    weight_bits: int
    reuse_factor: int
    device: str
    node_features: int
    edge_features: int
    clock_mhz: float = 200.0
    reported_latency_cycles: int | None = None
    reported_interval_cycles: int | None = None
    reported_dsp: int | None = None
    reported_lut: int | None = None


ELABD_2022 = PublishedDesign(
    reference="A. Elabd et al., Front. Big Data 5:828666 (2022), doi:10.3389/fdata.2022.828666",
    nodes=448, edges=896, precision="ap_fixed<14,7>", weight_bits=14, reuse_factor=8,
    device="vu9p", node_features=3, edge_features=4)

#: A synthesized version of the same interaction network whose figures are public: the Vivado
#: HLS 2019.2 C-synthesis report (``myproject_csynth.rpt``, solution12) that S.-Y. Huang (an
#: author of Elabd et al. 2022 and of Huang et al., FPL 2023, doi:10.1109/FPL60245.2023.00050)
#: committed with the hls4ml project it came from, github.com/SYH0568/manual_GNN_conversion,
#: commit 41783dc ("lower latency and II and report-solution12"): 112 nodes / 204 edges
#: (``defines.h``), 8 hidden neurons, ap_fixed<16,8>, reuse factor 1, xcvu9p at a 5 ns target
#: clock; reported latency 151 cycles (0.755 us), interval 46 cycles, 5,120 DSPs, 795,651 LUTs.
#: Every edge and node of the section is processed in parallel there (dataflow, arrays
#: partitioned), where the model streams one edge or node per interval through one instance.
HUANG_SYNTHESIZED = PublishedDesign(
    reference="Vivado HLS 2019.2 csynth report of the hls4ml interaction network, "
              "github.com/SYH0568/manual_GNN_conversion commit 41783dc (solution12); "
              "S.-Y. Huang et al., FPL 2023, doi:10.1109/FPL60245.2023.00050",
    nodes=112, edges=204, precision="ap_fixed<16,8>", weight_bits=16, reuse_factor=1,
    device="vu9p", node_features=3, edge_features=4, reported_latency_cycles=151,
    reported_interval_cycles=46, reported_dsp=5120, reported_lut=795_651)


def interaction_network_blocks(hidden: int, node_features: int = 3, edge_features: int = 4
                               ) -> list[MlpBlock]:
    """The published interaction network's three MLPs (R1 edge block, O node block, R2 edge
    classifier), each Linear-ReLU-Linear-ReLU-Linear."""
    def mlp(name: str, per: str, n_in: int, n_out: int) -> MlpBlock:
        return MlpBlock(name, "gnn", per, (DenseLayer(n_in, hidden, "relu"),
                                    DenseLayer(hidden, hidden, "relu"), DenseLayer(hidden, n_out)))

    edge_in = 2 * node_features + edge_features
    return [mlp("R1", "edge", edge_in, edge_features),
            mlp("O", "node", node_features + edge_features, node_features),
            mlp("R2", "edge", edge_in, 1)]


def published_design_check(design: PublishedDesign = ELABD_2022, hidden: int = 8
                           ) -> dict[str, Any]:
    """The model's figures for a published design's graph size and precision: one instance
    per block, the section streamed edge by edge through R1, node by node through O, edge by
    edge through R2 (each one sample per R cycles). Where the design's own figures are known,
    the ratios model / reported, and the DSP-cycles one graph occupies (DSPs x the interval
    between graphs) -- the throughput per multiplier, which does not depend on how much of the
    section the design processes in parallel, unlike its latency."""
    a = ModelAssumptions(clock_mhz=design.clock_mhz, device=design.device,
                         reuse_factor=design.reuse_factor, weight_bits=design.weight_bits,
                         activation_bits=design.weight_bits)
    blocks = interaction_network_blocks(hidden, design.node_features, design.edge_features)
    estimates = [estimate_block(b, a) for b in blocks]
    n = {"edge": design.edges, "node": design.nodes}
    cycles = sum(n[e.per] * e.ii_cycles + e.latency_cycles for e in estimates)
    dsp = sum(e.dsp for e in estimates)
    result: dict[str, Any] = {
        "published": asdict(design), "hidden": hidden, "assumptions": asdict(a),
        "blocks": [asdict(e) for e in estimates],
        "modelled_section_latency_cycles": cycles,
        "modelled_section_latency_us": cycles * a.ns_per_cycle / 1e3,
        "modelled_dsp": dsp,
        "modelled_lut": sum(e.lut for e in estimates),
    }
    if design.reported_latency_cycles is not None:
        result["latency_model_over_reported"] = cycles / design.reported_latency_cycles
    if design.reported_dsp is not None and design.reported_interval_cycles is not None:
        # the model streams: a new section every `cycles` (no overlap between sections)
        reported = design.reported_dsp * design.reported_interval_cycles
        result["dsp_cycles_per_graph"] = {"modelled": dsp * cycles, "reported": reported,
                                          "model_over_reported": dsp * cycles / reported}
    return result
