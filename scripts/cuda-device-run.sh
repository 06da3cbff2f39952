#!/usr/bin/env bash
# One call on the GPU machine (the device tool's `run`): builds kernels/cuda, unpacks the petrel
# binary carried in .device/ (made here by scripts/cuda-pack.sh), runs `petrel selftest --device
# cuda`, measures the card's ceilings, then `petrel bench` and the transformers reference over the
# issue's grid. Logs go to $OUT. Stages: STAGES="build selftest gemv peaks bench hf profile" (default:
# build selftest peaks bench hf). logits: last-position logits and greedy ids against transformers on
# the same weights (scripts/hf_logits_check.py); gemv: the decode-matmul microbenchmark (kernels/cuda/bench_gemv);
# profile: Nsight Compute times every kernel of one batch-1 decode step (scripts/ncu_summary.py);
# bf16: a few grid points with --gpu-dtype bf16;
# partition: batch 1 and 16 with the decode attention's smallest partition at 64 and 256 keys;
# unroll: batch 1 and 16 with the decode attention loading 4 or 8 rows per lane group before use;
# serve: scripts/cuda-serve-smoke.sh (petrel serve --device cuda over real sockets);
# rope: batch 1 and 16 with a decode step's RoPE and K/V write inside the attention kernel or not;
# slices: batch 1 and 4 with 4 or 2 warps a column in the GEMV of matrices of <= 4096 columns;
# norm: batch 1 and 16 with the RMSNorm done by the GEMV after it or by its own kernel;
# early: batch 1 and 16 with the decode attention loading its first K/V rows before its wait or after;
# knobs: the self-test again with PETREL_DECODE_EARLY_KV=0, so both code paths are checked;
# graphs: a few points with decode steps as CUDA graphs (default) and without (PETREL_CUDA_GRAPHS=0);
# ab: the batch-1 points with programmatic dependent launch off (PETREL_PDL=0) and the 512-token
# points with the tiled prefill attention (PETREL_PREFILL_ATTENTION=tiled), beside the defaults.
# build: a libpetrel_cuda.so carried in .device/ (scripts/cuda-pack.sh --with-library) is used
# when it loads there; else kernels/cuda is built with make -j.
set -uo pipefail
OUT=${OUT:-/tmp/petrel-out}
STAGES=${STAGES:-"build selftest peaks bench hf"}
mkdir -p "$OUT"
T0=$(date +%s)
# Whether stage $1 was asked for; logs the seconds since the start, so each stage's time shows.
has() { [[ " $STAGES " == *" $1 "* ]] && echo "[stage $1 at +$(( $(date +%s) - T0 )) s]" >&2; }
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"
if has build; then
    nvcc --version | tail -1
    if [ -f .device/libpetrel_cuda.so ] && python3 -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" .device/libpetrel_cuda.so; then
        cp .device/libpetrel_cuda.so kernels/cuda/libpetrel_cuda.so
        echo "using the carried .device/libpetrel_cuda.so" | tee "$OUT/build.log"
    else
        (time make -j 8 -C kernels/cuda) 2>&1 | tee "$OUT/build.log" || exit 1
    fi
    [ -f kernels/cuda/libpetrel_cuda.so ] || { echo "no libpetrel_cuda.so"; exit 1; }
fi
gunzip -c .device/petrel.gz > /tmp/petrel && chmod +x /tmp/petrel
export PETREL_CUDA_LIB=$PWD/kernels/cuda/libpetrel_cuda.so
status=0
if has selftest; then
    timeout ${SELFTEST_TIMEOUT:-300} /tmp/petrel selftest --device cuda 2>&1 | tee "$OUT/selftest.md"
    status=${PIPESTATUS[0]}
fi
if has knobs; then
    PETREL_DECODE_EARLY_KV=0 timeout ${SELFTEST_TIMEOUT:-300} /tmp/petrel selftest --device cuda 2>&1 \
        | tee "$OUT/selftest-knobs.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
BW=${BW:-3000}; TF=${TF:-700}
if has peaks; then
    python3 scripts/device_peaks.py 2>&1 | tee "$OUT/peaks.txt"
    BW=$(sed -n 's/^PEAK_BW_GBS=//p' "$OUT/peaks.txt"); TF=$(sed -n 's/^PEAK_TFLOPS=//p' "$OUT/peaks.txt")
fi
if has gemv; then
    # A bench_gemv carried in .device/ (built here with the library) saves the build there.
    if [ -x .device/bench_gemv ]; then cp .device/bench_gemv kernels/cuda/bench_gemv; else make -C kernels/cuda bench_gemv >/dev/null; fi
    kernels/cuda/bench_gemv 2>&1 | tee "$OUT/gemv.md"
fi
if has bench; then
    timeout ${BENCH_TIMEOUT:-220} /tmp/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 \
        --peak-bandwidth "$BW" --peak-tflops "$TF" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-petrel.md"
fi
# Side by side in one call: `petrel bench` over BATCHES x LENS once per value of the environment
# variable VAR, in the order given (alternate them to see the run-to-run spread), one process each,
# appended to $OUT/FILE.   alternate VAR "VALUES" FILE "BATCHES" "LENS"
alternate() {
    local var=$1 values=$2 file=$3 batches=$4 lens=$5 v
    for v in $values; do
        echo "## $var=$v" | tee -a "$OUT/$file"
        env "$var=$v" timeout 120 /tmp/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 --batch-size "$batches" \
            --input-output-len "$lens" --peak-bandwidth "$BW" --peak-tflops "$TF" 2>&1 | tee -a "$OUT/$file"
    done
}
if has ab; then
    alternate PETREL_PDL "0 1 0 1" ab.md "1" "60,20;128,20"
    alternate PETREL_PREFILL_ATTENTION "tiled gemm" ab.md "16;128" "512,20"
fi
# Decode steps replayed as CUDA graphs (the default) against kernel-by-kernel launches.
has graphs && alternate PETREL_CUDA_GRAPHS "0 1 0 1" graphs.md "${GRAPH_BATCHES:-1;16;64}" "${GRAPH_LENS:-60,20;128,128}"
# The decode attention loading 8 key / value rows per lane group before use (the default) or 4.
has unroll && alternate PETREL_DECODE_UNROLL "4 8 4 8" unroll.md "1;16" "60,20;128,128"
# The split-K decode attention's smallest partition (default 64): short contexts in one partition
# skip the combine.
has partition && alternate PETREL_DECODE_MIN_PARTITION "64 256 64 256" partition.md "1;16" "60,20;512,20"
# A decode step's RoPE and K/V write inside its attention kernel (default) or a kernel of their own.
has rope && alternate PETREL_DECODE_FUSED_ROPE "0 1 0 1" rope.md "1;16" "128,128"
# The GEMV's o and down projections (4096 columns) with 4 warps a column (default) or 2.
has slices && alternate PETREL_GEMV_SLICES "4 2 4 2" slices.md "1;4" "128,128"
# The RMSNorm inside the GEMV after it (default) or a norm kernel before it.
has norm && alternate PETREL_GEMV_NORM "0 1 0 1" norm.md "1;16" "128,128"
# The decode attention's first K/V rows loaded before its wait (default) or after.
has early && alternate PETREL_DECODE_EARLY_KV "0 1 0 1" early.md "1;16" "60,20;128,128"
if has serve; then
    bash scripts/cuda-serve-smoke.sh 2>&1 | tee "$OUT/serve-smoke.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if has bf16; then
    # The same engine with bf16 weights, activations and KV cache (--gpu-dtype bf16).
    timeout ${BF16_TIMEOUT:-90} /tmp/petrel bench --device cuda --gpu-dtype bf16 --dummy-weights llama-2-7b --dtype bf16 \
        --batch-size "1;16;64" --input-output-len "60,20;512,20" --peak-bandwidth "$BW" --peak-tflops "$TF" 2>&1 | tee "$OUT/bench-bf16.md"
fi
if has hf; then
    timeout ${HF_TIMEOUT:-200} python3 scripts/hf_bench.py ${HF_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/bench-hf.md"
fi
if has logits; then
    timeout ${LOGITS_TIMEOUT:-300} python3 scripts/hf_logits_check.py --petrel /tmp/petrel ${LOGITS_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/logits.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if has profile; then
    # One batch-1 decode step, kernel by kernel: skip the weight fill, the prefill and the first
    # decode steps of the warm-up pass, then time PROFILE_COUNT consecutive kernels.
    timeout ${PROFILE_TIMEOUT:-300} ncu --clock-control none --cache-control none --launch-skip ${PROFILE_SKIP:-3000} --launch-count ${PROFILE_COUNT:-700} \
        --metrics gpu__time_duration.sum --csv --page raw \
        /tmp/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 --batch-size 1 --input-output-len 60,40 \
        > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
    python3 scripts/ncu_summary.py "$OUT/ncu.csv" 2>&1 | tee "$OUT/profile.md"
fi
exit $status
