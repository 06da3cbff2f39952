#!/usr/bin/env bash
# Packs a release petrel for the GPU machine (which has no Swift toolchain): a static-stdlib
# build, stripped and gzipped into .device/petrel.gz (git-ignored), which the device call carries
# and scripts/cuda-device-run.sh unpacks. The CUDA library itself is built there (make -C kernels/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --product petrel
mkdir -p .device
strip -o .device/petrel .build/release/petrel
gzip -9 -f .device/petrel
ls -l .device/petrel.gz
