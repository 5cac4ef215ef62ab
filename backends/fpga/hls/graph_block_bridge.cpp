// Batch entry point of one hls4ml model (an MLP segment of a GNN block) for C simulation.
//
// hls4ml's own bridge converts one sample per ctypes call; this one runs `n` samples per call,
// so the GIL is released for a whole batch and the per-sample Python overhead disappears.
// Compiled together with the hls4ml project's firmware/<project>.cpp; the project header, the
// top function and the port sizes come in as macros (backends/fpga/hls4ml_models.py):
//   TAAS_TOP (top function), TAAS_N_IN, TAAS_N_OUT, and `-include firmware/<project>.h`.
// input_t and result_t are the typedefs hls4ml writes to defines.h for the model's ports.
#include "nnet_utils/nnet_helpers.h"

extern "C" {

int taas_block_n_in() { return TAAS_N_IN; }
int taas_block_n_out() { return TAAS_N_OUT; }

int taas_block_run(const double *in, double *out, long n) {
    input_t x[TAAS_N_IN];
    result_t y[TAAS_N_OUT];
    for (long s = 0; s < n; ++s) {
        for (int i = 0; i < TAAS_N_IN; ++i) x[i] = input_t(in[s * TAAS_N_IN + i]);
        TAAS_TOP(x, y);
        for (int o = 0; o < TAAS_N_OUT; ++o) out[s * TAAS_N_OUT + o] = y[o].to_double();
    }
    return 0;
}

}  // extern "C"
