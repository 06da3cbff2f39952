#!/usr/bin/env bash
# Installs a CUDA 13.0 compiler and the headers/libraries kernels/cuda needs (nvcc, cudart,
# cuBLAS) from NVIDIA's PyPI wheels into .cache/cuda, on a machine with no GPU and no CUDA
# toolkit: enough to compile-check the kernels and to build the libpetrel_cuda.so that
# `scripts/cuda-pack.sh --with-library` carries to the GPU machine (CUDA 13.0 there too).
# Prints the two exports to use; `eval "$(scripts/setup-nvcc.sh)"` sets them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD/.cache/cuda
CUDA=$ROOT/nvidia/cu13
if [ ! -x "$CUDA/bin/nvcc" ] || [ ! -f "$CUDA/include/cublas_v2.h" ]; then
    mkdir -p "$ROOT"
    # cuBLAS goes into its own folder first: pip --target does not merge into a namespace
    # folder another wheel already created.
    python3 -m pip install --quiet --no-deps --target "$ROOT" \
        "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-runtime==13.0.*" \
        "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*" >&2
    python3 -m pip install --quiet --no-deps --target "$ROOT/cublas" "nvidia-cublas==13.0.*" >&2
    cp -rn "$ROOT/cublas/nvidia/cu13/include/." "$CUDA/include/"
    cp -rn "$ROOT/cublas/nvidia/cu13/lib/." "$CUDA/lib/"
    # The linker wants the unversioned names.
    (cd "$CUDA/lib" && for f in *.so.*; do [ -e "${f%%.so.*}.so" ] || ln -s "$f" "${f%%.so.*}.so"; done)
fi
"$CUDA/bin/nvcc" --version | tail -1 >&2
echo "export PATH=$CUDA/bin:\$PATH"
echo "export LIBRARY_PATH=$CUDA/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
