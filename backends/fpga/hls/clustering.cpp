// Connected-component clustering of one module and the cluster moments (see clustering.h).
//
// Same algorithm as the CPU stage (one sweep over the sorted cells; each cell looks back at its
// same-column predecessor and at most three cells of the previous column through a window
// pointer that only moves forward; union-find whose root is the cluster's first cell), here on
// a module-sized block-RAM buffer so that it maps onto an FPGA.
#include "clustering.h"

namespace taas_fpga {

static const cell_key_t COLUMN = cell_key_t(1) << CHANNEL_BITS;

// Root of i's tree; compresses the path. parent[x] <= x always: a root is its first cell.
static index_t find_root(index_t parent[MAX_CELLS], index_t i) {
    index_t root = i;
FIND:
    while (parent[root] != root) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 8
        root = parent[root];
    }
COMPRESS:
    while (parent[i] != root) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 8
        const index_t next = parent[i];
        parent[i] = root;
        i = next;
    }
    return root;
}

static void join(index_t parent[MAX_CELLS], index_t a, index_t b) {
    const index_t ra = find_root(parent, a);
    const index_t rb = find_root(parent, b);
    if (ra < rb) parent[rb] = ra;
    else if (rb < ra) parent[ra] = rb;
}

void cluster_module(const module_t &module, const cluster_config_t &config,
                    hls::stream<cell_t> &cells, hls::stream<index_t> &labels,
                    hls::stream<cluster_t> &clusters, index_t &n_clusters, bool &overflow) {
#pragma HLS INTERFACE axis port = cells
#pragma HLS INTERFACE axis port = labels
#pragma HLS INTERFACE axis port = clusters
#pragma HLS INTERFACE s_axilite port = module
#pragma HLS INTERFACE s_axilite port = config
#pragma HLS INTERFACE s_axilite port = n_clusters
#pragma HLS INTERFACE s_axilite port = overflow
#pragma HLS INTERFACE s_axilite port = return
    const index_t n = module.n_cells;
    overflow = n > MAX_CELLS;
    n_clusters = 0;
    if (overflow) {
    DRAIN:
        for (index_t i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
            cells.read();
        }
        return;
    }

    // --- buffer the module (block RAM) ---------------------------------------------------------
#ifdef __SYNTHESIS__
    module_buffer_t buffer;
#else
    // C simulation: one buffer per thread, constructed once. Constructing ~20 arrays of 4096
    // ap_ words per module call would dominate the simulation time; every entry the kernel
    // reads was written earlier in the same call, so reuse changes no result.
    static thread_local module_buffer_t buffer;
#endif
    cell_key_t *key = buffer.key;
    channel_t *ch0 = buffer.ch0, *ch1 = buffer.ch1;
    charge_t *value = buffer.value;
    index_t *parent = buffer.parent, *label = buffer.label;
READ:
    for (index_t i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
        const cell_t c = cells.read();
        ch0[i] = c.ch0;
        ch1[i] = c.ch1;
        value[i] = c.value;
        key[i] = (cell_key_t(c.ch0) << CHANNEL_BITS) | cell_key_t(c.ch1);
        parent[i] = i;
    }

    // --- link each cell to its earlier neighbours --------------------------------------------
    const cell_key_t reach = config.eight_connected ? 1 : 0;
    index_t p = 0;  // first cell at or after the previous-column window; only moves forward
LINK:
    for (index_t i = 0; i < n; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
        const cell_key_t k = key[i];
        if (i > 0 && key[i - 1] >= k - 1) join(parent, i - 1, i);  // same column (or duplicate)
        const cell_key_t lo = k - COLUMN - reach;
    WINDOW_START:
        while (p < i && key[p] < lo) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 4
            ++p;
        }
    WINDOW:
        for (index_t q = p; q < i && key[q] <= lo + 2 * reach; ++q) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 3
            join(parent, q, i);
        }
    }

    // --- label by first cell and accumulate exact moments ------------------------------------
    channel_t *first0 = buffer.first0, *first1 = buffer.first1;
    channel_t *lo0 = buffer.lo0, *hi0 = buffer.hi0, *lo1 = buffer.lo1, *hi1 = buffer.hi1;
    weight_sum_t *w_sum = buffer.w_sum;
    moment1_t *w_d0 = buffer.w_d0, *w_d1 = buffer.w_d1;
    moment2_t *w_dd0 = buffer.w_dd0, *w_dd1 = buffer.w_dd1;
    index_t *count = buffer.count;
    count_moment1_t *d0_sum = buffer.d0_sum, *d1_sum = buffer.d1_sum;
    count_moment2_t *dd0_sum = buffer.dd0_sum, *dd1_sum = buffer.dd1_sum;
    charge_sum_t *charge = buffer.charge;
    index_t n_labels = 0;
ACCUMULATE:
    for (index_t i = 0; i < n; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
        const index_t root = find_root(parent, i);
        index_t l;
        if (root == i) {  // a new cluster, opened by its first cell
            l = n_labels++;
            first0[l] = lo0[l] = hi0[l] = ch0[i];
            first1[l] = lo1[l] = hi1[l] = ch1[i];
            w_sum[l] = 0;
            w_d0[l] = w_d1[l] = 0;
            w_dd0[l] = w_dd1[l] = 0;
            count[l] = 0;
            d0_sum[l] = d1_sum[l] = 0;
            dd0_sum[l] = dd1_sum[l] = 0;
            charge[l] = 0;
        } else {
            l = label[root];  // root < i: already labelled
        }
        label[i] = l;
        labels.write(l);

        const ap_int<CHANNEL_BITS + 1> d0 = ap_int<CHANNEL_BITS + 1>(ch0[i]) - first0[l];
        const ap_int<CHANNEL_BITS + 1> d1 = ap_int<CHANNEL_BITS + 1>(ch1[i]) - first1[l];
        const weight_t w = !config.charge_weighted ? weight_t(1)
                           : value[i] > 0          ? weight_t(value[i])
                                                   : weight_t(0);
        w_sum[l] += w;
        w_d0[l] += w * d0;
        w_d1[l] += w * d1;
        w_dd0[l] += w * (d0 * d0);
        w_dd1[l] += w * (d1 * d1);
        count[l] += 1;
        d0_sum[l] += d0;
        d1_sum[l] += d1;
        dd0_sum[l] += d0 * d0;
        dd1_sum[l] += d1 * d1;
        charge[l] += value[i];
        if (ch0[i] > hi0[l]) hi0[l] = ch0[i];  // ch0 never decreases: lo0 is the first cell's
        if (ch1[i] < lo1[l]) lo1[l] = ch1[i];
        if (ch1[i] > hi1[l]) hi1[l] = ch1[i];
    }

    // --- one measurement per cluster ---------------------------------------------------------
    const ap_ufixed<40, 8> pitch_uu = module.pitch_u * module.pitch_u;
    const ap_ufixed<40, 8> pitch_vv = module.pitch_v * module.pitch_v;
    const ap_ufixed<24, 0> one_twelfth = 1.0 / 12.0;
MOMENTS:
    for (index_t l = 0; l < n_labels; ++l) {
#pragma HLS PIPELINE
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
        // a cluster without positive charge falls back to equal weights (the unit-weight sums)
        const bool unit = !(w_sum[l] > 0);
        const weight_sum_t s0 = unit ? weight_sum_t(count[l]) : w_sum[l];
        const centroid_t mean0 = (unit ? moment1_t(d0_sum[l]) : w_d0[l]) / s0;
        const centroid_t mean1 = (unit ? moment1_t(d1_sum[l]) : w_d1[l]) / s0;
        const second_moment_t m2_0 = (unit ? moment2_t(dd0_sum[l]) : w_dd0[l]) / s0;
        const second_moment_t m2_1 = (unit ? moment2_t(dd1_sum[l]) : w_dd1[l]) / s0;
        const ap_fixed<64, 28> v0 = m2_0 - mean0 * mean0;
        const ap_fixed<64, 28> v1 = m2_1 - mean1 * mean1;
        const channel_var_t var0 = v0 > 0 ? channel_var_t(v0) : channel_var_t(0);
        const channel_var_t var1 = v1 > 0 ? channel_var_t(v1) : channel_var_t(0);
        cluster_t out;
        out.local_u = module.origin_u + (first0[l] + mean0) * module.pitch_u;
        out.local_v = module.origin_v + (first1[l] + mean1) * module.pitch_v;
        out.var_u = (var0 + one_twelfth) * pitch_uu;
        out.var_v = (var1 + one_twelfth) * pitch_vv;
        out.size_u = extent_t(hi0[l] - lo0[l]) + 1;
        out.size_v = extent_t(hi1[l] - lo1[l]) + 1;
        out.n_cells = count[l];
        out.charge = charge[l];
        clusters.write(out);
    }
    n_clusters = n_labels;
}

}  // namespace taas_fpga
