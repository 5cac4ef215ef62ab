// C-simulation entry points of the graph kernels (graph_kernels.h), called through ctypes.
//
// Values cross the boundary as doubles: a data_t value (at most 32 bits) is exact in a double,
// so chaining these calls with hls4ml blocks loses nothing; each entry converts its inputs to
// data_t (rounding, saturating) exactly as the hardware's input registers would.
// Return codes: 0 ok, -1 section larger than the compiled arrays, -2 width too large,
// -3 edge index out of range.
#include <vector>

#include "graph_kernels.h"

namespace {

using taas::data_t;
using taas::index_t;

std::vector<data_t> to_data(const double *values, long n) {
    std::vector<data_t> out(n);
    for (long i = 0; i < n; ++i) out[i] = data_t(values[i]);
    return out;
}

void from_data(const std::vector<data_t> &values, double *out) {
    for (size_t i = 0; i < values.size(); ++i) out[i] = values[i].to_double();
}

int check_edges(const long *src, const long *dst, int n_edges, int n_nodes,
                std::vector<index_t> &s, std::vector<index_t> &d) {
    s.resize(n_edges);
    d.resize(n_edges);
    for (int k = 0; k < n_edges; ++k) {
        if (src[k] < 0 || src[k] >= n_nodes || dst[k] < 0 || dst[k] >= n_nodes) return -3;
        s[k] = src[k];
        d[k] = dst[k];
    }
    return 0;
}

}  // namespace

extern "C" {

int taas_section_nodes() { return TAAS_SECTION_NODES; }
int taas_section_edges() { return TAAS_SECTION_EDGES; }
int taas_max_width() { return TAAS_MAX_WIDTH; }

// Edge-input rows [h[src], h[dst], extra] for n_edges edges of a graph of n_nodes nodes.
// The node table may be a whole event (the edge filter streams an event's edges past it in
// section-sized chunks); the edges of one call are at most one section.
int taas_gather_edge_inputs(const double *h, int n_nodes, int h_width, const double *extra,
                            int extra_width, const long *src, const long *dst, int n_edges,
                            double *out) {
    if (n_edges > TAAS_SECTION_EDGES) return -1;
    if (h_width > TAAS_MAX_WIDTH || extra_width > TAAS_MAX_WIDTH) return -2;
    std::vector<index_t> s, d;
    if (int rc = check_edges(src, dst, n_edges, n_nodes, s, d)) return rc;
    const std::vector<data_t> hq = to_data(h, long(n_nodes) * h_width);
    const std::vector<data_t> xq = to_data(extra, long(n_edges) * extra_width);
    std::vector<data_t> result(long(n_edges) * (2 * h_width + extra_width));
    taas::gather_edge_inputs<data_t>(hq.data(), h_width, xq.data(), extra_width, s.data(),
                                     d.data(), n_edges, result.data());
    from_data(result, out);
    return 0;
}

// Node-network input rows [h, sum_in, max_in, sum_out, max_out] of one section.
int taas_node_inputs(const double *h, int n_nodes, int h_width, const double *e, int e_width,
                     const long *src, const long *dst, int n_edges, double *out) {
    if (n_nodes > TAAS_SECTION_NODES || n_edges > TAAS_SECTION_EDGES) return -1;
    if (h_width > TAAS_MAX_WIDTH || e_width > TAAS_MAX_WIDTH) return -2;
    std::vector<index_t> s, d;
    if (int rc = check_edges(src, dst, n_edges, n_nodes, s, d)) return rc;
    const std::vector<data_t> hq = to_data(h, long(n_nodes) * h_width);
    const std::vector<data_t> eq = to_data(e, long(n_edges) * e_width);
    std::vector<data_t> result(long(n_nodes) * (h_width + 4 * e_width));
    taas::node_inputs<data_t>(hq.data(), n_nodes, h_width, eq.data(), e_width, s.data(),
                              d.data(), n_edges, result.data());
    from_data(result, out);
    return 0;
}

// out = saturate(a + b), n values.
int taas_residual_add(const double *a, const double *b, long n, double *out) {
    const std::vector<data_t> aq = to_data(a, n), bq = to_data(b, n);
    std::vector<data_t> result(n);
    taas::residual_add<data_t>(aq.data(), bq.data(), int(n), result.data());
    from_data(result, out);
    return 0;
}

// LayerNorm + ReLU of n_rows rows of `width` features (gamma/beta already on the weight grid);
// inputs in norm_in_t, outputs in data_t.
int taas_layernorm_relu(const double *in, long n_rows, int width, const double *gamma,
                        const double *beta, double eps, double *out) {
    if (width > TAAS_MAX_WIDTH) return -2;
    taas::ln_param_t g[TAAS_MAX_WIDTH], b[TAAS_MAX_WIDTH];
    for (int f = 0; f < width; ++f) {
        g[f] = gamma[f];
        b[f] = beta[f];
    }
    const taas::var_t eps_q = eps;
    taas::norm_in_t row_in[TAAS_MAX_WIDTH];
    data_t row_out[TAAS_MAX_WIDTH];
    for (long r = 0; r < n_rows; ++r) {
        for (int f = 0; f < width; ++f) row_in[f] = taas::norm_in_t(in[r * width + f]);
        taas::layernorm_relu<taas::norm_in_t, data_t>(row_in, width, g, b, eps_q, row_out);
        for (int f = 0; f < width; ++f) out[r * width + f] = row_out[f].to_double();
    }
    return 0;
}

// Quantize n values to data_t (what a block's input register does), for the host's checks.
int taas_quantize(const double *in, long n, double *out) {
    for (long i = 0; i < n; ++i) out[i] = data_t(in[i]).to_double();
    return 0;
}

}  // extern "C"
