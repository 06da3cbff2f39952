// internal.h: the context behind the opaque petrel_context handle, and helpers shared by the
// .cu files of libpetrel_cuda.so. Nothing here crosses the C ABI.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../../Sources/CPetrelCUDA/include/petrel_cuda.h"

// A host buffer's last upload, kept so that ops called once per layer with the same host
// arrays (positions, block tables) copy them to the device once per forward pass.
struct UploadCache {
    std::vector<unsigned char> bytes;
    void *dev = nullptr;
};

// The streaming GEMV's epilogues and its largest row count (gemv.cu).
enum { kGemvPlain = 0, kGemvBias = 1, kGemvSwiGLU = 2, kGemvAdd = 3 };
// The GEMV with the RMSNorm in front keeps the normalised rows in shared memory: at most this much
// (rows x k x 2 bytes; 48 KiB needs no opt-in, and keeps 4 blocks an SM at the least).
constexpr size_t kGemvNormSmem = 48 * 1024;
// Matmuls of at most this many activation rows take the streaming GEMV, larger ones cuBLAS (the
// cut-over: docs/BENCHMARKS.md; kernels/cuda/dev/bench_gemv times both sides of it).
constexpr int kGemvMaxRows = 4;

// What a decode step's graph depends on besides its inputs' values (graphs.cu): the caller's
// buffers (owner), rows, sequences, block-table capacity, split-K partitions (rounded up to a power
// of two), the attention shape and the cache's block size.
using StepKey = std::tuple<uint64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;

// A decode step run as a CUDA graph (graphs.cu). Between petrel_step_begin and petrel_step_end the
// step's inputs live in `dev` (one upload) and the enqueue functions read them from there instead
// of their host arrays; the step's ops are either run (the first time a shape is seen: a warm-up
// that also sizes every scratch buffer) or captured into a graph that is launched then and
// replayed by later steps of the same shape.
struct StepState {
    bool enabled = true;          // petrel_context_options::cuda_graphs
    bool active = false;          // inside petrel_step_begin .. petrel_step_end
    bool capturing = false;       // ... and the stream is being captured
    bool broken = false;          // an enqueue could not be captured (a scratch buffer too small)
    StepKey key;
    int64_t n = 0, max_parts = 0, half_dim = 0;   // rows (= sequences), grid partitions, head_dim / 2
    // The step's inputs on the device (int32 words, `capacity` bytes allocated), staged in pinned `host`.
    unsigned char *host = nullptr;
    void *dev = nullptr;
    size_t capacity = 0;
    cudaEvent_t copied = nullptr;  // the last upload from `host` has been read
    const int4 *seqs = nullptr;                                 // (token_begin, 1, context_before, table offset)
    const int32_t *tables = nullptr, *slots = nullptr, *ids = nullptr, *positions = nullptr, *rows = nullptr,
                  *decode = nullptr, *dyn = nullptr;            // dyn: partition size in keys, prefetch flag
    const float *inv_freq = nullptr;
    int64_t row_count = 0;
    // matmul_swiglu's cuBLAS product for a step (a graph cannot allocate it), grown outside captures.
    void *gate_up = nullptr;
    size_t gate_up_bytes = 0;
    std::map<StepKey, cudaGraphExec_t> graphs;
    std::set<StepKey> warmed, failed;
    int64_t captured = 0, replayed = 0;
};

struct petrel_context {
    int device = 0;
    // Element type of every device tensor of the context (weights, activations, KV cache,
    // logits): PETREL_DTYPE_F16 or PETREL_DTYPE_BF16 (petrel_context_set_dtype). Math inside the
    // kernels is fp32 either way.
    int32_t dtype = PETREL_DTYPE_F16;
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
    // Split-K decode attention's arrival counters (int32, zero between launches), grown on demand.
    int32_t *decode_counters = nullptr;
    size_t decode_counter_count = 0;
    int sm_count = 0;
    // Programmatic dependent launch (Hopper) for the decode chain's GEMVs and norms: each is
    // launched while its predecessor still runs, gets resident, starts its own weight loads and
    // waits (griddepcontrol.wait) before it reads anything the predecessor writes
    // (petrel_context_options::pdl).
    bool pdl = true;
    // The cuBLAS prefill attention's scratch (attention.cu), grown on demand, stream-ordered: the
    // rotated keys of the step's rows (the context's element type, with RoPE only), then one query
    // block's scores (fp32) and probabilities (the context's element type).
    void *prefill_scratch = nullptr;
    size_t prefill_scratch_bytes = 0;
    // Weight-only matmuls of many rows (weight_only.cu): the matrix dequantized to the context's
    // element type for cuBLAS, grown on demand to the largest matrix seen (Llama-2-7B: gate/up,
    // 22016 x 4096 x 2 bytes = 172 MiB), stream-ordered.
    void *wo_scratch = nullptr;
    size_t wo_scratch_bytes = 0;
    // Decode steps as CUDA graphs (graphs.cu).
    StepState step;
    // petrel_debug_fail_alloc_after (the self-test): successful allocations before one fails; < 0: none fails.
    int64_t debug_allocs_before_failure = -1;
};

// Drops every captured step graph (their kernels hold addresses of buffers about to be freed or
// replaced); shapes seen before are warmed up again before they are captured anew.
void invalidate_graphs(petrel_context *ctx);
// Frees the graphs and the step buffers (petrel_context_destroy).
void destroy_step_state(petrel_context *ctx);
// Closes a step left open by a failed call: a capture in progress is ended and its graph dropped.
void abandon_step(petrel_context *ctx);

// ---- the split-K decode attention (attention_decode.cu)

constexpr int kDecodeMaxGroup = 8;   // query heads per KV head it takes
constexpr int kMaxPartKeys = 512;    // the largest split-K partition (decode_partition)
constexpr int kMinPartKeys = 64;     // the smallest: partitions are halved down to this size
constexpr int kDecodeEarlyBlocksPerSM = 4;   // grids up to this many blocks an SM take the early K/V loads

// The split-K decode launch: decode_count sequences (their indices into seqs at `decode`), at most
// max_parts partitions each (blocks past a sequence's own partitions return at once), the partition
// size at dyn[0] (at most smem_keys keys: the scores' shared memory is sized for that many), whether
// to prefetch the blocks' K/V rows at dyn[1] (decode_prefetch).
// With `rope` (positions and slots per qkv row, inv_freq per frequency; a step's upload) the kernel
// also does rope_kv_write_kernel's work for its sequences: it rotates the query heads it reads (qkv
// is left as it is) and the block of each KV head's last partition writes the new token's rotated
// key and its value to the cache before reading them. Instantiated for half and __nv_bfloat16.
struct DecodeRope {
    const int32_t *positions = nullptr, *slots = nullptr;
    const float *inv_freq = nullptr;
};
template <typename T>
cudaError_t launch_decode(petrel_context *ctx, const T *qkv, int64_t stride, int heads, int kv_heads, int head_dim,
                          const T *k_cache, const T *v_cache, int block_size, const int4 *seqs, const int32_t *tables,
                          const int32_t *decode, const int32_t *dyn, int64_t decode_count, int max_parts, int smem_keys,
                          float scale, T *out, DecodeRope rope = DecodeRope());
// Split-K decode attention's partition for decode contexts of these lengths (keys, the new token
// included): the largest of 512, 256, 128, 64 keys that still gives about two blocks per SM, then
// evened out over the longest context (rounded up to 32 keys). *max_parts: partitions of the
// longest context.
void decode_partition(const petrel_context *ctx, const std::vector<int64_t> &contexts, int64_t kv_heads,
                      int *part_keys, int *max_parts);
// Whether the decode attention asks its blocks' keys and values into L2 before its programmatic wait
// (dyn[1]): only while the step's whole K/V of one layer is small beside L2 (kDecodePrefetchBytes);
// past that, rows prefetched before they are read would be evicted first and read twice.
constexpr int64_t kDecodePrefetchBytes = 16ll << 20;
int32_t decode_prefetch(const std::vector<int64_t> &contexts, int64_t kv_heads, int64_t head_dim);
// Whether a decode step of this attention shape can run from a step upload (the split-K kernel
// takes every sequence: head_dim a multiple of 8, at most 192, groups of at most 8 query heads).
bool step_attention_applies(int64_t heads, int64_t kv_heads, int64_t head_dim);
// Makes sure the split-K partials and arrival counters hold `decode_count` sequences of `heads`
// query heads in `max_parts` partitions (growing them drops the step graphs).
int32_t ensure_decode_scratch(petrel_context *ctx, int64_t decode_count, int64_t heads, int64_t kv_heads,
                              int64_t head_dim, int64_t max_parts);

// Whether the context's device tensors are bf16 (else fp16).
inline bool is_bf16(const petrel_context *ctx) { return ctx->dtype == PETREL_DTYPE_BF16; }

// cuBLAS's name for the context's element type.
inline cudaDataType_t cuda_element_type(const petrel_context *ctx) { return is_bf16(ctx) ? CUDA_R_16BF : CUDA_R_16F; }

// ---- element types: every kernel that reads or writes device tensors is a template on T, the
// storage type (half or __nv_bfloat16; 2 bytes either way), and does its math in fp32 through
// these helpers. For half they are exactly the intrinsics the kernels used before bf16 existed
// (__half2float, __half22float2, __float2half, __floats2half2_rn, __float2half2_rn), so the fp16
// kernels compile to the same instructions; for bf16 the conversions to it round to nearest even.

template <typename T> struct Pair;   // two elements in one 4-byte word
template <> struct Pair<half> { using type = half2; };
template <> struct Pair<__nv_bfloat16> { using type = __nv_bfloat162; };
template <typename T> using pair_t = typename Pair<T>::type;

__device__ __forceinline__ float to_float(half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float2 to_float2(half2 v) { return __half22float2(v); }
__device__ __forceinline__ float2 to_float2(__nv_bfloat162 v) { return __bfloat1622float2(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ half from_float<half>(float v) { return __float2half(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// (a, b) as a pair: .x = a, .y = b.
template <typename T> __device__ __forceinline__ pair_t<T> from_float2(float a, float b);
template <> __device__ __forceinline__ half2 from_float2<half>(float a, float b) { return __floats2half2_rn(a, b); }
template <> __device__ __forceinline__ __nv_bfloat162 from_float2<__nv_bfloat16>(float a, float b) {
    return __floats2bfloat162_rn(a, b);
}

// (v, v) as a pair.
template <typename T> __device__ __forceinline__ pair_t<T> splat2(float v);
template <> __device__ __forceinline__ half2 splat2<half>(float v) { return __float2half2_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat162 splat2<__nv_bfloat16>(float v) { return __float2bfloat162_rn(v); }

// Rotate-half RoPE of one pair (a, b) = (x[i], x[i + head_dim / 2]) at angle position * freq, rounded to T:
// the one formula of rope_kv_write_kernel and the decode attention's fused rotation, so both give the same bits.
template <typename T>
__device__ __forceinline__ void rope_rotate(float a, float b, float position, float freq, T *ra, T *rb) {
    float s, c;
    sincosf(position * freq, &s, &c);
    *ra = from_float<T>(a * c - b * s);
    *rb = from_float<T>(b * c + a * s);
}

// Host side: calls f(ElementTag<T>{}) with T the context's element type, so a launcher is
// written once (`using T = typename decltype(tag)::type;`) and instantiated for both.
template <typename T> struct ElementTag { using type = T; };
template <typename F> auto with_element_type(const petrel_context *ctx, F &&f) {
    if (is_bf16(ctx)) return f(ElementTag<__nv_bfloat16>{});
    return f(ElementTag<half>{});
}

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

// Whether gemv_enqueue serves this matmul (at most kGemvMaxRows rows, k a multiple of 8,
// 16-byte-aligned operands).
bool gemv_applies(int64_t n, int64_t k, const void *x, const void *w, const void *out);
// Whether gemv_enqueue can also normalise x first (norm_w aligned, the normalised rows fit kGemvNormSmem).
bool gemv_norm_applies(int64_t n, int64_t k, const void *x, const void *w, const void *out, const void *norm_w);
// out (n, cols) = x (n, k) . w (cols, k)^T with the epilogue `mode`: + bias (cols); SwiGLU, where w
// has 2 cols rows (gate rows, then up rows) and out = silu(x . gate^T) * (x . up^T); or Add: out +=.
// With norm_w (not with Add), x is normalised per row first: x * rsqrt(mean(x^2) + eps) * norm_w.
int32_t gemv_enqueue(petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w, int64_t cols,
                     const void *bias, void *out, const void *norm_w = nullptr, float eps = 0.f);

// ---- weight-only matrices (weight_only.cu)

// Weight-only matmuls of at most this many activation rows take the tensor-core GEMV (the same
// row-count independence as gemv.cu's); up to kWoCublasMinRows - 1 the tiled GEMM that
// dequantizes in its main loop; from there on the matrix is dequantized into ctx->wo_scratch for
// cuBLAS (kernels/cuda/dev/bench_wo times each side of both cut-overs).
constexpr int kWoGemvMaxRows = 4;
constexpr int64_t kWoCublasMinRows = 512;
// out (n, cols) = x (n, k) . w^T with the epilogue `mode` (kGemvPlain / kGemvBias: + bias unless
// NULL; kGemvSwiGLU: w has 2 cols rows; kGemvAdd: out +=), w a weight-only matrix laid out as d
// says. With norm_w, x is normalised first (x * rsqrt(mean(x^2) + eps) * norm_w): inside the GEMV
// when it fits, else into `normed` (n, k) by the norm kernel.
int32_t wo_matmul(petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w, const petrel_wo_desc &d,
                  int64_t cols, const void *bias, void *out, const void *norm_w = nullptr, float eps = 0.f,
                  void *normed = nullptr);

inline unsigned grid_for(int64_t count, int threads) {
    int64_t blocks = (count + threads - 1) / threads;
    return (unsigned)(blocks > 1 << 30 ? 1 << 30 : blocks);
}

// 16 bytes at p (16-byte aligned, never written by a kernel: weights) past L1, which a stream
// over a matrix read once would only churn. V: int4 or uint4.
template <typename V = int4>
__device__ __forceinline__ V load_streaming(const void *p) {
    V v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// ---- programmatic dependent launch (see petrel_context::pdl)

// Waits until the grids this one depends on have finished and their writes are visible; a no-op
// when the kernel was launched without the attribute. Call before touching a predecessor's output
// (or anything it might still read).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel in the stream (if launched with the attribute) start launching its blocks.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Launches `kernel` on the context's stream, as a programmatic dependent of the previous kernel
// when ctx->pdl is set. The kernel must call pdl_wait() before it reads its inputs.
template <typename... Params, typename... Args>
cudaError_t launch_dependent(const petrel_context *ctx, dim3 grid, dim3 block, size_t smem, void (*kernel)(Params...),
                             Args... args) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = ctx->stream;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = ctx->pdl ? 1 : 0;
    return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

// ---- the cuBLAS prefill attention (attention_gemm.cu), used by petrel_attention_enqueue

constexpr int64_t kGemmScoreBudget = 16ll << 20;    // heads x rows x Lp per block: 64 MiB S + 32 MiB P
// Fresh prefills (no cached prefix) of at least this many tokens take it; shorter ones stay on the
// tiled kernel (attention_gemm.cu says why).
constexpr int64_t kPrefillGemmMinTokens = 256;

inline int64_t round8(int64_t x) { return (x + 7) / 8 * 8; }
inline size_t round256(size_t x) { return (x + 255) / 256 * 256; }

// Query rows per block for a fresh prefill of `tokens` tokens: all of them when the whole T x T
// scores fit the budget, else the largest multiple of 16 that fits with T keys; 0: none fits.
inline int64_t gemm_block_rows(int64_t heads, int64_t tokens) {
    const int64_t lp = round8(tokens);
    if (heads * tokens * lp <= kGemmScoreBudget) return tokens;
    const int64_t r = kGemmScoreBudget / (heads * lp) / 16 * 16;
    return r >= 16 ? r : 0;
}

// One fresh prefill through cuBLAS (documented at its definition in attention_gemm.cu;
// instantiated for half and __nv_bfloat16).
template <typename E>
int32_t prefill_gemm_attention(petrel_context *ctx, int64_t T, int64_t R, int64_t heads, int64_t kv_heads,
                               int64_t head_dim, const E *q, int64_t ldq, const E *k, int64_t ldk,
                               const E *v, int64_t ldv, float scale, float *S, E *P, E *out, int64_t ldo);
