// C-simulation bridge of the space-point kernel: plain C arrays in, plain C arrays out.
//
// Not part of the synthesized design. `taas_spacepoints_geometry` quantizes the module table
// once into the kernel's geometry words (what would be loaded into the FPGA's geometry memory)
// and returns an opaque handle; `taas_spacepoints_run` streams measurements through the kernel;
// `taas_spacepoints_free` releases the table. A run only reads the table, so concurrent runs
// on one handle from several threads (ctypes releases the GIL) are safe.
#include <cmath>
#include <cstdint>
#include <limits>

#include "spacepoints.h"

using namespace taas_fpga;

//! Output columns of `taas_spacepoints_run`, in order.
static const int N_OUTPUTS = 16;

extern "C" {

int taas_spacepoints_max_modules() { return MAX_MODULES; }

// `table` holds per module 15 doubles: centre (3), rotation row-major (9), thickness, pitch_u,
// pitch_v. Returns nullptr when there are more modules than the kernel's table holds.
void *taas_spacepoints_geometry(int64_t n_modules, const double *table) {
    if (n_modules > MAX_MODULES) return nullptr;
    module_geometry_t *geometry = new module_geometry_t[MAX_MODULES];
    for (int64_t m = 0; m < n_modules; ++m) {
        const double *t = table + 15 * m;
        for (int k = 0; k < 3; ++k) geometry[m].centre[k] = t[k];
        for (int k = 0; k < 9; ++k) geometry[m].rotation[k] = t[3 + k];
        geometry[m].thickness = t[12];
        geometry[m].pitch_u = t[13];
        geometry[m].pitch_v = t[14];
    }
    return geometry;
}

void taas_spacepoints_free(void *geometry) { delete[] static_cast<module_geometry_t *>(geometry); }

// Space points of `n` measurements on module rows `row`; writes 16 doubles per point into `out`:
// x, y, z, r, phi, eta, extent_u, extent_v, local_angle, local_eta, local_phi, gx, gy, gz,
// global_eta, global_phi. A saturated eta of a vector with zero transverse length is written as
// +-inf, the CPU stage's convention.
void taas_spacepoints_run(const void *geometry, int64_t n, const int32_t *row,
                          const double *local_u, const double *local_v, const int32_t *size_u,
                          const int32_t *size_v, double *out) {
    const module_geometry_t *table = static_cast<const module_geometry_t *>(geometry);
    hls::stream<measurement_t> measurements("measurements");
    hls::stream<spacepoint_t> points("points");
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < n; ++k) {
        measurement_t m;
        m.row = row[k];
        m.local_u = local_u[k];
        m.local_v = local_v[k];
        m.size_u = size_u[k];
        m.size_v = size_v[k];
        measurements.write(m);
        spacepoints(table, measurements, points, 1);
        const spacepoint_t p = points.read();
        const bool on_axis = p.x == 0 && p.y == 0;
        const bool shape_on_axis = p.gx == 0 && p.gy == 0;
        double *o = out + N_OUTPUTS * k;
        o[0] = p.x.to_double();
        o[1] = p.y.to_double();
        o[2] = p.z.to_double();
        o[3] = p.r.to_double();
        o[4] = p.phi.to_double();
        o[5] = on_axis ? std::copysign(inf, p.z.to_double()) : p.eta.to_double();
        o[6] = p.extent_u.to_double();
        o[7] = p.extent_v.to_double();
        o[8] = p.local_angle.to_double();
        o[9] = p.local_eta.to_double();
        o[10] = p.local_phi.to_double();
        o[11] = p.gx.to_double();
        o[12] = p.gy.to_double();
        o[13] = p.gz.to_double();
        o[14] = shape_on_axis ? std::copysign(inf, p.gz.to_double()) : p.global_eta.to_double();
        o[15] = p.global_phi.to_double();
    }
}

}  // extern "C"
