// Space-point formation as a streaming HLS kernel (taas FPGA front end).
//
// Per measurement: the global position c + R (u, v, 0) of its local point, r, phi and eta, and
// the cluster-shape features of taas.reco.cluster_features (the shape vector (extent_u,
// extent_v, thickness) in the module frame, rotated to the global frame, and the eta / phi of
// both). Square roots, angles and logarithms come from CORDIC units (circular vectoring for
// magnitude and atan2, hyperbolic vectoring for ln), the usual shift-and-add FPGA way: no
// vendor math library, so the C simulation is bit-accurate to the synthesized design.
//
// Word sizes (mm, rad): global coordinates ap_fixed<30,13> (|x| < 4096, LSB 2^-17 = 7.6 nm),
// cluster-shape vectors ap_fixed<36,12> (|x| < 2048, LSB 2^-24), rotation entries ap_fixed<27,2> (LSB 2^-25), angles ap_fixed<28,3> (LSB 2^-25 rad), eta
// ap_fixed<28,5> (|eta| < 16, LSB 2^-23). CORDIC datapaths carry 25 fractional bits over 26
// iterations, so r, phi and eta are good to a few 1e-7 relative.
#ifndef TAAS_FPGA_SPACEPOINTS_H
#define TAAS_FPGA_SPACEPOINTS_H

#include "ap_fixed.h"
#include "ap_int.h"
#include "clustering.h"
#include "hls_stream.h"

namespace taas_fpga {

constexpr int MODULE_ROW_BITS = 15;
constexpr int MAX_MODULES = 1 << MODULE_ROW_BITS;  // geometry table rows (18,728 in Generic)
constexpr int CORDIC_STEPS = 26;

typedef ap_uint<MODULE_ROW_BITS> module_row_t;
typedef ap_fixed<30, 13, AP_RND_CONV, AP_SAT> position_t;
typedef ap_fixed<36, 12, AP_RND_CONV, AP_SAT> shape_t;  // cluster-shape vectors (mm)
typedef ap_fixed<27, 2, AP_RND_CONV, AP_SAT> rotation_t;
typedef ap_fixed<28, 3, AP_RND_CONV, AP_SAT> angle_t;
typedef ap_fixed<28, 5, AP_RND_CONV, AP_SAT> eta_t;
typedef ap_fixed<41, 16> cordic_t;  // |value| < 2^15 after the CORDIC gain of 1.65
typedef ap_fixed<32, 4> cordic_angle_t;

// One row of the module geometry table (block/ultra RAM or DDR in hardware).
struct module_geometry_t {
    position_t centre[3];
    rotation_t rotation[9];  // row-major; columns are the module's u, v, w axes
    local_t thickness;
    pitch_t pitch_u;
    pitch_t pitch_v;
};

struct measurement_t {
    module_row_t row;
    local_t local_u;
    local_t local_v;
    extent_t size_u;
    extent_t size_v;
};

struct spacepoint_t {
    position_t x, y, z, r;
    angle_t phi;
    eta_t eta;
    shape_t extent_u, extent_v;
    angle_t local_angle;
    eta_t local_eta;
    angle_t local_phi;
    shape_t gx, gy, gz;
    eta_t global_eta;
    angle_t global_phi;
};

// Top function: `n` measurements in, `n` space points out, one per clock when pipelined.
void spacepoints(const module_geometry_t geometry[MAX_MODULES],
                 hls::stream<measurement_t> &measurements, hls::stream<spacepoint_t> &points,
                 ap_uint<32> n);

// The two CORDIC-based functions, exposed for the testbench.
void magnitude_atan2(cordic_t x, cordic_t y, cordic_t &magnitude, angle_t &angle);
void eta_phi(cordic_t x, cordic_t y, cordic_t z, cordic_t &rho, eta_t &eta, angle_t &phi);

}  // namespace taas_fpga

#endif
