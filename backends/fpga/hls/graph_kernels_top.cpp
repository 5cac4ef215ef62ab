// Synthesizable tops of the GNN graph kernels: fixed-size ports around the kernels of
// graph_kernels.h (the arithmetic the C simulation of taas runs), with interface pragmas and
// the section checks a hardware block needs. Why four tops and these interfaces: see
// graph_kernels_top.h.
#include "graph_kernels_top.h"

using taas::data_t;
using taas::index_t;

// Interface pragmas written once per port kind; _Pragma lets a macro emit them.
#define TAAS_PRAGMA(text) _Pragma(#text)
#ifdef TAAS_VITIS_KERNEL
#define TAAS_TABLE_PORT(ARG) TAAS_PRAGMA(HLS INTERFACE mode=m_axi port=ARG bundle=gmem offset=slave)
#define TAAS_SCALAR_PORT(ARG) TAAS_PRAGMA(HLS INTERFACE mode=s_axilite port=ARG)
#define TAAS_CONTROL TAAS_PRAGMA(HLS INTERFACE mode=s_axilite port=return)
#define TAAS_ROW_PORT(ARG) TAAS_PRAGMA(HLS INTERFACE mode=s_axilite port=ARG)
#else
// true dual-port block RAM: two rows (h[src], h[dst]) or two values per clock
#define TAAS_TABLE_PORT(ARG) TAAS_PRAGMA(HLS INTERFACE mode=ap_memory port=ARG storage_type=ram_2p)
#define TAAS_SCALAR_PORT(ARG) TAAS_PRAGMA(HLS INTERFACE mode=ap_none port=ARG)
#define TAAS_CONTROL TAAS_PRAGMA(HLS INTERFACE mode=ap_ctrl_hs port=return)
// a LayerNorm row is a register array, as between hls4ml io_parallel layers
#define TAAS_ROW_PORT(ARG)                                           \
    TAAS_PRAGMA(HLS INTERFACE mode=ap_none port=ARG)                 \
    TAAS_PRAGMA(HLS ARRAY_PARTITION variable=ARG type=complete dim=1)
#endif

namespace {

int check_section(int n_nodes, int n_edges) {
    #pragma HLS INLINE
    const bool ok = n_nodes >= 0 && n_nodes <= TAAS_SECTION_NODES && n_edges >= 0 &&
                    n_edges <= TAAS_SECTION_EDGES;
    return ok ? GNN_OK : GNN_SECTION_TOO_LARGE;
}

bool width_ok(int width, int lowest) {
    #pragma HLS INLINE
    return width >= lowest && width <= TAAS_MAX_WIDTH;
}

// Every edge's two ends inside the section's n_nodes nodes (index_t is unsigned: no negatives).
int check_edge_indices(const index_t src[TAAS_SECTION_EDGES],
                       const index_t dst[TAAS_SECTION_EDGES], int n_edges, int n_nodes) {
    #pragma HLS INLINE
    bool ok = true;
CHECK_EDGES:
    for (int k = 0; k < TAAS_SECTION_EDGES; ++k) {
        #pragma HLS PIPELINE II=1
        if (k >= n_edges) break;
        ok = ok && src[k] < index_t(n_nodes) && dst[k] < index_t(n_nodes);
    }
    return ok ? GNN_OK : GNN_BAD_EDGE_INDEX;
}

}  // namespace

int gnn_gather_edges(const data_t h[GNN_NODE_TABLE], int n_nodes, int h_width,
                     const data_t extra[GNN_EDGE_TABLE], int extra_width,
                     const index_t src[TAAS_SECTION_EDGES], const index_t dst[TAAS_SECTION_EDGES],
                     int n_edges, data_t out[GNN_GATHER_TABLE]) {
    TAAS_CONTROL
    TAAS_TABLE_PORT(h)
    TAAS_TABLE_PORT(extra)
    TAAS_TABLE_PORT(src)
    TAAS_TABLE_PORT(dst)
    TAAS_TABLE_PORT(out)
    TAAS_SCALAR_PORT(n_nodes)
    TAAS_SCALAR_PORT(h_width)
    TAAS_SCALAR_PORT(extra_width)
    TAAS_SCALAR_PORT(n_edges)
    if (const int rc = check_section(n_nodes, n_edges)) return rc;
    if (!width_ok(h_width, 1) || !width_ok(extra_width, 0)) return GNN_BAD_WIDTH;
    if (const int rc = check_edge_indices(src, dst, n_edges, n_nodes)) return rc;
    taas::gather_edge_inputs<data_t>(h, h_width, extra, extra_width, src, dst, n_edges, out);
    return GNN_OK;
}

int gnn_node_aggregate(const data_t h[GNN_NODE_TABLE], int n_nodes, int h_width,
                       const data_t e[GNN_EDGE_TABLE], int e_width,
                       const index_t src[TAAS_SECTION_EDGES],
                       const index_t dst[TAAS_SECTION_EDGES], int n_edges,
                       data_t out[GNN_NODE_INPUT_TABLE]) {
    TAAS_CONTROL
    TAAS_TABLE_PORT(h)
    TAAS_TABLE_PORT(e)
    TAAS_TABLE_PORT(src)
    TAAS_TABLE_PORT(dst)
    TAAS_TABLE_PORT(out)
    TAAS_SCALAR_PORT(n_nodes)
    TAAS_SCALAR_PORT(h_width)
    TAAS_SCALAR_PORT(e_width)
    TAAS_SCALAR_PORT(n_edges)
    if (const int rc = check_section(n_nodes, n_edges)) return rc;
    if (!width_ok(h_width, 1) || !width_ok(e_width, 1)) return GNN_BAD_WIDTH;
    if (const int rc = check_edge_indices(src, dst, n_edges, n_nodes)) return rc;
    taas::node_inputs<data_t>(h, n_nodes, h_width, e, e_width, src, dst, n_edges, out);
    return GNN_OK;
}

int gnn_residual_add(const data_t a[GNN_EDGE_TABLE], const data_t b[GNN_EDGE_TABLE], int n,
                     data_t out[GNN_EDGE_TABLE]) {
    TAAS_CONTROL
    TAAS_TABLE_PORT(a)
    TAAS_TABLE_PORT(b)
    TAAS_TABLE_PORT(out)
    TAAS_SCALAR_PORT(n)
    if (n < 0 || n > GNN_EDGE_TABLE) return GNN_SECTION_TOO_LARGE;
    taas::residual_add<data_t>(a, b, n, out);
    return GNN_OK;
}

int gnn_layernorm_relu(const taas::norm_in_t in[TAAS_MAX_WIDTH], int width,
                       const taas::ln_param_t gamma[TAAS_MAX_WIDTH],
                       const taas::ln_param_t beta[TAAS_MAX_WIDTH], taas::var_t eps,
                       data_t out[TAAS_MAX_WIDTH]) {
    #pragma HLS PIPELINE II=1
    TAAS_CONTROL
    TAAS_ROW_PORT(in)
    TAAS_ROW_PORT(gamma)
    TAAS_ROW_PORT(beta)
    TAAS_ROW_PORT(out)
    TAAS_SCALAR_PORT(width)
    TAAS_SCALAR_PORT(eps)
    if (!width_ok(width, 1)) return GNN_BAD_WIDTH;
    taas::layernorm_relu<taas::norm_in_t, data_t>(in, width, gamma, beta, eps, out);
    return GNN_OK;
}
