#!/usr/bin/env bash
# One call on the GPU machine (the device tool's `run`): builds kernels/cuda, unpacks the petrel
# binary carried in .device/ (made here by scripts/cuda-pack.sh), runs `petrel selftest --device
# cuda`, measures the card's ceilings, then `petrel bench` and the transformers reference over the
# issue's grid. Logs go to $OUT. Stages: STAGES="build selftest gemv peaks bench hf profile" (default:
# build selftest peaks bench hf). logits: last-position logits and greedy ids against transformers on
# the same weights (scripts/hf_logits_check.py); gemv: kernels/cuda/dev/bench_gemv, each GEMV variant
# checked against the CPU and timed beside cuBLAS (GEMV_MODES: product rows slices norm; default product);
# wo: kernels/cuda/dev/bench_wo, the weight-only matmuls checked against the CPU (every format, epilogue and
# element type), then timed at Llama-2-7B's shapes beside fp16;
# attn: kernels/cuda/dev/bench_attn, the FlashAttention-2-style prefill candidate checked against the CPU
# and the product (head_dims, GQA groups, cached prefixes, ragged batches), then timed at Llama-2-7B's
# prefill shapes beside petrel_attention_enqueue (ATTN_BENCH_ARGS: e.g. bf16);
# profile: Nsight Compute times every kernel of one batch-1 decode step (scripts/ncu_summary.py;
# PROFILE_ARGS: extra bench flags, e.g. --quantization int8_wo);
# woprof: Nsight Compute metrics of every bench_wo launch (after the wo stage);
# bf16: a few grid points with --gpu-dtype bf16;
# serve: scripts/cuda-serve-smoke.sh (petrel serve --device cuda over real sockets);
# servebench: served (asyncio HTTP streams) against the offline engine on a random 7B-shaped checkpoint;
# graphs: a few points with decode steps as CUDA graphs (default) and without (--no-cuda-graphs);
# ab: the batch-1 points with programmatic dependent launch off (--no-pdl) and on;
# quant: greedy ids of the tiny Llama in every weight-only format on the card and the CPU, then the
# grid (QUANT_BATCHES x QUANT_LENS) for fp16, int8_wo and int4_wo;
# before-after: with .device/before-after.tar.xz (scripts/cuda-pack.sh --baseline COMMIT), the
# self-test of this tree's build, then both builds' `petrel bench` at BA_BATCHES x BA_LENS
# (default 1 and 128 x 128/20), alternating before, after, before, after, and one table
# (scripts/bench_compare.py): STAGES="peaks before-after".
# build: a libpetrel_cuda.so carried in .device/ (scripts/cuda-pack.sh --with-library, or the
# "after" build of --baseline) is used when it loads there; else kernels/cuda is built with make -j.
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
# The petrel to run, as /tmp/petrel: .device/petrel.gz (static), or the "after" build of
# .device/before-after.tar.xz, which like the "before" one loads the Swift runtime carried beside it.
carried=.device/libpetrel_cuda.so
if [ -f .device/before-after.tar.xz ]; then
    rm -rf /tmp/petrel-ba && mkdir -p /tmp/petrel-ba
    python3 -m tarfile -e .device/before-after.tar.xz /tmp/petrel-ba || exit 1
    chmod +x /tmp/petrel-ba/after/petrel /tmp/petrel-ba/before/petrel
    printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/petrel-ba/swift${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec /tmp/petrel-ba/after/petrel "$@"\n' > /tmp/petrel
    chmod +x /tmp/petrel
    carried=/tmp/petrel-ba/after/libpetrel_cuda.so
else
    gunzip -c .device/petrel.gz > /tmp/petrel && chmod +x /tmp/petrel
fi
if has build; then
    nvcc --version | tail -1
    if [ -f "$carried" ] && python3 -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" "$carried"; then
        cp "$carried" kernels/cuda/libpetrel_cuda.so
        echo "using the carried $carried" | tee "$OUT/build.log"
    else
        (time make -j 8 -C kernels/cuda) 2>&1 | tee "$OUT/build.log" || exit 1
    fi
    [ -f kernels/cuda/libpetrel_cuda.so ] || { echo "no libpetrel_cuda.so"; exit 1; }
fi
export PETREL_CUDA_LIB=$PWD/kernels/cuda/libpetrel_cuda.so
status=0
if has selftest; then
    timeout ${SELFTEST_TIMEOUT:-300} /tmp/petrel selftest --device cuda 2>&1 | tee "$OUT/selftest.md"
    status=${PIPESTATUS[0]}
fi
BW=${BW:-3000}; TF=${TF:-700}
if has peaks; then
    python3 scripts/device_peaks.py 2>&1 | tee "$OUT/peaks.txt"
    BW=$(sed -n 's/^PEAK_BW_GBS=//p' "$OUT/peaks.txt"); TF=$(sed -n 's/^PEAK_TFLOPS=//p' "$OUT/peaks.txt")
fi
if has gemv; then
    # A bench_gemv carried in .device/ (built here with the library) saves the build there.
    if [ -x .device/bench_gemv ]; then cp .device/bench_gemv kernels/cuda/bench_gemv; else make -C kernels/cuda bench_gemv >/dev/null; fi
    for mode in ${GEMV_MODES:-product}; do
        echo "## bench_gemv $mode" | tee -a "$OUT/gemv.md"
        kernels/cuda/bench_gemv "$mode" 2>&1 | tee -a "$OUT/gemv.md"
        [ "${PIPESTATUS[0]}" = 0 ] || status=1
    done
fi
if has wo; then
    if [ -x .device/bench_wo ]; then cp .device/bench_wo kernels/cuda/bench_wo; else make -C kernels/cuda bench_wo >/dev/null; fi
    kernels/cuda/bench_wo check > "$OUT/wo-check.md" 2>&1 || status=1
    grep -E "FAIL|check:" "$OUT/wo-check.md"
    kernels/cuda/bench_wo bench 2>&1 | tee "$OUT/wo-bench.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if has attn; then
    if [ -x .device/bench_attn ]; then cp .device/bench_attn kernels/cuda/bench_attn; else make -j 8 -C kernels/cuda bench_attn >/dev/null; fi
    timeout ${ATTN_CHECK_TIMEOUT:-300} kernels/cuda/bench_attn check > "$OUT/attn-check.md" 2>&1 || status=1
    grep -E "FAIL|check:" "$OUT/attn-check.md"
    timeout ${ATTN_BENCH_TIMEOUT:-300} kernels/cuda/bench_attn bench ${ATTN_BENCH_ARGS:-} 2>&1 | tee "$OUT/attn-bench.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if has woprof; then
    # Nsight Compute over bench_wo's launches (each once): time, DRAM throughput, occupancy, registers
    # and the long-scoreboard stalls of every GEMV and GEMM variant (wo-ncu.csv; scripts/ncu_wo.py).
    [ -x kernels/cuda/bench_wo ] || { if [ -x .device/bench_wo ]; then cp .device/bench_wo kernels/cuda/bench_wo; else make -C kernels/cuda bench_wo >/dev/null; fi; }
    timeout ${WOPROF_TIMEOUT:-240} ncu -k "regex:${WOPROF_KERNELS:-gemv|gemm_kernel}" --launch-count ${WOPROF_COUNT:-900} --csv --page raw \
        --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__occupancy_limit_registers,launch__grid_size,launch__block_size,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,sm__inst_executed.avg.per_cycle_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
        kernels/cuda/bench_wo profile > "$OUT/wo-ncu.csv" 2> "$OUT/wo-ncu.err"
    tail -3 "$OUT/wo-ncu.err"
fi
if has bench; then
    timeout ${BENCH_TIMEOUT:-220} /tmp/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 \
        --peak-bandwidth "$BW" --peak-tflops "$TF" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-petrel.md"
fi
# Side by side in one call: `petrel bench` over BATCHES x LENS once per set of extra flags, in the
# order given ("" for the defaults; alternate them to see the run-to-run spread), one process each,
# appended to $OUT/FILE under "## FLAGS".   alternate FILE "BATCHES" "LENS" FLAGS...
alternate() {
    local file=$1 batches=$2 lens=$3 flags
    shift 3
    for flags in "$@"; do
        echo "## ${flags:-defaults}" | tee -a "$OUT/$file"
        timeout 120 /tmp/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 --batch-size "$batches" \
            --input-output-len "$lens" --peak-bandwidth "$BW" --peak-tflops "$TF" $flags 2>&1 | tee -a "$OUT/$file"
    done
}
has ab && alternate ab.md "1" "60,20;128,20" --no-pdl "" --no-pdl ""
# Weight-only engines (issue 15): the same weights' greedy ids on the card and on the CPU for every
# format, then the seed's grid for fp16, int8_wo and int4_wo, one process each.
if has quant; then
    for q in "" "--quantization int8_wo" "--quantization int4_wo" "--quantization int4_wo --group-size 64 --zero-points"; do
        for d in cpu cuda; do
            echo "## logits $d ${q:-fp16}: $(timeout 60 /tmp/petrel logits --device $d --model Tests/Fixtures/tiny-llama \
                --prompt-ids 1,17,99,4,250,3 --max-tokens 12 $q 2>&1 | tail -1)" | tee -a "$OUT/quant-logits.md"
        done
    done
    alternate quant.md "${QUANT_BATCHES:-1;8;16;32;64;128}" "${QUANT_LENS:-60,20;128,20;512,20}" "" \
        "--quantization int8_wo" "--quantization int4_wo"
fi
# Decode steps replayed as CUDA graphs (the default) against kernel-by-kernel launches.
has graphs && alternate graphs.md "${GRAPH_BATCHES:-1;16;64}" "${GRAPH_LENS:-60,20;128,128}" --no-cuda-graphs "" --no-cuda-graphs ""
if has before-after; then
    if [ ! -d /tmp/petrel-ba ]; then
        echo "before-after: no .device/before-after.tar.xz (scripts/cuda-pack.sh --baseline COMMIT)"
        status=1
    else
        # "after" runs the library the build stage left (the carried one, else built here).
        cp kernels/cuda/libpetrel_cuda.so /tmp/petrel-ba/after/libpetrel_cuda.so 2>/dev/null
        PETREL_CUDA_LIB=/tmp/petrel-ba/after/libpetrel_cuda.so timeout ${SELFTEST_TIMEOUT:-300} /tmp/petrel selftest --device cuda 2>&1 \
            | tee "$OUT/selftest-after.md"
        [ "${PIPESTATUS[0]}" = 0 ] || status=1
        for build in before after before after; do
            echo "## $build $(cat /tmp/petrel-ba/$build/commit)" | tee -a "$OUT/before-after.md"
            PETREL_CUDA_LIB=/tmp/petrel-ba/$build/libpetrel_cuda.so LD_LIBRARY_PATH=/tmp/petrel-ba/swift${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
                timeout ${BENCH_TIMEOUT:-220} /tmp/petrel-ba/$build/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 \
                --batch-size "${BA_BATCHES:-1;128}" --input-output-len "${BA_LENS:-128,20}" --peak-bandwidth "$BW" \
                --peak-tflops "$TF" 2>&1 | tee -a "$OUT/before-after.md"
        done
        python3 scripts/bench_compare.py "$OUT/before-after.md" 2>&1 | tee "$OUT/before-after-table.md"
    fi
fi
if has serve; then
    bash scripts/cuda-serve-smoke.sh 2>&1 | tee "$OUT/serve-smoke.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if has servebench; then
    # Served against offline on the card (issue 16): a random Llama-2-7B-shaped checkpoint with the
    # tiny Llama's tokenizer (scripts/make_dummy_checkpoint.py), then scripts/bench_serving.py.
    [ -f /tmp/ckpt-7b/config.json ] || python3 scripts/make_dummy_checkpoint.py /tmp/ckpt-7b 2>&1 | tail -1 | tee "$OUT/servebench.md"
    timeout ${SERVEBENCH_TIMEOUT:-400} python3 scripts/bench_serving.py --bin /tmp/petrel --model /tmp/ckpt-7b --device cuda \
        --paths "offline;stream-async" --concurrency "${SERVE_CONCURRENCY:-1;16;64;128;256}" --requests-per-client ${SERVE_RPC:-4} \
        --input-len ${SERVE_IN:-128} --output-len ${SERVE_OUT:-128} --repeats ${SERVE_REPEATS:-1} 2>&1 | tee -a "$OUT/servebench.md"
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
        /tmp/petrel bench --device cuda --dummy-weights llama-2-7b --dtype f16 --batch-size 1 --input-output-len 60,40 ${PROFILE_ARGS:-} \
        > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
    python3 scripts/ncu_summary.py "$OUT/ncu.csv" 2>&1 | tee "$OUT/profile.md"
fi
exit $status
