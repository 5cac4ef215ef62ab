// Testbench of the GNN graph-kernel tops (graph_kernels_top.h) on a hand-made graph section.
//
// Expected outputs are computed here in plain double arithmetic from the definitions (gather
// rows, sum / max over the edges into and out of a node, saturating add, LayerNorm + ReLU),
// never by calling the kernels. The fixed-point types enter only through a double model of
// rounding to the nearest LSB (ties to even, as AP_RND_CONV) and saturation, with the LSBs and
// ranges taken from the TAAS_* width macros, so the testbench holds for any configuration the
// project is written for. Tolerances: half an LSB of data_t where the result is exact on the
// grid (gather, aggregation, residual), one LSB for LayerNorm (its inverse square root is an
// approximation, relative error ~2e-6). Returns 0 when every check passes (Vitis HLS C
// simulation / co-simulation convention) and prints each failed check.
//
// TAAS_TB_PERTURB_LSB (default 0) shifts one expected value of every kernel by that many LSB:
// compiled with it, the testbench must fail four times (the test suite checks that it can).
#include <cmath>
#include <cstdio>
#include <vector>

#include "graph_kernels_top.h"

#ifndef TAAS_TB_PERTURB_LSB
#define TAAS_TB_PERTURB_LSB 0
#endif

using taas::data_t;
using taas::index_t;

namespace {

int failures = 0;

// A signed fixed-point type of `width` bits, `integer` of them (sign included) before the point.
struct Grid {
    double lsb, low, high;
    Grid(int width, int integer)
        : lsb(std::ldexp(1.0, integer - width)), low(-std::ldexp(1.0, integer - 1)),
          high(std::ldexp(1.0, integer - 1) - std::ldexp(1.0, integer - width)) {}
    double saturate(double x) const { return x < low ? low : (x > high ? high : x); }
    // round to the nearest LSB, ties to even (std::nearbyint in the default rounding mode)
    double quantize(double x) const { return saturate(std::nearbyint(x / lsb) * lsb); }
};

const Grid DATA(TAAS_DATA_W, TAAS_DATA_I);
const Grid NORM_IN(TAAS_NORM_W, TAAS_NORM_I);
const double PERTURB = TAAS_TB_PERTURB_LSB * DATA.lsb;

void expect_near(double got, double want, double tolerance, const char *what, int row, int f) {
    if (!(std::fabs(got - want) <= tolerance)) {
        std::printf("FAIL: %s row %d feature %d: got %.9g, expected %.9g (tolerance %.3g)\n",
                    what, row, f, got, want, tolerance);
        ++failures;
    }
}

void expect_status(int got, int want, const char *what) {
    if (got != want) {
        std::printf("FAIL: %s: status %d, expected %d\n", what, got, want);
        ++failures;
    }
}

// Section tables at the compiled size (static: tens of MB at the default section size).
data_t node_table[GNN_NODE_TABLE];
data_t edge_table[GNN_EDGE_TABLE];
data_t edge_table_b[GNN_EDGE_TABLE];
data_t edge_result[GNN_EDGE_TABLE];
data_t gather_result[GNN_GATHER_TABLE];
data_t node_input_result[GNN_NODE_INPUT_TABLE];
index_t src_table[TAAS_SECTION_EDGES];
index_t dst_table[TAAS_SECTION_EDGES];

// A hand-made section: 6 nodes (node 3 has no incoming edge, node 5 no edge at all), 8 edges
// (one repeated, one self-loop) with node states of width 3 and edge states of width 2.
const int N_NODES = 6, N_EDGES = 8, H_W = 3, E_W = 2, X_W = 1;
const int SRC[N_EDGES] = {0, 0, 1, 3, 2, 1, 0, 4};
const int DST[N_EDGES] = {1, 2, 2, 2, 4, 4, 1, 4};

// Node and edge values in the data range, some off the LSB grid (rounded on input), some
// edge states negative (max over negatives is negative, not 0) and three messages into node 2
// of 0.45 x the range each, whose sum saturates.
double node_value(int i, int f) { return 0.5 * i - 0.75 * f + 0.3 * DATA.lsb * (i + f); }
double edge_value(int k, int f) {
    if (f == 0 && DST[k] == 2) return 0.45 * DATA.high;
    return (f == 1 ? -1.0 : 1.0) * (0.25 + 0.125 * k) + 0.6 * DATA.lsb;
}
double extra_value(int k) { return -0.5 * k + 0.4 * DATA.lsb; }

void load_section() {
    for (int i = 0; i < N_NODES; ++i)
        for (int f = 0; f < H_W; ++f) node_table[i * H_W + f] = node_value(i, f);
    for (int k = 0; k < N_EDGES; ++k) {
        src_table[k] = SRC[k];
        dst_table[k] = DST[k];
        for (int f = 0; f < E_W; ++f) edge_table[k * E_W + f] = edge_value(k, f);
        edge_table_b[k] = extra_value(k);  // the "extra" edge features, width X_W
    }
}

void check_gather() {
    const int row = 2 * H_W + X_W;
    expect_status(gnn_gather_edges(node_table, N_NODES, H_W, edge_table_b, X_W, src_table,
                                   dst_table, N_EDGES, gather_result), GNN_OK, "gather");
    for (int k = 0; k < N_EDGES; ++k) {
        for (int f = 0; f < H_W; ++f) {
            const double want_src = DATA.quantize(node_value(SRC[k], f)) +
                                    (k == 5 && f == 1 ? PERTURB : 0.0);
            expect_near(gather_result[k * row + f].to_double(), want_src, 0.5 * DATA.lsb,
                        "gather h[src]", k, f);
            expect_near(gather_result[k * row + H_W + f].to_double(),
                        DATA.quantize(node_value(DST[k], f)), 0.5 * DATA.lsb, "gather h[dst]",
                        k, f);
        }
        expect_near(gather_result[k * row + 2 * H_W].to_double(),
                    DATA.quantize(extra_value(k)), 0.5 * DATA.lsb, "gather extra", k, 0);
    }
}

// [h, sum_in, max_in, sum_out, max_out] of node i, straight from the definition.
std::vector<double> expected_node_inputs(int i, int n_edges, int e_w,
                                         double (*edge)(int, int), double (*node)(int, int),
                                         int h_w, const int *src, const int *dst) {
    std::vector<double> row(h_w + 4 * e_w, 0.0);
    for (int f = 0; f < h_w; ++f) row[f] = DATA.quantize(node(i, f));
    for (int side = 0; side < 2; ++side) {  // 0: incoming (dst == i), 1: outgoing (src == i)
        const int base = h_w + 2 * side * e_w;
        for (int f = 0; f < e_w; ++f) {
            double sum = 0.0, peak = 0.0;
            bool any = false;
            for (int k = 0; k < n_edges; ++k) {
                if ((side == 0 ? dst[k] : src[k]) != i) continue;
                const double m = DATA.quantize(edge(k, f));
                sum += m;
                peak = any ? std::fmax(peak, m) : m;
                any = true;
            }
            row[base + f] = DATA.saturate(sum);
            row[base + e_w + f] = peak;
        }
    }
    return row;
}

void check_aggregation() {
    const int row = H_W + 4 * E_W;
    expect_status(gnn_node_aggregate(node_table, N_NODES, H_W, edge_table, E_W, src_table,
                                     dst_table, N_EDGES, node_input_result), GNN_OK,
                  "aggregation");
    for (int i = 0; i < N_NODES; ++i) {
        std::vector<double> want = expected_node_inputs(i, N_EDGES, E_W, edge_value, node_value,
                                                        H_W, SRC, DST);
        if (i == 4) want[H_W + E_W] += PERTURB;  // max_in, feature 0
        for (int f = 0; f < row; ++f)
            expect_near(node_input_result[i * row + f].to_double(), want[f], 0.5 * DATA.lsb,
                        "aggregation", i, f);
    }
    // the hand-made cases the expectation above must contain, stated outright
    expect_near(node_input_result[2 * row + H_W].to_double(), DATA.high, 0.5 * DATA.lsb,
                "saturated sum into node 2", 2, 0);
    expect_near(node_input_result[5 * row + H_W].to_double(), 0.0, 0.0,
                "node 5 without edges: zero sum", 5, 0);
    expect_near(node_input_result[1 * row + H_W + 3].to_double(),
                DATA.quantize(edge_value(0, 1)), 0.5 * DATA.lsb,
                "max over two negative messages into node 1", 1, 1);
}

// The aggregation at the padding limit: a full section (every node, every edge slot used)
// with edge ends spread by a fixed pattern, one node feature and one edge feature.
double limit_node(int i, int) { return std::ldexp(double((i * 37) % 61) - 30.0, -3); }
double limit_edge(int k, int) { return std::ldexp(double((k * 53) % 97) - 48.0, -4); }
std::vector<int> limit_src, limit_dst;

void check_full_section() {
    const int n = TAAS_SECTION_NODES, m = TAAS_SECTION_EDGES;
    limit_src.resize(m);
    limit_dst.resize(m);
    for (int k = 0; k < m; ++k) {
        limit_src[k] = int((k * 7919L) % n);
        limit_dst[k] = int((k * 104729L + 11) % n);
        src_table[k] = limit_src[k];
        dst_table[k] = limit_dst[k];
        edge_table[k] = limit_edge(k, 0);
    }
    for (int i = 0; i < n; ++i) node_table[i] = limit_node(i, 0);
    expect_status(gnn_node_aggregate(node_table, n, 1, edge_table, 1, src_table, dst_table, m,
                                     node_input_result), GNN_OK, "full section");
    // the expectation per node needs the edges of that node: group them once
    std::vector<std::vector<int>> into(n), out_of(n);
    for (int k = 0; k < m; ++k) {
        into[limit_dst[k]].push_back(k);
        out_of[limit_src[k]].push_back(k);
    }
    for (int i = 0; i < n; ++i) {
        const std::vector<int> *sides[2] = {&into[i], &out_of[i]};
        double want[5] = {DATA.quantize(limit_node(i, 0)), 0, 0, 0, 0};
        for (int side = 0; side < 2; ++side) {
            double sum = 0.0, peak = 0.0;
            for (size_t j = 0; j < sides[side]->size(); ++j) {
                const double v = DATA.quantize(limit_edge((*sides[side])[j], 0));
                sum += v;
                peak = j == 0 ? v : std::fmax(peak, v);
            }
            want[1 + 2 * side] = DATA.saturate(sum);
            want[2 + 2 * side] = peak;
        }
        for (int f = 0; f < 5; ++f)
            expect_near(node_input_result[i * 5 + f].to_double(), want[f], 0.5 * DATA.lsb,
                        "full-section aggregation", i, f);
    }
    // gather at the limit: the last edge's rows
    expect_status(gnn_gather_edges(node_table, n, 1, edge_table, 1, src_table, dst_table, m,
                                   gather_result), GNN_OK, "full-section gather");
    const int last = m - 1;
    expect_near(gather_result[3 * last].to_double(), DATA.quantize(limit_node(limit_src[last], 0)),
                0.5 * DATA.lsb, "full-section gather h[src]", last, 0);
    expect_near(gather_result[3 * last + 1].to_double(),
                DATA.quantize(limit_node(limit_dst[last], 0)), 0.5 * DATA.lsb,
                "full-section gather h[dst]", last, 0);
    expect_near(gather_result[3 * last + 2].to_double(), DATA.quantize(limit_edge(last, 0)),
                0.5 * DATA.lsb, "full-section gather extra", last, 0);
}

void check_residual() {
    const int n = 7;
    // ordinary sums, both saturation limits, cancellation, values off the grid
    const double a[n] = {0.5, -1.25, 0.7 * DATA.high, 0.7 * DATA.low, 3.0, 0.3 * DATA.lsb, 2.0};
    const double b[n] = {0.25, 0.5, 0.6 * DATA.high, 0.6 * DATA.low, -3.0, 0.3 * DATA.lsb,
                         -0.5 - 0.2 * DATA.lsb};
    for (int i = 0; i < n; ++i) {
        edge_table[i] = a[i];
        edge_table_b[i] = b[i];
    }
    expect_status(gnn_residual_add(edge_table, edge_table_b, n, edge_result), GNN_OK,
                  "residual");
    for (int i = 0; i < n; ++i) {
        const double want = DATA.saturate(DATA.quantize(a[i]) + DATA.quantize(b[i])) +
                            (i == 0 ? PERTURB : 0.0);
        expect_near(edge_result[i].to_double(), want, 0.5 * DATA.lsb, "residual", i, 0);
    }
    expect_near(edge_result[2].to_double(), DATA.high, 0.0, "residual saturates high", 2, 0);
    expect_near(edge_result[3].to_double(), DATA.low, 0.0, "residual saturates low", 3, 0);
}

void check_layernorm() {
    const int width = 8;
    const double eps = 1e-5;
    const double gamma[width] = {1.0, 0.5, 1.5, -1.0, 2.0, 1.0, 0.75, 1.25};
    const double beta[width] = {0.0, 0.25, -0.125, 0.5, 0.0, -2.0, 0.1875, 0.0};
    const double rows[3][width] = {
        {0.3, -1.2, 2.5, 0.0, 1.1, -0.7, 0.9, -2.2},  // ordinary row
        {4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0},     // zero variance: output ReLU(beta)
        {0.01, 0.02, -0.01, 0.0, 0.015, -0.02, 0.005, 0.0},  // small spread: eps matters
    };
    taas::norm_in_t in[TAAS_MAX_WIDTH];
    taas::ln_param_t g[TAAS_MAX_WIDTH], bt[TAAS_MAX_WIDTH];
    data_t out[TAAS_MAX_WIDTH];
    for (int f = 0; f < width; ++f) {
        g[f] = gamma[f];
        bt[f] = beta[f];
    }
    for (int r = 0; r < 3; ++r) {
        double x[width], mean = 0.0, var = 0.0;
        for (int f = 0; f < width; ++f) {
            x[f] = NORM_IN.quantize(rows[r][f]);
            in[f] = rows[r][f];
            mean += x[f] / width;
        }
        for (int f = 0; f < width; ++f) var += (x[f] - mean) * (x[f] - mean) / width;
        expect_status(gnn_layernorm_relu(in, width, g, bt, eps, out), GNN_OK, "layernorm");
        for (int f = 0; f < width; ++f) {
            const double y = gamma[f] * (x[f] - mean) / std::sqrt(var + eps) + beta[f];
            const double want = DATA.quantize(std::fmax(y, 0.0)) +
                                (r == 0 && f == 2 ? PERTURB : 0.0);
            expect_near(out[f].to_double(), want, DATA.lsb, "layernorm+relu", r, f);
        }
    }
}

void check_refusals() {
    expect_status(gnn_node_aggregate(node_table, TAAS_SECTION_NODES + 1, 1, edge_table, 1,
                                     src_table, dst_table, 0, node_input_result),
                  GNN_SECTION_TOO_LARGE, "aggregation of too many nodes");
    expect_status(gnn_gather_edges(node_table, 4, 1, edge_table, 1, src_table, dst_table,
                                   TAAS_SECTION_EDGES + 1, gather_result),
                  GNN_SECTION_TOO_LARGE, "gather of too many edges");
    expect_status(gnn_gather_edges(node_table, 4, TAAS_MAX_WIDTH + 1, edge_table, 1, src_table,
                                   dst_table, 1, gather_result), GNN_BAD_WIDTH,
                  "gather of too wide a row");
    expect_status(gnn_residual_add(edge_table, edge_table_b, GNN_EDGE_TABLE + 1, edge_result),
                  GNN_SECTION_TOO_LARGE, "residual of too many values");
    taas::norm_in_t in[TAAS_MAX_WIDTH] = {};
    taas::ln_param_t g[TAAS_MAX_WIDTH] = {}, bt[TAAS_MAX_WIDTH] = {};
    data_t out[TAAS_MAX_WIDTH];
    expect_status(gnn_layernorm_relu(in, 0, g, bt, 1e-5, out), GNN_BAD_WIDTH,
                  "layernorm of an empty row");

    // an edge index equal to n_nodes is refused and nothing is written
    src_table[0] = 0;
    dst_table[0] = 1;
    src_table[1] = 2;
    dst_table[1] = 3;
    node_input_result[0] = 1.0;
    expect_status(gnn_node_aggregate(node_table, 3, 1, edge_table, 1, src_table, dst_table, 2,
                                     node_input_result), GNN_BAD_EDGE_INDEX,
                  "aggregation with an edge index outside the section");
    expect_near(node_input_result[0].to_double(), 1.0, 0.0, "refused call writes nothing", 0,
                0);
    expect_status(gnn_gather_edges(node_table, 3, 1, edge_table, 1, src_table, dst_table, 2,
                                   gather_result), GNN_BAD_EDGE_INDEX,
                  "gather with an edge index outside the section");
}

void check_empty_section() {
    // no edges: every node gets its state and zeros on both sides
    for (int i = 0; i < 2; ++i) node_table[i] = 1.5 * (i + 1);
    expect_status(gnn_node_aggregate(node_table, 2, 1, edge_table, 1, src_table, dst_table, 0,
                                     node_input_result), GNN_OK, "edge-less section");
    for (int i = 0; i < 2; ++i) {
        expect_near(node_input_result[i * 5].to_double(), 1.5 * (i + 1), 0.0,
                    "edge-less section: node state", i, 0);
        for (int f = 1; f < 5; ++f)
            expect_near(node_input_result[i * 5 + f].to_double(), 0.0, 0.0,
                        "edge-less section: empty aggregation", i, f);
    }
    expect_status(gnn_gather_edges(node_table, 0, 1, edge_table, 0, src_table, dst_table, 0,
                                   gather_result), GNN_OK, "empty gather");
}

}  // namespace

int main() {
    load_section();
    check_gather();
    check_aggregation();
    check_residual();
    check_layernorm();
    check_empty_section();
    check_refusals();
    check_full_section();
    if (failures == 0) {
        std::printf("testbench_graph_kernels: all checks passed (section %d nodes / %d edges, "
                    "data ap_fixed<%d,%d>)\n", TAAS_SECTION_NODES, TAAS_SECTION_EDGES,
                    TAAS_DATA_W, TAAS_DATA_I);
        return 0;
    }
    std::printf("testbench_graph_kernels: %d check(s) failed\n", failures);
    return 1;
}
