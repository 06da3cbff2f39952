#!/usr/bin/env bash
# Packs a release petrel for the GPU machine (which has no Swift toolchain): a static-stdlib
# build, stripped and gzipped into .device/petrel.gz (git-ignored), which the device call carries
# and scripts/cuda-device-run.sh unpacks. The CUDA library itself is built there (make -C kernels/cuda),
# unless --with-library: then it is built here too (nvcc on PATH: `eval "$(scripts/setup-nvcc.sh)"`
# installs CUDA 13.0's nvcc and cuBLAS from NVIDIA's wheels) and carried as .device/libpetrel_cuda.so,
# saving the GPU machine's build time (and kernels/cuda/bench_gemv, for the device run's gemv stage).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --product petrel
mkdir -p .device
strip -o .device/petrel .build/release/petrel
gzip -9 -f .device/petrel
if [ "${1:-}" = "--with-library" ]; then
    make -j 2 -C kernels/cuda libpetrel_cuda.so bench_gemv
    cp kernels/cuda/libpetrel_cuda.so .device/libpetrel_cuda.so
    cp kernels/cuda/bench_gemv .device/bench_gemv
fi
ls -l .device/
