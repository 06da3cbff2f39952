#!/usr/bin/env bash
# NVIDIA's load tool against Petrel's OpenAI routes: `aiperf profile` on /v1/completions and
# /v1/chat/completions, streaming and not, a small request count at concurrency 4, against a CPU
# `petrel serve` of the tiny Llama fixture (its tokenizer folder is aiperf's --tokenizer, so nothing is
# fetched). Fails when aiperf reports an error or completes fewer requests than it sent.
# aiperf and its dependencies go into .cache/aiperf-venv (installed when missing; a few minutes once).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/.build/debug/petrel}
VENV=$ROOT/.cache/aiperf-venv
if ! "$VENV/bin/aiperf" --help >/dev/null 2>&1; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "aiperf==0.13.0"
fi
work=$(mktemp -d)
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
"$BIN" repo init --model Tests/Fixtures/tiny-llama --output "$work/repo" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" serve --model-repository "$work/repo" --http-port "$port" --grpc-port 0 --metrics-port 0 > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do curl -sf "localhost:$port/v2/health/ready" >/dev/null && break; sleep 0.5; done
curl -sf "localhost:$port/v2/health/ready" >/dev/null || { cat "$work/server.log"; exit 1; }
status=0 passed=0 failed=0
for endpoint in completions chat; do
    for streaming in "" "--streaming"; do
        out=$work/$endpoint${streaming:+-stream}
        if ! "$VENV/bin/aiperf" profile --model ensemble --url "http://127.0.0.1:$port" --endpoint-type "$endpoint" $streaming \
            --concurrency 4 --request-count 12 --synthetic-input-tokens-mean 24 --output-tokens-mean 8 \
            --tokenizer "$ROOT/Tests/Fixtures/tiny-llama" --ui-type none --artifact-dir "$out" > "$out.log" 2>&1; then
            echo "FAIL aiperf $endpoint ${streaming:-non-streaming}: exit status"; tail -20 "$out.log"; status=1; failed=$((failed + 1)); continue
        fi
        summary=$(python3 - "$out" <<'PY'
import glob, json, sys
files = glob.glob(sys.argv[1] + "/**/*aiperf*.json", recursive=True)
if not files:
    print("no aiperf JSON export"); sys.exit(1)
data = json.load(open(files[0]))
def value(name):
    m = data.get(name) or data.get("records", {}).get(name) or {}
    return m.get("avg") if isinstance(m, dict) else m
count = value("request_count")
errors = data.get("error_summary") or []
print(f"requests {count}, errors {len(errors)}, request throughput {value('request_throughput')}, "
      f"output token throughput {value('output_token_throughput')}")
sys.exit(0 if count and count >= 12 and not errors else 1)
PY
        ) && { echo "ok   aiperf $endpoint ${streaming:-non-streaming}: $summary"; passed=$((passed + 1)); } \
          || { echo "FAIL aiperf $endpoint ${streaming:-non-streaming}: $summary"; tail -20 "$out.log"; status=1; failed=$((failed + 1)); }
    done
done
echo "aiperf: $passed passed, $failed failed"
exit $status
