#!/usr/bin/env bash
# Fetches the perplexity yardstick: alice29.txt of the Canterbury corpus (Lewis Carroll, "Alice's
# Adventures in Wonderland", Project Gutenberg's Millennium Fulcrum Edition 2.9; public domain),
# as the PyPI source package brotli==1.2.1 (MIT) ships it in tests/testdata/, into the cache,
# verifying its sha256. Prints the text's path.
set -euo pipefail
. "$(dirname "$0")/fetch-lib.sh"
fetch_init text alice29.txt 7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0
echo "fetching $NAME from PyPI (brotli==1.2.1 source, ~7 MB)..." >&2
python3 -m pip download --quiet --no-deps --no-binary :all: brotli==1.2.1 -d "$TMP" >&2
python3 - "$TMP" "$DEST.part" <<'PY'
import sys, tarfile, glob
sdist = glob.glob(sys.argv[1] + "/brotli-1.2.1.tar.gz")[0]
with tarfile.open(sdist) as t, open(sys.argv[2], "wb") as out:
    out.write(t.extractfile("brotli-1.2.1/tests/testdata/alice29.txt").read())
PY
fetch_install
