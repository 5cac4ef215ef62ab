// Space points and cluster-shape features with CORDIC arithmetic (see spacepoints.h).
#include "spacepoints.h"

namespace taas_fpga {

// The CORDIC datapaths work on the raw two's-complement words of cordic_t (25 fractional bits)
// and cordic_angle_t (28 fractional bits): the same bits and the same adders in hardware, and
// plain ap_int arithmetic simulates about 4x faster than ap_fixed's.
typedef ap_int<cordic_t::width> cordic_word_t;
typedef ap_int<cordic_angle_t::width> angle_word_t;

// round(atan(2^-i) 2^28), i = 0 .. 25
static const angle_word_t ATAN_STEP[CORDIC_STEPS] = {
    210828714, 124459457, 65760959, 33381290, 16755422, 8385879, 4193963, 2097109, 1048571,
    524287,    262144,    131072,   65536,    32768,    16384,   8192,    4096,    2048,
    1024,      512,       256,      128,      64,       32,      16,      8};

// Hyperbolic steps: shift i and round(atanh(2^-i) 2^28); i = 4 and 13 repeat, as hyperbolic
// CORDIC needs to converge.
static const int ATANH_SHIFT[CORDIC_STEPS] = {1,  2,  3,  4,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                                              13, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
static const angle_word_t ATANH_STEP[CORDIC_STEPS] = {
    147453245, 68561855, 33730852, 16799113, 16799113, 8391340, 4194645, 2097195, 1048581,
    524289,    262144,   131072,   65536,    32768,    32768,   16384,   8192,    4096,
    2048,      1024,     512,      256,      128,      64,      32,      16};

static const angle_word_t HALF_PI_WORD = 421657428;  // round(pi/2 2^28)
static const ap_ufixed<28, 0> INVERSE_CIRCULAR_GAIN = 0.6072529350088813;
static const cordic_angle_t LN2 = 0.6931471805599453;

static cordic_word_t word_of(const cordic_t &v) {
#pragma HLS INLINE
    return v.range(cordic_t::width - 1, 0);
}

static cordic_t fixed_of(const cordic_word_t &w) {
#pragma HLS INLINE
    cordic_t v;
    v.range(cordic_t::width - 1, 0) = w;
    return v;
}

static cordic_angle_t angle_of(const angle_word_t &w) {
#pragma HLS INLINE
    cordic_angle_t v;
    v.range(cordic_angle_t::width - 1, 0) = w;
    return v;
}

// Magnitude and atan2 of (x, y) in (-pi, pi], by circular CORDIC in vectoring mode after a
// quarter turn that brings the vector into the right half plane.
void magnitude_atan2(cordic_t x_in, cordic_t y_in, cordic_t &magnitude, angle_t &angle) {
#pragma HLS INLINE
    cordic_word_t x = word_of(x_in), y = word_of(y_in);
    angle_word_t z = 0;
    if (x < 0) {
        const cordic_word_t t = x;
        if (y >= 0) {
            x = y;
            y = -t;
            z = HALF_PI_WORD;
        } else {
            x = -y;
            y = t;
            z = -HALF_PI_WORD;
        }
    }
CIRCULAR:
    for (int i = 0; i < CORDIC_STEPS; ++i) {
#pragma HLS UNROLL
        const cordic_word_t dx = y >> i, dy = x >> i;
        if (y > 0) {
            x += dx;
            y -= dy;
            z += ATAN_STEP[i];
        } else {
            x -= dx;
            y += dy;
            z -= ATAN_STEP[i];
        }
    }
    magnitude = fixed_of(x) * INVERSE_CIRCULAR_GAIN;
    angle = angle_of(z);
}

// Natural logarithm of a > 0: a = m 2^e with m in [1, 2) by a leading-one search, then
// ln m = 2 atanh((m - 1) / (m + 1)) by hyperbolic CORDIC in vectoring mode (no divider).
static ap_fixed<32, 6> log_positive(cordic_t a) {
#pragma HLS INLINE
    const int frac = cordic_t::width - cordic_t::iwidth;
    int msb = 0;
LEADING_ONE:
    for (int b = 0; b < cordic_t::width - 1; ++b) {
#pragma HLS UNROLL
        if (a[b]) msb = b;
    }
    const int e = msb - frac;  // a in [2^e, 2^(e+1))
    const cordic_word_t bits = word_of(a);
    const cordic_word_t m = e >= 0 ? cordic_word_t(bits >> e) : cordic_word_t(bits << -e);
    const cordic_word_t one = cordic_word_t(1) << frac;  // m = a / 2^e in [1, 2)
    cordic_word_t x = m + one, y = m - one;
    angle_word_t z = 0;
HYPERBOLIC:
    for (int k = 0; k < CORDIC_STEPS; ++k) {
#pragma HLS UNROLL
        const int i = ATANH_SHIFT[k];
        const cordic_word_t dx = y >> i, dy = x >> i;
        if (y > 0) {
            x -= dx;
            y -= dy;
            z += ATANH_STEP[k];
        } else {
            x += dx;
            y += dy;
            z -= ATANH_STEP[k];
        }
    }
    return ap_fixed<32, 6>(e) * LN2 + 2 * angle_of(z);
}

// Transverse length rho, pseudorapidity asinh(z / rho) = ln((|v| + |z|) / rho) signed like z,
// and azimuth of the vector (x, y, z). Along the z axis (rho = 0) eta saturates at its largest
// magnitude.
void eta_phi(cordic_t x, cordic_t y, cordic_t z, cordic_t &rho, eta_t &eta, angle_t &phi) {
#pragma HLS INLINE
    magnitude_atan2(x, y, rho, phi);
    const cordic_t abs_z = z < 0 ? cordic_t(-z) : cordic_t(z);
    cordic_t length;
    angle_t polar;
    magnitude_atan2(rho, abs_z, length, polar);
    if (rho <= 0) {
        eta = z < 0 ? eta_t(-16) : eta_t(16);  // saturates: the largest representable |eta|
        return;
    }
    const ap_fixed<34, 8> abs_eta = log_positive(length + abs_z) - log_positive(rho);
    eta = z < 0 ? eta_t(-abs_eta) : eta_t(abs_eta);
}

void spacepoints(const module_geometry_t geometry[MAX_MODULES],
                 hls::stream<measurement_t> &measurements, hls::stream<spacepoint_t> &points,
                 ap_uint<32> n) {
#pragma HLS INTERFACE m_axi port = geometry offset = slave bundle = gmem depth = 32768
#pragma HLS INTERFACE axis port = measurements
#pragma HLS INTERFACE axis port = points
#pragma HLS INTERFACE s_axilite port = n
#pragma HLS INTERFACE s_axilite port = return
POINTS:
    for (ap_uint<32> k = 0; k < n; ++k) {
#pragma HLS PIPELINE II = 1
        const measurement_t m = measurements.read();
        const module_geometry_t g = geometry[m.row];
        const rotation_t (&R)[9] = g.rotation;
        spacepoint_t p;
        p.x = g.centre[0] + R[0] * m.local_u + R[1] * m.local_v;
        p.y = g.centre[1] + R[3] * m.local_u + R[4] * m.local_v;
        p.z = g.centre[2] + R[6] * m.local_u + R[7] * m.local_v;
        cordic_t r, shape_rho;
        eta_phi(p.x, p.y, p.z, r, p.eta, p.phi);
        p.r = r;

        // cluster shape: the unsigned extent on the module and the sensor thickness
        p.extent_u = m.size_u * g.pitch_u;
        p.extent_v = m.size_v * g.pitch_v;
        eta_phi(p.extent_u, p.extent_v, g.thickness, shape_rho, p.local_eta, p.local_phi);
        p.local_angle = p.local_phi;  // both extents are positive: the same atan2
        p.gx = R[0] * p.extent_u + R[1] * p.extent_v + R[2] * g.thickness;
        p.gy = R[3] * p.extent_u + R[4] * p.extent_v + R[5] * g.thickness;
        p.gz = R[6] * p.extent_u + R[7] * p.extent_v + R[8] * g.thickness;
        eta_phi(p.gx, p.gy, p.gz, shape_rho, p.global_eta, p.global_phi);
        points.write(p);
    }
}

}  // namespace taas_fpga
