#!/usr/bin/env bash
# One lent GPU session for acorn_traccc on CUDA (issue 17), in priority order, each step bounded
# in time so that the whole fits a session's device time; logs and JSON records under $OUT.
#
#   1. events/s of acorn_traccc at `large` with 1 and 2 instances (benchmarks/pipeline_throughput.py)
#   2. what the host keeps per event, supplementary seeding on 1 and 8 threads (host_budget.py)
#   3. the resident chain on a `medium` event: outputs with and without residency, every copy
#   4. the CUDA checks of the CKF, the bridge and the fit against numba / numpy
#
# Needs the events simulated on the project machine (pyacts has no wheel for most GPU images)
# and carried: sim/{tiny,medium,large} as docs/gpu_machine.md makes them (seed 11; tiny seed
# 42), and torch with CUDA, numba, scipy, pyarrow, pandas, pytest; pyopencl for the OpenCL
# front end (without an OpenCL GPU the front end runs on the cpu backend, and the records say
# so). A dry run on a machine without a GPU: TAAS_SESSION_PRESET=tiny with sim/tiny of seed 11.
#
#   OUT=results bash hardware_tests/gpu_session.sh
set -u
OUT=${OUT:-$PWD/gpu_results}
SIM=${TAAS_SIM_DIR:-$PWD/sim}
PRESET=${TAAS_SESSION_PRESET:-large}
mkdir -p "$OUT"
export PYTHONPATH=$PWD TAAS_TINY_SIM_DIR=$SIM/tiny TAAS_MEDIUM_SIM_DIR=$SIM/medium \
    TAAS_RESULTS_DIR=$OUT

step() {  # name, seconds, command...: run it bounded, keep its log, say how it ended
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "   exit $? after $((SECONDS - start)) s"
    tail -n 4 "$OUT/$name.log" | sed 's/^/   /'
}

python3 - <<'EOF' | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
step throughput 240 python3 benchmarks/pipeline_throughput.py --sim-dir "$SIM" \
    --preset "$PRESET" --events 1 --instances 1 2 --passes 2 --supplementary-threads 4 \
    --out "$OUT/pipeline_throughput_$PRESET.json"
step host_budget 150 python3 benchmarks/host_budget.py --sim-dir "$SIM" --presets "$PRESET" \
    --events 1 --repeats 1 --supplementary-threads 1 8 --out "$OUT/host_budget_$PRESET.json"
if [ "$PRESET" != tiny ]; then
    step resident_chain 150 python3 -m pytest -q -s hardware_tests/test_cuda_resident_chain.py
fi
step cuda_checks 150 python3 -m pytest -q -s hardware_tests/test_cuda_ckf.py \
    hardware_tests/test_cuda_bridge.py hardware_tests/test_cuda_track_fit.py
