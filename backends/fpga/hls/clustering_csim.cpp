// C-simulation bridge of the clustering kernel: plain C arrays in, plain C arrays out.
//
// Not part of the synthesized design. It plays the host (or upstream firmware): quantizes each
// cell value and the module constants into their ap_ types, streams the modules one after the
// other through `cluster_module`, and converts the fixed-point results to double. Everything a
// call touches is local, so concurrent calls from several threads (ctypes releases the GIL) are
// safe.
#include <cmath>
#include <cstdint>

#include "clustering.h"

using namespace taas_fpga;

extern "C" {

// Capacity of the module buffer, so that the host can refuse big modules before calling.
int taas_clustering_max_cells() { return MAX_CELLS; }
int taas_clustering_channel_bits() { return CHANNEL_BITS; }
// Cell values the kernel's charge word holds without saturating: |value| < this.
double taas_clustering_value_limit() { return std::ldexp(1.0, charge_t::iwidth - 1); }

// Clusters `n_modules` modules whose cells are [module_start[m], module_start[m + 1]), each
// module's cells sorted by (ch0, ch1). `geometry` holds per module (pitch_u, pitch_v, origin_u,
// origin_v) in mm. Writes per cell its cluster's index counted over this call, per cluster a
// row (local_u, local_v, var_u, var_v, charge) of `out_f` and (module, size_u, size_v, n_cells)
// of `out_i`, and the cluster count. Returns 0, or 1 + the index of the first module whose
// cells do not fit the buffer (nothing after it is processed).
int64_t taas_cluster_modules(int64_t n_modules, const int64_t *module_start, const int32_t *ch0,
                             const int32_t *ch1, const float *value, const double *geometry,
                             int32_t eight_connected, int32_t charge_weighted, int64_t *label,
                             double *out_f, int32_t *out_i, int64_t *n_clusters) {
    hls::stream<cell_t> cells("cells");
    hls::stream<index_t> labels("labels");
    hls::stream<cluster_t> clusters("clusters");
    const cluster_config_t config = {eight_connected != 0, charge_weighted != 0};
    int64_t next_cluster = 0;
    *n_clusters = 0;
    for (int64_t m = 0; m < n_modules; ++m) {
        const int64_t begin = module_start[m], end = module_start[m + 1];
        const int64_t n = end - begin;
        if (n > MAX_CELLS) return m + 1;
        module_t module;
        module.n_cells = n;
        module.pitch_u = geometry[4 * m];
        module.pitch_v = geometry[4 * m + 1];
        module.origin_u = geometry[4 * m + 2];
        module.origin_v = geometry[4 * m + 3];
        for (int64_t i = begin; i < end; ++i) {
            cell_t c;
            c.ch0 = ch0[i];
            c.ch1 = ch1[i];
            c.value = value[i];
            cells.write(c);
        }
        index_t count;
        bool overflow;
        cluster_module(module, config, cells, labels, clusters, count, overflow);
        if (overflow) return m + 1;
        for (int64_t i = begin; i < end; ++i) label[i] = next_cluster + labels.read().to_int64();
        for (int k = 0; k < count.to_int(); ++k, ++next_cluster) {
            const cluster_t c = clusters.read();
            double *f = out_f + 5 * next_cluster;
            int32_t *o = out_i + 4 * next_cluster;
            f[0] = c.local_u.to_double();
            f[1] = c.local_v.to_double();
            f[2] = c.var_u.to_double();
            f[3] = c.var_v.to_double();
            f[4] = c.charge.to_double();
            o[0] = static_cast<int32_t>(m);
            o[1] = c.size_u.to_int();
            o[2] = c.size_v.to_int();
            o[3] = c.n_cells.to_int();
        }
    }
    *n_clusters = next_cluster;
    return 0;
}

}  // extern "C"
