// internal.h: the context behind the opaque petrel_context handle, and helpers shared by the
// .cu files of libpetrel_cuda.so. Nothing here crosses the C ABI.
#pragma once
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../../Sources/CPetrelCUDA/include/petrel_cuda.h"

// A host buffer's last upload, kept so that ops called once per layer with the same host
// arrays (positions, block tables) copy them to the device once per forward pass.
struct UploadCache {
    std::vector<unsigned char> bytes;
    void *dev = nullptr;
};

struct petrel_context {
    int device = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    cudaMemPool_t pool = nullptr;
    void *cublas_workspace = nullptr;
    char error[1024] = {0};

    // Pinned host staging and device scratch, both bump-allocated and reset together whenever
    // the stream is known idle (synchronize, download). Device scratch holds small per-call
    // inputs (ids, positions, attention metadata) that kernels read after the call returns.
    unsigned char *staging = nullptr;
    unsigned char *scratch = nullptr;
    size_t arena_bytes = 0;
    size_t arena_used = 0;
    UploadCache positions_cache, inv_freq_cache, attention_cache;
    // Split-K decode attention's per-partition results (fp32), grown on demand, stream-ordered.
    void *decode_partials = nullptr;
    size_t decode_partials_bytes = 0;
    int sm_count = 0;
};

// Records a formatted message on the context and returns `status`.
int32_t fail(petrel_context *ctx, int32_t status, const char *format, ...);

#define CUDA_TRY(ctx, call)                                                                  \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            return fail((ctx), PETREL_ERROR_CUDA, "%s: %s (%s:%d)", #call, cudaGetErrorString(e_), \
                        __FILE__, __LINE__);                                                 \
    } while (0)

// After a kernel launch: reports launch-configuration errors at once.
#define LAUNCH_CHECK(ctx) CUDA_TRY(ctx, cudaGetLastError())

// Copies `bytes` host bytes to device scratch (through pinned staging) on the stream and
// returns the device address in *out; valid until the arena is next reset.
int32_t upload_scratch(petrel_context *ctx, const void *host, size_t bytes, void **out);
// Like upload_scratch, but reuses the previous upload when the bytes are unchanged.
int32_t upload_cached(petrel_context *ctx, UploadCache &cache, const void *host, size_t bytes, void **out);
// Makes sure `bytes` (the sum of one op's uploads, each rounded up to 256) fit in the arena
// without a reset between them, so one op's inputs never overwrite each other.
int32_t reserve_arena(petrel_context *ctx, size_t bytes);
// Marks the arena free; call only when the stream is idle.
void reset_arena(petrel_context *ctx);

inline unsigned grid_for(int64_t count, int threads) {
    int64_t blocks = (count + threads - 1) / threads;
    return (unsigned)(blocks > 1 << 30 ? 1 << 30 : blocks);
}
