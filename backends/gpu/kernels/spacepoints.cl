/* Space points: local (u, v, 0) -> global (x, y, z), r, phi, eta, and the cluster-shape features
 * of taas.reco.cluster_features (definitions there; this is the same arithmetic per work item).
 * geometry: (15, n_modules) rows cx, cy, cz, R00 R01 R02 R10 R11 R12 R20 R21 R22 (columns of R
 *           are the module's u, v, w axes in the global frame), thickness, pitch_u, pitch_v.
 * out: (16, n) rows x, y, z, r, phi, eta, extent_u, extent_v, local_angle, local_eta, local_phi,
 *      gx, gy, gz, global_eta, global_phi. */
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#pragma OPENCL FP_CONTRACT OFF

#define N_OUT 16

/* Pseudorapidity (+-inf along the z axis, never NaN) and azimuth, as cluster_features.eta_phi. */
static void eta_phi(double x, double y, double z, double *eta, double *phi) {
    const double rho = hypot(x, y);
    *eta = rho > 0.0 ? asinh(z / rho) : copysign((double)INFINITY, z);
    *phi = atan2(y, x);
}

/* R @ (a, b, c) for the module's rotation, summed left to right like numpy's einsum. */
static double3 rotate(__global const double *g, int n_modules, int row, double a, double b,
                      double c) {
    double r[9];
    for (int e = 0; e < 9; ++e) r[e] = g[(3 + e) * n_modules + row];
    return (double3)(r[0] * a + r[1] * b + r[2] * c,
                     r[3] * a + r[4] * b + r[5] * c,
                     r[6] * a + r[7] * b + r[8] * c);
}

__kernel void spacepoints(const int n, const int n_modules, __global const int *rows,
                          __global const double *local_u, __global const double *local_v,
                          __global const int *size_u, __global const int *size_v,
                          __global const double *geometry, __global double *out) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const int row = rows[i];
    const double3 d = rotate(geometry, n_modules, row, local_u[i], local_v[i], 0.0);
    const double x = geometry[row] + d.x;
    const double y = geometry[n_modules + row] + d.y;
    const double z = geometry[2 * n_modules + row] + d.z;
    double eta, phi;
    eta_phi(x, y, z, &eta, &phi);

    const double thickness = geometry[12 * n_modules + row];
    const double extent_u = size_u[i] * geometry[13 * n_modules + row];
    const double extent_v = size_v[i] * geometry[14 * n_modules + row];
    double local_eta, local_phi, global_eta, global_phi;
    eta_phi(extent_u, extent_v, thickness, &local_eta, &local_phi);
    const double3 g = rotate(geometry, n_modules, row, extent_u, extent_v, thickness);
    eta_phi(g.x, g.y, g.z, &global_eta, &global_phi);

    const double result[N_OUT] = {x, y, z, hypot(x, y), phi, eta, extent_u, extent_v,
                                  atan2(extent_v, extent_u), local_eta, local_phi,
                                  g.x, g.y, g.z, global_eta, global_phi};
    for (int c = 0; c < N_OUT; ++c) out[c * n + i] = result[c];
}
