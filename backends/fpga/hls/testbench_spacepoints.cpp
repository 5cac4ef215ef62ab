// Testbench of spacepoints: hand-placed modules and measurements, expected values from the
// defining formulas in double precision (x = c + R (u, v, 0), r = hypot(x, y),
// phi = atan2(y, x), eta = asinh(z / r); the same for the cluster-shape vector).
// Returns 0 when every check passes (Vitis HLS C simulation / co-simulation convention).
#include <cmath>
#include <cstdio>

#include "spacepoints.h"

using namespace taas_fpga;

static int failures = 0;

static void expect_near(double got, double want, double tolerance, const char *what, int k) {
    if (!(std::fabs(got - want) <= tolerance)) {
        std::printf("FAIL: point %d %s: got %.9f want %.9f\n", k, what, got, want);
        ++failures;
    }
}

struct placed_module {
    double centre[3];
    double rotation[9];
};

// Unrotated; turned 90 degrees about z; turned 180 degrees about z and tilted about x by 30
// degrees (a forward-disk-like module).
static const double C30 = 0.8660254037844387, S30 = 0.5;
static const placed_module MODULES[3] = {
    {{100.0, 0.0, 50.0}, {1, 0, 0, 0, 1, 0, 0, 0, 1}},
    {{0.0, 30.0, -200.0}, {0, -1, 0, 1, 0, 0, 0, 0, 1}},
    {{-40.0, -1.0, 700.0}, {-1, 0, 0, 0, -C30, S30, 0, -S30, -C30}},
};
static const double THICKNESS = 0.15, PITCH_U = 0.05, PITCH_V = 0.4;

struct placed_measurement {
    int row;
    double u, v;
    int size_u, size_v;
};
static const int N = 4;
static const placed_measurement MEASUREMENTS[N] = {
    {0, 1.0, 2.0, 2, 3}, {1, -5.5, 12.25, 1, 1}, {2, 3.0, -0.5, 4, 2}, {0, -8.0, -30.0, 1, 7}};

static void eta_phi_reference(double x, double y, double z, double &eta, double &phi) {
    eta = std::asinh(z / std::hypot(x, y));
    phi = std::atan2(y, x);
}

int main() {
    static module_geometry_t geometry[MAX_MODULES];
    for (int m = 0; m < 3; ++m) {
        for (int k = 0; k < 3; ++k) geometry[m].centre[k] = MODULES[m].centre[k];
        for (int k = 0; k < 9; ++k) geometry[m].rotation[k] = MODULES[m].rotation[k];
        geometry[m].thickness = THICKNESS;
        geometry[m].pitch_u = PITCH_U;
        geometry[m].pitch_v = PITCH_V;
    }
    hls::stream<measurement_t> in("measurements");
    hls::stream<spacepoint_t> out("points");
    for (int k = 0; k < N; ++k) {
        measurement_t m;
        m.row = MEASUREMENTS[k].row;
        m.local_u = MEASUREMENTS[k].u;
        m.local_v = MEASUREMENTS[k].v;
        m.size_u = MEASUREMENTS[k].size_u;
        m.size_v = MEASUREMENTS[k].size_v;
        in.write(m);
    }
    spacepoints(geometry, in, out, N);

    for (int k = 0; k < N; ++k) {
        const placed_measurement &m = MEASUREMENTS[k];
        const double *c = MODULES[m.row].centre, *R = MODULES[m.row].rotation;
        const spacepoint_t p = out.read();
        const double x = c[0] + R[0] * m.u + R[1] * m.v;
        const double y = c[1] + R[3] * m.u + R[4] * m.v;
        const double z = c[2] + R[6] * m.u + R[7] * m.v;
        double eta, phi;
        eta_phi_reference(x, y, z, eta, phi);
        expect_near(p.x.to_double(), x, 3e-5, "x", k);
        expect_near(p.y.to_double(), y, 3e-5, "y", k);
        expect_near(p.z.to_double(), z, 3e-5, "z", k);
        expect_near(p.r.to_double(), std::hypot(x, y), 3e-5, "r", k);
        expect_near(p.phi.to_double(), phi, 1e-5, "phi", k);
        expect_near(p.eta.to_double(), eta, 1e-5, "eta", k);

        const double eu = m.size_u * PITCH_U, ev = m.size_v * PITCH_V;
        const double gx = R[0] * eu + R[1] * ev + R[2] * THICKNESS;
        const double gy = R[3] * eu + R[4] * ev + R[5] * THICKNESS;
        const double gz = R[6] * eu + R[7] * ev + R[8] * THICKNESS;
        double local_eta, local_phi, global_eta, global_phi;
        eta_phi_reference(eu, ev, THICKNESS, local_eta, local_phi);
        eta_phi_reference(gx, gy, gz, global_eta, global_phi);
        expect_near(p.extent_u.to_double(), eu, 1e-6, "extent_u", k);
        expect_near(p.extent_v.to_double(), ev, 1e-6, "extent_v", k);
        expect_near(p.local_angle.to_double(), std::atan2(ev, eu), 1e-5, "local_angle", k);
        expect_near(p.local_eta.to_double(), local_eta, 1e-5, "local_eta", k);
        expect_near(p.local_phi.to_double(), local_phi, 1e-5, "local_phi", k);
        expect_near(p.gx.to_double(), gx, 1e-6, "gx", k);
        expect_near(p.gy.to_double(), gy, 1e-6, "gy", k);
        expect_near(p.gz.to_double(), gz, 1e-6, "gz", k);
        expect_near(p.global_eta.to_double(), global_eta, 1e-5, "global_eta", k);
        expect_near(p.global_phi.to_double(), global_phi, 1e-5, "global_phi", k);
    }
    if (failures == 0) std::printf("testbench_spacepoints: all checks passed\n");
    return failures == 0 ? 0 : 1;
}
