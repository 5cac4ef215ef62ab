// Testbench of cluster_module: hand-made cells with outputs worked out by hand.
// Returns 0 when every check passes (Vitis HLS C simulation / co-simulation convention).
#include <cmath>
#include <cstdio>

#include "clustering.h"

using namespace taas_fpga;

static int failures = 0;

static void expect(bool ok, const char *what) {
    if (!ok) {
        std::printf("FAIL: %s\n", what);
        ++failures;
    }
}

static bool near(double got, double want, double tolerance = 1e-6) {
    return std::fabs(got - want) <= tolerance;
}

// A 40 x 30 module of 0.05 mm pitch: channel 0's centre sits at (-0.975, -0.725) mm.
static module_t toy_module(int n_cells) {
    module_t m;
    m.n_cells = n_cells;
    m.pitch_u = 0.05;
    m.pitch_v = 0.05;
    m.origin_u = -0.975;
    m.origin_v = -0.725;
    return m;
}

// Cells sorted by (ch0, ch1): a vertical pair (values 1, 3), a diagonal pair (0.5, 0.5) and a
// single cell (0.25).
static const int N = 5;
static const int CH0[N] = {3, 3, 10, 11, 20};
static const int CH1[N] = {3, 4, 10, 11, 0};
static const double VALUE[N] = {1.0, 3.0, 0.5, 0.5, 0.25};

static void run(bool eight, index_t *labels_out, cluster_t *clusters_out, int &n_clusters,
                bool &overflow, int n_cells = N) {
    hls::stream<cell_t> cells("cells");
    hls::stream<index_t> labels("labels");
    hls::stream<cluster_t> clusters("clusters");
    for (int i = 0; i < n_cells; ++i) {
        cell_t c;
        c.ch0 = i < N ? CH0[i] : i / 30;
        c.ch1 = i < N ? CH1[i] : i % 30;
        c.value = i < N ? VALUE[i] : 1.0;
        cells.write(c);
    }
    index_t count;
    const cluster_config_t config = {eight, true};
    cluster_module(toy_module(n_cells), config, cells, labels, clusters, count, overflow);
    n_clusters = count.to_int();
    for (int i = 0; !overflow && i < n_cells; ++i) labels_out[i] = labels.read();
    for (int k = 0; k < n_clusters; ++k) clusters_out[k] = clusters.read();
}

int main() {
    index_t labels[N];
    cluster_t clusters[N];
    int n_clusters;
    bool overflow;

    // 8-connectivity: the diagonal pair is one cluster -> 3 clusters, labelled by first cell
    run(true, labels, clusters, n_clusters, overflow);
    expect(!overflow && n_clusters == 3, "8-connected: 3 clusters");
    const int want8[N] = {0, 0, 1, 1, 2};
    for (int i = 0; i < N; ++i) expect(labels[i] == want8[i], "8-connected labels");
    const cluster_t &a = clusters[0];  // ch1 mean 3.75: v variance 3/16 + 1/12 cells^2
    expect(near(a.local_u.to_double(), -0.825), "pair: local_u");
    expect(near(a.local_v.to_double(), -0.5375), "pair: local_v");
    expect(near(a.var_u.to_double(), 0.0025 / 12), "pair: var_u");
    expect(near(a.var_v.to_double(), 0.0025 * (3.0 / 16 + 1.0 / 12)), "pair: var_v");
    expect(a.size_u == 1 && a.size_v == 2 && a.n_cells == 2, "pair: sizes");
    expect(near(a.charge.to_double(), 4.0), "pair: charge");
    const cluster_t &b = clusters[1];  // centre of (10, 10) and (11, 11)
    expect(near(b.local_u.to_double(), -0.45) && near(b.local_v.to_double(), -0.2),
           "diagonal: centroid");
    expect(near(b.var_u.to_double(), 0.0025 * (0.25 + 1.0 / 12)), "diagonal: var_u");
    expect(b.size_u == 2 && b.size_v == 2, "diagonal: sizes");
    const cluster_t &c = clusters[2];
    expect(near(c.local_u.to_double(), 0.025) && near(c.local_v.to_double(), -0.725),
           "single: centroid");
    expect(c.n_cells == 1 && near(c.charge.to_double(), 0.25), "single: count and charge");

    // 4-connectivity: the diagonal pair splits -> 4 clusters
    run(false, labels, clusters, n_clusters, overflow);
    expect(!overflow && n_clusters == 4, "4-connected: 4 clusters");
    const int want4[N] = {0, 0, 1, 2, 3};
    for (int i = 0; i < N; ++i) expect(labels[i] == want4[i], "4-connected labels");

    // one cell more than the module buffer holds: flagged, nothing emitted, input drained
    static index_t big_labels[MAX_CELLS + 1];
    static cluster_t big_clusters[MAX_CELLS + 1];
    run(true, big_labels, big_clusters, n_clusters, overflow, MAX_CELLS + 1);
    expect(overflow && n_clusters == 0, "overfull module is flagged");

    if (failures == 0) std::printf("testbench_clustering: all checks passed\n");
    return failures == 0 ? 0 : 1;
}
