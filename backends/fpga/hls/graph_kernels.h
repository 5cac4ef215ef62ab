// Graph kernels of the interaction GNN on a fixed-size graph section, in ap_fixed arithmetic.
//
// The MLP blocks of the GNN are hls4ml models; what hls4ml cannot express is written here:
//   * gather_edge_inputs: [h[src], h[dst], extra] per edge, by integer edge index
//     (the edge encoder, the edge network, the classifier and the edge filter read this);
//   * node_inputs: [h, sum_in, max_in, sum_out, max_out] per node, the sum and max aggregation
//     of the edge states over incoming (by dst) and outgoing (by src) edges;
//   * residual_add: the saturating residual update of node and edge states;
//   * layernorm_relu: LayerNorm followed by ReLU (hls4ml 1.3's LayerNorm takes 1/sqrt(var)
//     from a table that only covers var in [1e-eps, 1] and saturates above: not faithful for
//     our activations, so the normalisation runs here, between hls4ml Linear layers).
//
// Section size: TAAS_SECTION_NODES nodes and TAAS_SECTION_EDGES edges are the array sizes of
// the hardware; a section carries its number of valid rows and the loops stop there (in the
// synthesized design the padding rows flow through with a valid flag low).
// Types (set at compile time from backends.fpga.config.FpgaConfig):
//   TAAS_DATA_W/I : data_t, every state and message (rounded, saturated);
//   TAAS_AGG_W/I  : agg_t, the sum-aggregation accumulator (guard bits on the integer side);
//   TAAS_NORM_W/I : norm_in_t, a LayerNorm's input (more fractional bits: the normalisation
//                   divides by the row's standard deviation and so scales rounding errors up).
// Sums in agg_t are exact (no rounding), so the aggregation does not depend on edge order.
#ifndef TAAS_GRAPH_KERNELS_H_
#define TAAS_GRAPH_KERNELS_H_

#include <cmath>

#include "ap_fixed.h"

#ifndef TAAS_DATA_W
#define TAAS_DATA_W 18
#define TAAS_DATA_I 8
#endif
#ifndef TAAS_AGG_W
#define TAAS_AGG_W (TAAS_DATA_W + 4)
#define TAAS_AGG_I (TAAS_DATA_I + 4)
#endif
#ifndef TAAS_NORM_W
#define TAAS_NORM_W 24
#define TAAS_NORM_I 6
#endif
#ifndef TAAS_SECTION_NODES
#define TAAS_SECTION_NODES 4096
#endif
#ifndef TAAS_SECTION_EDGES
#define TAAS_SECTION_EDGES 16384
#endif
//! Widest feature vector a kernel handles (node state, edge state, LayerNorm width).
#define TAAS_MAX_WIDTH 128

// The aggregation buffers are on-chip memories of the kernel (static). In the C simulation each
// thread emulating a section gets its own copy.
#ifdef __SYNTHESIS__
#define TAAS_SECTION_MEMORY static
#else
#define TAAS_SECTION_MEMORY static thread_local
#endif

namespace taas {

typedef ap_fixed<TAAS_DATA_W, TAAS_DATA_I, AP_RND_CONV, AP_SAT> data_t;
typedef ap_fixed<TAAS_AGG_W, TAAS_AGG_I, AP_RND_CONV, AP_SAT> agg_t;
typedef ap_fixed<TAAS_NORM_W, TAAS_NORM_I, AP_RND_CONV, AP_SAT> norm_in_t;
typedef ap_uint<24> index_t;
//! LayerNorm scale and offset: quantized to the weight precision on the host, held exactly.
typedef ap_fixed<32, 10, AP_RND_CONV, AP_SAT> ln_param_t;

// ---------------------------------------------------------------------------------------------
// gather: out[k] = [h[src[k]], h[dst[k]], extra[k]]
template <class T>
void gather_edge_inputs(const T *h, int h_width, const T *extra, int extra_width,
                        const index_t *src, const index_t *dst, int n_edges, T *out) {
    const int row = 2 * h_width + extra_width;
GATHER_EDGES:
    for (int k = 0; k < TAAS_SECTION_EDGES; ++k) {
        #pragma HLS PIPELINE II=1
        if (k >= n_edges) break;
        const int a = src[k], b = dst[k];
    GATHER_FEATURES:
        for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
            #pragma HLS UNROLL
            if (f >= h_width) break;
            out[k * row + f] = h[a * h_width + f];
            out[k * row + h_width + f] = h[b * h_width + f];
        }
    GATHER_EXTRA:
        for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
            #pragma HLS UNROLL
            if (f >= extra_width) break;
            out[k * row + 2 * h_width + f] = extra[k * extra_width + f];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// aggregation: out[i] = [h[i], sum_{dst=i} e, max_{dst=i} e, sum_{src=i} e, max_{src=i} e];
// a node without incoming (outgoing) edges gets zeros for that side, as torch's index_add /
// scatter_reduce(include_self=False) on zero buffers.
template <class T>
void node_inputs(const T *h, int n_nodes, int h_width, const T *e, int e_width,
                 const index_t *src, const index_t *dst, int n_edges, T *out) {
    TAAS_SECTION_MEMORY agg_t sums[2][TAAS_SECTION_NODES][TAAS_MAX_WIDTH];
    TAAS_SECTION_MEMORY T peaks[2][TAAS_SECTION_NODES][TAAS_MAX_WIDTH];
    TAAS_SECTION_MEMORY bool seen[2][TAAS_SECTION_NODES];
    #pragma HLS ARRAY_PARTITION variable=sums complete dim=3
    #pragma HLS ARRAY_PARTITION variable=peaks complete dim=3
CLEAR_NODES:
    for (int i = 0; i < TAAS_SECTION_NODES; ++i) {
        #pragma HLS PIPELINE II=1
        if (i >= n_nodes) break;
        for (int side = 0; side < 2; ++side) {
            seen[side][i] = false;
            for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
                #pragma HLS UNROLL
                if (f >= e_width) break;
                sums[side][i][f] = 0;
                peaks[side][i][f] = 0;
            }
        }
    }
SCATTER_EDGES:
    for (int k = 0; k < TAAS_SECTION_EDGES; ++k) {
        // read-modify-write of one node row per side: II=2 covers the memory dependency
        #pragma HLS PIPELINE II=2
        if (k >= n_edges) break;
        const int target[2] = {int(dst[k]), int(src[k])};
        for (int side = 0; side < 2; ++side) {
            const int i = target[side];
            const bool first = !seen[side][i];
            for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
                #pragma HLS UNROLL
                if (f >= e_width) break;
                const T m = e[k * e_width + f];
                sums[side][i][f] += agg_t(m);
                if (first || m > peaks[side][i][f]) peaks[side][i][f] = m;
            }
            seen[side][i] = true;
        }
    }
    const int row = h_width + 4 * e_width;
WRITE_NODES:
    for (int i = 0; i < TAAS_SECTION_NODES; ++i) {
        #pragma HLS PIPELINE II=1
        if (i >= n_nodes) break;
        for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
            #pragma HLS UNROLL
            if (f >= h_width) break;
            out[i * row + f] = h[i * h_width + f];
        }
        for (int side = 0; side < 2; ++side) {
            const int base = i * row + h_width + 2 * side * e_width;
            for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
                #pragma HLS UNROLL
                if (f >= e_width) break;
                out[base + f] = T(sums[side][i][f]);  // saturating, rounding conversion
                out[base + e_width + f] = peaks[side][i][f];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// residual update: out = saturate(a + b), the sum computed exactly first
template <class T> void residual_add(const T *a, const T *b, int n, T *out) {
RESIDUAL:
    for (int i = 0; i < n; ++i) {
        #pragma HLS PIPELINE II=1
        out[i] = T(agg_t(a[i]) + agg_t(b[i]));
    }
}

// ---------------------------------------------------------------------------------------------
// 1/sqrt(v) for v > 0: normalise v = m 4^-s with m in [1/4, 1), a 1024-entry table of
// 1/sqrt(m) on m's leading bits, one Newton step y <- y (3 - m y^2) / 2 (relative error of the
// table ~1e-3, after the step ~2e-6), then scale back by 2^s.
typedef ap_ufixed<72, 32> var_t;
typedef ap_ufixed<28, 2> mant_t;  // m in [1/4, 1) and 1/sqrt(m) in (1, 2]

struct InvSqrtTable {
    mant_t value[1024];
    InvSqrtTable() {
        for (int k = 0; k < 1024; ++k) value[k] = mant_t(1.0 / std::sqrt((k + 0.5) / 1024.0));
    }
};

inline var_t inv_sqrt(var_t v) {
    static const InvSqrtTable table;  // a ROM in hardware; thread-safe static init in C sim
    int shift = 0;  // v * 4^shift = m
    var_t m = v;
NORMALISE_DOWN:
    for (int i = 0; i < 16; ++i) {
        #pragma HLS UNROLL
        if (m >= var_t(1.0)) { m >>= 2; shift -= 1; }
    }
NORMALISE_UP:
    for (int i = 0; i < 20; ++i) {
        #pragma HLS UNROLL
        if (m < var_t(0.25)) { m <<= 2; shift += 1; }
    }
    const mant_t mm = mant_t(m);
    const int index = (mm * 1024).to_int();
    mant_t y = table.value[index < 1024 ? index : 1023];
    const ap_ufixed<40, 4> three_minus = ap_ufixed<40, 4>(3.0) - ap_ufixed<40, 4>(mm * y * y);
    y = mant_t((y * three_minus) >> 1);
    var_t out = var_t(y);
    if (shift > 0) out <<= shift; else out >>= -shift;
    return out;
}

// LayerNorm over `width` features then ReLU: out = max(0, gamma (x - mean) / sqrt(var + eps)
// + beta), with exact sums, the mean and variance in wide types, the result rounded to T.
template <class T_IN, class T_OUT>
void layernorm_relu(const T_IN *in, int width, const ln_param_t *gamma, const ln_param_t *beta,
                    var_t eps, T_OUT *out) {
    typedef ap_fixed<TAAS_NORM_W + 10, TAAS_NORM_I + 10> sum_t;
    typedef ap_fixed<TAAS_NORM_W + 16, TAAS_NORM_I + 1> diff_t;
    typedef ap_fixed<40, 8, AP_RND_CONV, AP_SAT> norm_t;
    diff_t diff[TAAS_MAX_WIDTH];
    #pragma HLS ARRAY_PARTITION variable=diff complete
    sum_t sum = 0;
LN_SUM:
    for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
        #pragma HLS UNROLL
        if (f >= width) break;
        sum += in[f];
    }
    // 1/width as a constant of 24 fractional bits; exact for the power-of-two widths we use
    const ap_ufixed<26, 2> inv_width = 1.0 / width;
    const diff_t mean = diff_t(sum * inv_width);
    var_t square_sum = 0;
LN_VARIANCE:
    for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
        #pragma HLS UNROLL
        if (f >= width) break;
        diff[f] = diff_t(in[f]) - mean;
        square_sum += var_t(diff[f] * diff[f]);
    }
    const var_t inv_std = inv_sqrt(var_t(square_sum * inv_width) + eps);
LN_SCALE:
    for (int f = 0; f < TAAS_MAX_WIDTH; ++f) {
        #pragma HLS UNROLL
        if (f >= width) break;
        const norm_t normalised = norm_t(diff[f] * inv_std);
        const norm_t y = norm_t(normalised * gamma[f]) + norm_t(beta[f]);
        out[f] = y > 0 ? T_OUT(y) : T_OUT(0);
    }
}

}  // namespace taas

#endif
