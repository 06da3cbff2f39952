#!/usr/bin/env bash
# On the GPU machine, after scripts/cuda-device-run.sh built the library and unpacked /tmp/petrel:
# serves the tiny fixture's repository with --device cuda and checks, over real sockets, the
# issue's curl generate, generate_stream, an OpenAI completion, and the GPU metrics; SIGTERM exits 0.
set -uo pipefail
OUT=${OUT:-/tmp/petrel-out}
export PETREL_CUDA_LIB=${PETREL_CUDA_LIB:-$PWD/kernels/cuda/libpetrel_cuda.so}
repo=$(mktemp -d)/repo
/tmp/petrel repo init --model Tests/Fixtures/tiny-llama --output "$repo" >/dev/null || exit 1
/tmp/petrel serve --model-repository "$repo" --device cuda > "$OUT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do curl -sf localhost:8000/v2/health/ready >/dev/null && break; sleep 0.5; done
status=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; status=1; fi; }
gen=$(curl -s -X POST localhost:8000/v2/models/ensemble/generate -d '{"text_input": "What is machine learning?", "max_tokens": 20, "bad_words": "", "stop_words": "", "pad_id": 2, "end_id": 2}')
echo "generate: $gen"
check "generate returns text_output" '[[ "$gen" == *text_output* ]]'
stream=$(curl -s -N -X POST localhost:8000/v2/models/ensemble/generate_stream -d '{"text_input": "What is machine learning?", "max_tokens": 8, "stream": true}')
check "generate_stream sends events" '[ "$(grep -c "^data:" <<<"$stream")" -ge 2 ]'
oai=$(curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' -d '{"model": "ensemble", "prompt": "What is machine learning?", "max_tokens": 8, "temperature": 0}')
echo "openai: $oai"
check "openai completion has choices" '[[ "$oai" == *choices* ]]'
metrics=$(curl -s localhost:8002/metrics)
grep -E "^nv_gpu_|^nv_energy|^nv_inference_request_success" <<<"$metrics"
check "nv_gpu_memory_used_bytes exported" 'grep -q "^nv_gpu_memory_used_bytes{gpu_uuid=\"GPU-" <<<"$metrics"'
for family in nv_gpu_utilization nv_gpu_power_usage nv_gpu_power_limit nv_energy_consumption; do
    check "$family exported (NVML)" 'grep -q "^$family{gpu_uuid=\"GPU-" <<<"$metrics"'
done
# Under load: a 64-token generation running while a second scrape is taken, to see the figures move.
curl -s -X POST localhost:8000/v2/models/ensemble/generate -d '{"text_input": "What is machine learning?", "max_tokens": 64}' >/dev/null &
load=$!
sleep 0.3
curl -s localhost:8002/metrics | grep -E "^nv_gpu_utilization|^nv_gpu_power_usage|^nv_energy" | sed 's/^/under load: /'
wait $load
kill -TERM $pid; wait $pid; rc=$?
check "SIGTERM exits 0" '[ $rc = 0 ]'
exit $status
