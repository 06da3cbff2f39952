#!/usr/bin/env bash
# CPU speed of `petrel generate` on a model: prefill of a P-token prompt and decode of N tokens,
# for each thread count; optionally llama.cpp's llama-bench on the same file, side by side.
# Usage: scripts/bench-cpu.sh [MODEL] ; env: THREADS="1 2" PROMPTS="128 512" DECODE=128 REPS=3
#        LLAMA_BENCH=/path/to/llama-bench (built outside this repository; optional)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-$(scripts/fetch-model.sh)}"
THREADS="${THREADS:-1 2}"; PROMPTS="${PROMPTS:-128 512}"; DECODE="${DECODE:-128}"; REPS="${REPS:-3}"
BIN=.build/release/petrel
[ -x "$BIN" ] || swift build -c release --product petrel >&2
# A prompt of P token ids: the ids 1000, 1001, … (any in-vocabulary ids do for speed).
ids() { seq 1000 $((1000 + $1 - 1)) | paste -sd, -; }
best() { sort -g | tail -1; }
echo "| engine | threads | test | tok/s (best of $REPS) |"
echo "|---|---|---|---|"
for t in $THREADS; do
  for p in $PROMPTS; do
    r=$(for i in $(seq "$REPS"); do "$BIN" generate --model "$MODEL" --prompt-ids "$(ids "$p")" --max-tokens 1 --threads "$t" --ids 2>&1 >/dev/null | sed -n 's/.*prefill: \([0-9.]*\) tok\/s.*/\1/p'; done | best)
    echo "| petrel | $t | pp$p | $r |"
  done
  r=$(for i in $(seq "$REPS"); do "$BIN" generate --model "$MODEL" --prompt-ids "$(ids 8)" --max-tokens "$((DECODE + 1))" --ignore-eos --threads "$t" --ids 2>&1 >/dev/null | sed -n 's/.*decode: \([0-9.]*\) tok\/s.*/\1/p'; done | best)
  echo "| petrel | $t | tg$DECODE | $r |"
  if [ -n "${LLAMA_BENCH:-}" ]; then
    pl=$(echo $PROMPTS | tr ' ' ,)
    "$LLAMA_BENCH" -m "$MODEL" -t "$t" -p "$pl" -n "$DECODE" -r "$REPS" -o csv 2>/dev/null | python3 -c '
import csv, sys
for row in csv.DictReader(sys.stdin):
    test = ("pp%s" % row["n_prompt"]) if int(row["n_prompt"]) > 0 else ("tg%s" % row["n_gen"])
    print("| llama.cpp %s | %s | %s | %.1f |" % (row.get("build_commit", ""), row["n_threads"], test, float(row["avg_ts"])))'
  fi
done
