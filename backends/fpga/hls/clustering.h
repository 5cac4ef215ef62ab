// Clustering of one module's fired cells as a streaming HLS kernel (taas FPGA front end).
//
// The kernel receives a module's cells sorted by (ch0, ch1), as the host stage sorts them, and
// emits a cluster label per cell plus one measurement per cluster: the charge-weighted centroid
// in local module coordinates (mm), its variance (weighted spread of the cell centres plus the
// pitch^2/12 of one cell), the extent in cells, the cell count and the summed charge. Labels
// number the clusters by first cell in sorted order, which is the CPU stage's measurement order.
//
// Every word has a fixed width (ap_ types) chosen for the ACTS Generic detector:
//   * channel indices < 2^CHANNEL_BITS - 1 along each axis (1440 is the largest there);
//   * at most MAX_CELLS cells per module: the module buffer lives in block RAM. A module with
//     more cells sets `overflow`, emits nothing and drains its input; the host refuses such a
//     module before it gets here (the largest module of a `medium` event has 579 cells);
//   * cell values in [-4, 4) with an LSB of 2^-24 (rounded, saturating): the simulated values
//     span 1e-6 .. 1.1, so even the smallest keeps ~5% relative precision and cells above 1e-4
//     better than 1e-3;
//   * sums are exact (wide enough accumulators, integer channel offsets from the cluster's first
//     cell), so the one-pass variance suffers no cancellation; the centroid carries 24 fractional
//     bits of a channel internally and local coordinates 24 fractional bits of a mm.
#ifndef TAAS_FPGA_CLUSTERING_H
#define TAAS_FPGA_CLUSTERING_H

#include "ap_fixed.h"
#include "ap_int.h"
#include "hls_stream.h"

namespace taas_fpga {

constexpr int CHANNEL_BITS = 12;
constexpr int MAX_CELLS = 4096;
constexpr int INDEX_BITS = 13;  // counts 0 .. 8191: a too-large module can still be reported
constexpr int KEY_BITS = 2 * CHANNEL_BITS + 2;  // signed (ch0, ch1) key with room for offsets

typedef ap_uint<CHANNEL_BITS> channel_t;
typedef ap_uint<INDEX_BITS> index_t;
typedef ap_int<KEY_BITS> cell_key_t;
typedef ap_fixed<27, 3, AP_RND_CONV, AP_SAT> charge_t;        // one cell's value
typedef ap_ufixed<26, 2> weight_t;                               // max(value, 0) or 1
typedef ap_ufixed<32, 4, AP_RND_CONV, AP_SAT> pitch_t;         // mm, LSB 2^-28
typedef ap_fixed<32, 8, AP_RND_CONV, AP_SAT> local_t;          // mm in [-128, 128), LSB 2^-24
typedef ap_ufixed<40, 14, AP_RND_CONV, AP_SAT> variance_t;     // mm^2, LSB 2^-26
typedef ap_fixed<40, 16, AP_RND_CONV, AP_SAT> charge_sum_t;    // summed values
typedef ap_uint<INDEX_BITS> extent_t;                            // cluster size in cells

// Exact per-cluster sums; offsets d are channel distances from the cluster's first cell.
typedef ap_ufixed<38, 14> weight_sum_t;    // sum w        <= 4096 * 4
typedef ap_fixed<51, 27> moment1_t;        // sum w d      |.| < 2^14 * 2^12
typedef ap_ufixed<62, 38> moment2_t;       // sum w d^2    < 2^14 * 2^24
typedef ap_int<26> count_moment1_t;        // sum d        (unit weights)
typedef ap_uint<38> count_moment2_t;       // sum d^2      (unit weights)
typedef ap_fixed<38, 14, AP_RND_CONV> centroid_t;      // channels from the first cell, 2^-24
typedef ap_ufixed<48, 24> second_moment_t;             // channels^2 from the first cell
typedef ap_ufixed<48, 24, AP_RND_CONV> channel_var_t;  // channels^2, 2^-24

struct cell_t {
    channel_t ch0;
    channel_t ch1;
    charge_t value;
};

// Per-module constants (a geometry ROM in hardware) and the cell count of this call.
struct module_t {
    index_t n_cells;
    pitch_t pitch_u;
    pitch_t pitch_v;
    local_t origin_u;  // local u of channel 0's centre: -max_hu + pitch_u / 2
    local_t origin_v;  // local v of channel 0's centre: -hv + pitch_v / 2
};

struct cluster_config_t {
    bool eight_connected;  // join corner neighbours (ACTS' and traccc's default)
    bool charge_weighted;  // weights max(value, 0); false: plain mean of the cell centres
};

struct cluster_t {
    local_t local_u;
    local_t local_v;
    variance_t var_u;
    variance_t var_v;
    extent_t size_u;
    extent_t size_v;
    index_t n_cells;
    charge_sum_t charge;
};

// The module buffer: per cell (key, channels, value, union-find parent, label) and per cluster
// slot (first cell, extent, exact moments, count, charge); block RAM in hardware.
struct module_buffer_t {
    cell_key_t key[MAX_CELLS];
    channel_t ch0[MAX_CELLS], ch1[MAX_CELLS];
    charge_t value[MAX_CELLS];
    index_t parent[MAX_CELLS], label[MAX_CELLS];
    channel_t first0[MAX_CELLS], first1[MAX_CELLS];
    channel_t lo0[MAX_CELLS], hi0[MAX_CELLS], lo1[MAX_CELLS], hi1[MAX_CELLS];
    weight_sum_t w_sum[MAX_CELLS];
    moment1_t w_d0[MAX_CELLS], w_d1[MAX_CELLS];
    moment2_t w_dd0[MAX_CELLS], w_dd1[MAX_CELLS];
    index_t count[MAX_CELLS];
    count_moment1_t d0_sum[MAX_CELLS], d1_sum[MAX_CELLS];
    count_moment2_t dd0_sum[MAX_CELLS], dd1_sum[MAX_CELLS];
    charge_sum_t charge[MAX_CELLS];
};

// Top function: one module per call (the host, or an upstream module router, streams modules
// one after the other). `labels` gets one word per input cell, `clusters` one per cluster.
void cluster_module(const module_t &module, const cluster_config_t &config,
                    hls::stream<cell_t> &cells, hls::stream<index_t> &labels,
                    hls::stream<cluster_t> &clusters, index_t &n_clusters, bool &overflow);

}  // namespace taas_fpga

#endif
