#!/usr/bin/env bash
# Installs the Python reference implementations used only to (re)generate the test fixtures:
# transformers, tokenizers, gguf, sentencepiece, safetensors, torch (CPU), jinja2, accelerate
# (transformers needs accelerate to load a GGUF model). Run scripts/make_fixtures.py after it.
# The fixtures are committed, so `make test` does not need this.
set -euo pipefail
python3 -m pip install --quiet torch transformers tokenizers gguf sentencepiece safetensors numpy protobuf jinja2 accelerate
