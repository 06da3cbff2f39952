#!/usr/bin/env bash
# One call on the GPU machine (the device tool's `run`): builds kernels/cuda, unpacks the petrel
# binary carried in .device/ (made here by scripts/cuda-pack.sh), runs `petrel selftest --device
# cuda`, measures the card's ceilings, then `petrel bench` and the transformers reference over the
# issue's grid. Logs go to $OUT. Stages: STAGES="build selftest peaks bench hf" (default: all).
set -uo pipefail
OUT=${OUT:-/tmp/petrel-out}
STAGES=${STAGES:-"build selftest peaks bench hf"}
mkdir -p "$OUT"
has() { [[ " $STAGES " == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"
if has build; then
    nvcc --version | tail -1
    (time make -C kernels/cuda) 2>&1 | tee "$OUT/build.log" || exit 1
    [ -f kernels/cuda/libpetrel_cuda.so ] || { echo "no libpetrel_cuda.so"; exit 1; }
fi
gunzip -c .device/petrel.gz > /tmp/petrel && chmod +x /tmp/petrel
export PETREL_CUDA_LIB=$PWD/kernels/cuda/libpetrel_cuda.so
status=0
if has selftest; then
    /tmp/petrel selftest --device cuda 2>&1 | tee "$OUT/selftest.md"
    status=${PIPESTATUS[0]}
fi
BW=${BW:-3000}; TF=${TF:-700}
if has peaks; then
    python3 scripts/device_peaks.py 2>&1 | tee "$OUT/peaks.txt"
    BW=$(sed -n 's/^PEAK_BW_GBS=//p' "$OUT/peaks.txt"); TF=$(sed -n 's/^PEAK_TFLOPS=//p' "$OUT/peaks.txt")
fi
if has bench; then
    timeout ${BENCH_TIMEOUT:-220} /tmp/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 \
        --peak-bandwidth "$BW" --peak-tflops "$TF" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-petrel.md"
fi
if has hf; then
    timeout ${HF_TIMEOUT:-200} python3 scripts/hf_bench.py ${HF_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/bench-hf.md"
fi
exit $status
