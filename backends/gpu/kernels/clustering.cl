/* Sparse connected-component labelling of fired cells, and per-cluster moments.
 *
 * The host sorts the cells by a 64-bit key packing (module row, ch0, ch1) with CHANNEL_BITS bits
 * per channel (passed as -DCHANNEL_BITS), exactly as the CPU stage does. Then:
 *   link_neighbours  each cell finds its neighbours *before* it in sorted order by binary search
 *                    (same-column predecessor, 1 or 3 cells of the previous column);
 *   hook + compress  min-label union-find: roots are hooked onto the smaller root with atomic_min
 *                    and paths are compressed, until no edge joins two different roots. The root
 *                    of a component is then its smallest sorted index, i.e. its first cell, which
 *                    is the CPU stage's root and hence its measurement order;
 *   cluster_moments  one work item per cluster walks its cells in sorted order (the host gives
 *                    them cluster by cluster) and sums in the same order as numpy's bincount, so
 *                    float64 results are bit-identical to the CPU stage.
 * FP contraction is off: a fused multiply-add would round differently from numpy.
 */
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#pragma OPENCL FP_CONTRACT OFF

#define COLUMN ((long)1 << CHANNEL_BITS)
#define CHANNEL_MASK (COLUMN - 1)
#define MAX_NEIGHBOURS 4

/* First index in [begin, end) whose key is >= target (end if none). */
static int lower_bound(__global const long *key, int begin, int end, long target) {
    while (begin < end) {
        int mid = begin + (end - begin) / 2;
        if (key[mid] < target) begin = mid + 1;
        else end = mid;
    }
    return begin;
}

/* Up to MAX_NEIGHBOURS earlier cells touching cell i (-1 padded); parent[i] = i.
 * Duplicate cells (equal keys) are chained by the same-column rule, so linking to the first cell
 * of each key in the previous-column window joins the same components as linking to all. */
__kernel void link_neighbours(const int n, const int reach, __global const long *key,
                              __global int *neighbour, __global int *parent) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const long k = key[i];
    int slot = MAX_NEIGHBOURS * i;
    const int stop = slot + MAX_NEIGHBOURS;
    if (i > 0 && key[i - 1] >= k - 1) neighbour[slot++] = i - 1;
    const long lo = k - COLUMN - reach;
    int p = 0;
    for (long target = lo; target <= lo + 2 * reach; ++target) {
        p = lower_bound(key, p, i, target);
        if (p < i && key[p] == target) neighbour[slot++] = p;
    }
    while (slot < stop) neighbour[slot++] = -1;
    parent[i] = i;
}

static int find_root(volatile __global int *parent, int i) {
    int r = parent[i];
    for (;;) {
        const int next = parent[r];
        if (next == r) return r;
        r = next;
    }
}

/* Hook the larger of two different roots onto the smaller. parent[x] <= x always holds and only
 * decreases, so every iteration that sets *changed lowers some parent: the loop terminates. */
__kernel void hook(const int n, __global const int *neighbour, volatile __global int *parent,
                   __global int *changed) {
    const int i = get_global_id(0);
    if (i >= n) return;
    for (int s = MAX_NEIGHBOURS * i; s < MAX_NEIGHBOURS * (i + 1); ++s) {
        const int j = neighbour[s];
        if (j < 0) break;
        const int ri = find_root(parent, i);
        const int rj = find_root(parent, j);
        if (ri != rj) {
            atomic_min(&parent[max(ri, rj)], min(ri, rj));
            *changed = 1;
        }
    }
}

__kernel void compress(const int n, volatile __global int *parent) {
    const int i = get_global_id(0);
    if (i >= n) return;
    parent[i] = find_root(parent, i);
}

/* Per cluster k, over its cells members[offsets[k] .. offsets[k+1]) in sorted order:
 * module row, extents, cell count, charge, weighted centroid and variance in local coordinates.
 * geometry: (4, n_modules) rows max_hu, hv, pitch_u, pitch_v.
 * out_f: (5, n_clusters) local_u, local_v, var_u, var_v, charge.
 * out_i: (4, n_clusters) module row, size_u, size_v, n_cells. */
__kernel void cluster_moments(const int n_clusters, const int n_modules, const int charge_weighted,
                              __global const int *members, __global const int *offsets,
                              __global const long *key, __global const float *value,
                              __global const double *geometry, __global double *out_f,
                              __global int *out_i) {
    const int k = get_global_id(0);
    if (k >= n_clusters) return;
    const int begin = offsets[k], end = offsets[k + 1];

    double charge = 0.0, wsum = 0.0;
    long lo0 = CHANNEL_MASK, hi0 = 0, lo1 = CHANNEL_MASK, hi1 = 0;
    for (int c = begin; c < end; ++c) {
        const int m = members[c];
        const double v = value[m];
        charge += v;
        wsum += charge_weighted ? (v < 0.0 ? 0.0 : v) : 1.0;  /* numpy.maximum(v, 0) */
        const long ch0 = (key[m] >> CHANNEL_BITS) & CHANNEL_MASK, ch1 = key[m] & CHANNEL_MASK;
        lo0 = min(lo0, ch0); hi0 = max(hi0, ch0);
        lo1 = min(lo1, ch1); hi1 = max(hi1, ch1);
    }
    /* a cluster without positive weight falls back to equal weights */
    const int unit = !charge_weighted || wsum <= 0.0;
    if (unit) {
        wsum = 0.0;
        for (int c = begin; c < end; ++c) wsum += 1.0;
    }

    double s0 = 0.0, s1 = 0.0;
    for (int c = begin; c < end; ++c) {
        const int m = members[c];
        const double v = value[m];
        const double w = unit ? 1.0 : (v < 0.0 ? 0.0 : v);
        s0 += w * (double)((key[m] >> CHANNEL_BITS) & CHANNEL_MASK);
        s1 += w * (double)(key[m] & CHANNEL_MASK);
    }
    const double mean0 = s0 / wsum, mean1 = s1 / wsum;
    double q0 = 0.0, q1 = 0.0;
    for (int c = begin; c < end; ++c) {
        const int m = members[c];
        const double v = value[m];
        const double w = unit ? 1.0 : (v < 0.0 ? 0.0 : v);
        const double d0 = (double)((key[m] >> CHANNEL_BITS) & CHANNEL_MASK) - mean0;
        const double d1 = (double)(key[m] & CHANNEL_MASK) - mean1;
        q0 += w * d0 * d0;
        q1 += w * d1 * d1;
    }
    const double var0 = q0 / wsum, var1 = q1 / wsum;

    const int row = (int)(key[members[begin]] >> (2 * CHANNEL_BITS));
    const double max_hu = geometry[row], hv = geometry[n_modules + row];
    const double pitch_u = geometry[2 * n_modules + row], pitch_v = geometry[3 * n_modules + row];
    out_f[k] = -max_hu + (mean0 + 0.5) * pitch_u;
    out_f[n_clusters + k] = -hv + (mean1 + 0.5) * pitch_v;
    out_f[2 * n_clusters + k] = (var0 + 1.0 / 12.0) * (pitch_u * pitch_u);
    out_f[3 * n_clusters + k] = (var1 + 1.0 / 12.0) * (pitch_v * pitch_v);
    out_f[4 * n_clusters + k] = charge;
    out_i[k] = row;
    out_i[n_clusters + k] = (int)(hi0 - lo0 + 1);
    out_i[2 * n_clusters + k] = (int)(hi1 - lo1 + 1);
    out_i[3 * n_clusters + k] = end - begin;
}
