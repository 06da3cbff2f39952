#!/usr/bin/env bash
# Packs a release petrel for the GPU machine (which has no Swift toolchain) into .device/
# (git-ignored), which the device call carries (carry: [".device"], 64 MiB at most) and
# scripts/cuda-device-run.sh unpacks.
#
#   scripts/cuda-pack.sh                    a static-stdlib build, stripped, as .device/petrel.gz; the
#                                           CUDA library is built there (make -C kernels/cuda)
#   scripts/cuda-pack.sh --with-library     also libpetrel_cuda.so, kernels/cuda/bench_gemv, bench_wo and bench_attn, built
#                                           here (nvcc on PATH: `eval "$(scripts/setup-nvcc.sh)"`
#                                           installs CUDA 13.0's nvcc and cuBLAS from NVIDIA's wheels),
#                                           saving the GPU machine's build time
#   scripts/cuda-pack.sh --baseline COMMIT  "before" and "after" in one payload, for the device run's
#                                           before-after stage: this tree's petrel and library, and
#                                           COMMIT's, built in a git worktree of its own
#                                           (.cache/baseline, with its own .build: a second release
#                                           build, 10 minutes or more here). Both binaries link the
#                                           Swift runtime dynamically and share one copy of it, so
#                                           the payload stays under 64 MiB: .device/before-after.tar.xz
#                                           (after/ and before/: petrel, libpetrel_cuda.so; before/commit;
#                                           swift/: the runtime's shared libraries). Needs nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
with_library=0 baseline=
while [ $# -gt 0 ]; do
    case "$1" in
    --with-library) with_library=1 ;;
    --baseline) baseline=${2:?--baseline needs a commit}; shift ;;
    *) echo "usage: $0 [--with-library] [--baseline COMMIT]" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p .device

if [ -z "$baseline" ]; then
    rm -f .device/before-after.tar.xz
    swift build -c release --static-swift-stdlib --product petrel
    strip -o .device/petrel .build/release/petrel
    gzip -9 -f .device/petrel
    if [ $with_library = 1 ]; then
        make -j 2 -C kernels/cuda libpetrel_cuda.so bench_gemv bench_wo bench_attn
        cp kernels/cuda/libpetrel_cuda.so .device/libpetrel_cuda.so
        cp kernels/cuda/bench_gemv .device/bench_gemv
        cp kernels/cuda/bench_wo .device/bench_wo
        cp kernels/cuda/bench_attn .device/bench_attn
    fi
    ls -l .device/
    exit 0
fi

command -v nvcc >/dev/null || { echo "--baseline builds both libraries here: put nvcc on PATH (eval \"\$(scripts/setup-nvcc.sh)\")" >&2; exit 1; }
commit=$(git rev-parse --verify "$baseline^{commit}")
# The baseline's worktree: made once, moved to the commit asked for; its .build is kept between runs.
base=$ROOT/.cache/baseline
if [ ! -e "$base/.git" ]; then
    git worktree add --detach "$base" "$commit"
else
    git -C "$base" checkout --quiet --detach "$commit"
fi
# The same dependency versions as this tree, resolved without the network where the cache has them.
[ -f Package.resolved ] && cp Package.resolved "$base/Package.resolved"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/after" "$stage/before" "$stage/swift"
build() {   # build DIR DEST: a dynamically linked release petrel and its libpetrel_cuda.so
    (cd "$1" && swift build -c release --product petrel)
    strip -o "$2/petrel" "$1/.build/release/petrel"
    make -j 2 -C "$1/kernels/cuda" libpetrel_cuda.so
    cp "$1/kernels/cuda/libpetrel_cuda.so" "$2/libpetrel_cuda.so"
}
build "$ROOT" "$stage/after"
build "$base" "$stage/before"
echo "$commit" > "$stage/before/commit"
git rev-parse HEAD > "$stage/after/commit"
# The toolchain's shared libraries either binary loads (the GPU machine has the system ones).
toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
ldd "$stage/after/petrel" "$stage/before/petrel" | awk '$3 ~ /^\// {print $3}' | grep "^$toolchain/" | sort -u |
    while read -r lib; do cp -L "$lib" "$stage/swift/"; done

rm -f .device/petrel.gz .device/libpetrel_cuda.so .device/bench_gemv .device/bench_wo
tar -C "$stage" -cf - after before swift | xz -9 -T2 > .device/before-after.tar.xz
ls -l .device/
bytes=$(stat -c %s .device/before-after.tar.xz)
echo "payload: $((bytes / 1048576)) MiB (the device call carries at most 64 MiB)"
[ "$bytes" -lt $((60 * 1048576)) ] || { echo "payload too large" >&2; exit 1; }
