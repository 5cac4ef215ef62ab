// Synthesizable top functions of the GNN graph kernels (graph_kernels.h), one per kernel.
//
// Why four tops and not one with a mode switch: the kernels have different ports (a node
// table, an edge table, edge indices, a LayerNorm row) and run at different points of an
// interaction-GNN iteration, usually concurrently on different sections. One top with a mode
// argument would carry the union of all ports, share no logic (the kernels have no common
// datapath) and report the resources of all four as one block, hiding which kernel costs what.
// Each top is therefore its own HLS project (backends/fpga/projects.py: GRAPH_KERNELS), all
// built from the same graph_kernels_top.cpp and checked by the same testbench, which exercises
// every top: in a co-simulation the project's top runs as RTL, the others as C.
//
// Interfaces (why):
//   * arrays of a section (node states, edge states, edge indices, results) are ap_memory
//     ports: the graph kernels sit between hls4ml blocks inside one design, and a section's
//     tables live in on-chip block/ultra RAM that the neighbouring blocks also address. Gather
//     (h[src[k]]) and aggregation (a read-modify-write of the row of dst[k]) access rows in data
//     dependent order, which a stream cannot provide; an addressed memory port can, at one
//     access per port per cycle and no bus protocol;
//   * block control is ap_ctrl_hs (start / done / idle / ready): a section controller starts a
//     kernel when the section's tables are filled and waits for done before the next block
//     reads the results; scalar arguments (counts, widths) are ap_none, stable during a call;
//     the int return value (status code, below) comes out on ap_return;
//     Throughput honestly: the kernels' feature loops are unrolled, but a row of w features
//     still crosses a dual-port table port two values per clock, so synthesis relaxes the
//     pragmas' II=1 to about w/2 per edge (gather, aggregation); fixing the widths at compile
//     time and partitioning the tables by feature would reach II=1 at the cost of w ports;
//   * gnn_layernorm_relu works on one row whose features are partitioned into registers, as
//     hls4ml's io_parallel layers around it pass a row, and is pipelined at II=1 (a row per
//     clock);
//   * compiled for the Vitis kernel flow (TAAS_VITIS_KERNEL, set by the project writer when
//     flow_target=vitis), which supports no ap_memory / ap_ctrl_hs top ports, the arrays become
//     m_axi (bundle gmem) and the control and scalars s_axilite, so a host can drive a kernel.
//
// Section size and types come from graph_kernels.h: TAAS_SECTION_NODES / TAAS_SECTION_EDGES
// rows, TAAS_MAX_WIDTH features at most, data_t / agg_t / norm_in_t / index_t (the project's
// cflags set them from backends.fpga.config.FpgaConfig). Row-major tables: row i of a table of
// width w occupies [i * w, (i + 1) * w), so the port depths below are the largest any width
// allowed by TAAS_MAX_WIDTH can use.
//
// Not yet checked by a vendor tool (none on the machines taas is developed on; the synthesis
// test in hardware_tests/ runs where one is). Points to watch in the first synthesis run, all
// in graph_kernels.h: layernorm_relu takes 1/width by a double division (a constant only where
// the width is), and inv_sqrt fills its ROM in a constructor calling std::sqrt, which the tool
// must evaluate at compile time.
//
// Status codes (the C-simulation bridge graph_kernels.cpp uses the same ones): 0 ok,
// -1 more nodes or edges than the section size, -2 a feature width outside [0, TAAS_MAX_WIDTH]
// (or below 1 where a width must be positive), -3 an edge index outside [0, n_nodes). On an
// error a kernel writes nothing: a bad index must never address memory outside the section.
// The index check is one pipelined pass over the edges (n_edges cycles at II=1), which a
// production design could fold into the first pass of the kernel.
#ifndef TAAS_GRAPH_KERNELS_TOP_H_
#define TAAS_GRAPH_KERNELS_TOP_H_

#include "graph_kernels.h"

//! Depth of a node table (states of every node of a section at the widest width).
#define GNN_NODE_TABLE (TAAS_SECTION_NODES * TAAS_MAX_WIDTH)
//! Depth of an edge table.
#define GNN_EDGE_TABLE (TAAS_SECTION_EDGES * TAAS_MAX_WIDTH)
//! Depth of the gathered edge inputs [h[src], h[dst], extra]: 3 widths per edge at most.
#define GNN_GATHER_TABLE (TAAS_SECTION_EDGES * 3 * TAAS_MAX_WIDTH)
//! Depth of the node-network inputs [h, sum_in, max_in, sum_out, max_out]: 5 widths per node.
#define GNN_NODE_INPUT_TABLE (TAAS_SECTION_NODES * 5 * TAAS_MAX_WIDTH)

enum GnnStatus {
    GNN_OK = 0,
    GNN_SECTION_TOO_LARGE = -1,
    GNN_BAD_WIDTH = -2,
    GNN_BAD_EDGE_INDEX = -3,
};

// out[k] = [h[src[k]], h[dst[k]], extra[k]] for the n_edges edges of a section of n_nodes nodes.
int gnn_gather_edges(const taas::data_t h[GNN_NODE_TABLE], int n_nodes, int h_width,
                     const taas::data_t extra[GNN_EDGE_TABLE], int extra_width,
                     const taas::index_t src[TAAS_SECTION_EDGES],
                     const taas::index_t dst[TAAS_SECTION_EDGES], int n_edges,
                     taas::data_t out[GNN_GATHER_TABLE]);

// out[i] = [h[i], sum_in, max_in, sum_out, max_out] over the edges into (dst = i) and out of
// (src = i) node i; zeros for a side without edges.
int gnn_node_aggregate(const taas::data_t h[GNN_NODE_TABLE], int n_nodes, int h_width,
                       const taas::data_t e[GNN_EDGE_TABLE], int e_width,
                       const taas::index_t src[TAAS_SECTION_EDGES],
                       const taas::index_t dst[TAAS_SECTION_EDGES], int n_edges,
                       taas::data_t out[GNN_NODE_INPUT_TABLE]);

// out = saturate(a + b) for n values (a node or an edge state table of a section).
int gnn_residual_add(const taas::data_t a[GNN_EDGE_TABLE], const taas::data_t b[GNN_EDGE_TABLE],
                     int n, taas::data_t out[GNN_EDGE_TABLE]);

// One row: out = ReLU(LayerNorm(in) * gamma + beta) over `width` features.
int gnn_layernorm_relu(const taas::norm_in_t in[TAAS_MAX_WIDTH], int width,
                       const taas::ln_param_t gamma[TAAS_MAX_WIDTH],
                       const taas::ln_param_t beta[TAAS_MAX_WIDTH], taas::var_t eps,
                       taas::data_t out[TAAS_MAX_WIDTH]);

#endif
