#!/usr/bin/env bash
# Installs the real client libraries the conformance tests use, when missing:
# tritonclient (HTTP and gRPC), openai, pytest, requests, numpy; and curl.
set -euo pipefail
if ! command -v curl >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq curl
fi
python3 - <<'PY' || python3 -m pip install --quiet "tritonclient[http,grpc]" openai pytest requests numpy
import importlib
for m in ["tritonclient.http", "tritonclient.grpc", "openai", "pytest", "requests", "numpy"]:
    importlib.import_module(m)
PY
