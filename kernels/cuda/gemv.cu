// gemv.cu: the skinny matmul of decode steps. With a handful of activation rows (n <= 8) a
// matmul is a stream over the weights; cuBLAS's GEMM kernels reach only part of the card's
// bandwidth there. Here each warp owns one output column (one weight row), streams that row in
// 16-byte loads that bypass L1 (several in flight per lane), dots it with every activation row
// (read through the read-only cache; they are small and shared by the whole block) in fp32, and
// reduces across the warp. Epilogues: + bias, or SwiGLU (the warp also streams the matching "up"
// row and writes silu(gate) * up, so the gate/up product never reaches memory).
//
// Batch invariance: every (activation row, output column) dot product sums in the same order
// whatever n is (lane l takes chunks l, l + 32, ...; the same butterfly reduction), so a
// sequence's logits do not depend on how many others share the step, as long as n stays within
// the kernel's range.
//
// Element type T: the context's (half or __nv_bfloat16); weights, activations, bias and output
// all of it, products and sums in fp32 either way.
#include "internal.h"

namespace {

constexpr int kWarps = 8;    // output columns per block (one per warp)
constexpr int kUnroll = 4;   // 16-byte weight loads in flight per lane per weight row

__device__ __forceinline__ int4 load_streaming(const int4 *p) {
    int4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// acc + the dot product of 8 elements of T each (16 bytes: 4 pairs), in order, fp32 fused multiply-adds.
template <typename T>
__device__ __forceinline__ float dot8(const int4 &w, const int4 &x, float acc) {
    using P = pair_t<T>;
    const P *wh = reinterpret_cast<const P *>(&w);
    const P *xh = reinterpret_cast<const P *>(&x);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 a = to_float2(wh[i]), b = to_float2(xh[i]);
        acc = fmaf(a.x, b.x, acc);
        acc = fmaf(a.y, b.y, acc);
    }
    return acc;
}

__device__ __forceinline__ float warp_total(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out (N, cols): out[n][c] = x[n] . w[c] (+ bias[c]); SWIGLU: out[n][c] = silu(x[n].w[c]) * (x[n].w[c + cols]).
// S warps share one output column, each summing one contiguous slice of k (more loads in flight
// for matrices with few columns); their partial sums meet in shared memory in slice order.
template <typename T, int N, int MODE, int S>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T *__restrict__ x, const T *__restrict__ w,
                                                           const T *__restrict__ bias, int64_t k, int64_t cols,
                                                           T *__restrict__ out) {
    constexpr int R = MODE == kGemvSwiGLU ? 2 : 1;  // weight rows per output column
    __shared__ float partial[kWarps][R][N];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, slice = warp % S;
    const int64_t col = (int64_t)blockIdx.x * (kWarps / S) + warp / S;
    const bool valid = col < cols;
    const int64_t chunks = k / 8;
    const int64_t per_slice = (chunks + S - 1) / S;
    const int64_t begin = slice * per_slice, end = begin + per_slice < chunks ? begin + per_slice : chunks;
    const int4 *x4 = reinterpret_cast<const int4 *>(x);
    const int4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = reinterpret_cast<const int4 *>(w + ((valid ? col : 0) + r * cols) * k);

    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int n = 0; n < N; n++) acc[r][n] = 0.f;

    // Launched as a programmatic dependent (launch_dependent): the weights are not written by
    // the previous kernel, so the first loads of this warp's weight rows go to L2 while that
    // kernel finishes; x and out are touched only after pdl_wait().
    if (valid) {
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t c = begin + lane + u * 32;
#pragma unroll
            for (int r = 0; r < R; r++)
                if (c < end) asm volatile("prefetch.global.L2 [%0];" ::"l"(wr[r] + c));
        }
    }
    pdl_wait();
    pdl_launch_dependents();

    if (valid) {
        for (int64_t base = begin + lane; base < end; base += 32 * kUnroll) {
            int4 wv[R][kUnroll];
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                const int64_t c = base + u * 32;
#pragma unroll
                for (int r = 0; r < R; r++) wv[r][u] = c < end ? load_streaming(wr[r] + c) : make_int4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                const int64_t c = base + u * 32;
                if (c >= end) break;
#pragma unroll
                for (int n = 0; n < N; n++) {
                    const int4 xv = __ldg(x4 + n * chunks + c);
#pragma unroll
                    for (int r = 0; r < R; r++) acc[r][n] = dot8<T>(wv[r][u], xv, acc[r][n]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int n = 0; n < N; n++) acc[r][n] = warp_total(acc[r][n]);
    if (S > 1) {
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int n = 0; n < N; n++) partial[warp][r][n] = acc[r][n];
        __syncthreads();
        if (slice != 0 || lane != 0 || !valid) return;
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int n = 0; n < N; n++) {
                float total = 0.f;
#pragma unroll
                for (int q = 0; q < S; q++) total += partial[warp + q][r][n];
                acc[r][n] = total;
            }
    } else if (lane != 0 || !valid) {
        return;
    }
#pragma unroll
    for (int n = 0; n < N; n++) {
        float v = acc[0][n];
        if (MODE == kGemvBias) v += to_float(bias[col]);
        if (MODE == kGemvSwiGLU) v = v / (1.0f + __expf(-v)) * acc[R - 1][n];
        out[n * cols + col] = from_float<T>(v);
    }
}

template <typename T, int MODE, int S>
cudaError_t launch_split(const petrel_context *ctx, int64_t n, const T *x, const T *w, const T *bias, int64_t k,
                         int64_t cols, T *out) {
    const int per_block = kWarps / S;
    dim3 grid((unsigned)((cols + per_block - 1) / per_block));
    switch (n) {
#define CASE(N) \
    case N: return launch_dependent(ctx, grid, dim3(kWarps * 32), 0, gemv_kernel<T, N, MODE, S>, x, w, bias, k, cols, out);
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    }
    return cudaErrorInvalidValue;
}

// Slices per column: enough warps in flight to cover the card twice over (132 SMs x 64 warps),
// at most 4; a function of the matrix alone, so results never depend on the row count.
inline int slices_for(int64_t cols) { return cols <= 4096 ? 4 : cols <= 8192 ? 2 : 1; }

template <typename T, int MODE>
cudaError_t launch_mode(const petrel_context *ctx, int64_t n, const T *x, const T *w, const T *bias, int64_t k,
                        int64_t cols, T *out) {
    switch (slices_for(cols)) {
    case 4: return launch_split<T, MODE, 4>(ctx, n, x, w, bias, k, cols, out);
    case 2: return launch_split<T, MODE, 2>(ctx, n, x, w, bias, k, cols, out);
    default: return launch_split<T, MODE, 1>(ctx, n, x, w, bias, k, cols, out);
    }
}

template <typename T>
cudaError_t launch_gemv(const petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w,
                        int64_t cols, const void *bias, void *out) {
    const T *xt = (const T *)x, *wt = (const T *)w, *bt = (const T *)bias;
    T *ot = (T *)out;
    if (mode == kGemvBias) return launch_mode<T, kGemvBias>(ctx, n, xt, wt, bt, k, cols, ot);
    if (mode == kGemvSwiGLU) return launch_mode<T, kGemvSwiGLU>(ctx, n, xt, wt, bt, k, cols, ot);
    return launch_mode<T, kGemvPlain>(ctx, n, xt, wt, bt, k, cols, ot);
}

// Pulls the first bytes of the next matmul's weights into L2 while the small kernels before it
// run (petrel_weights_prefetch_enqueue). Each thread hands chunks to the SM's bulk-copy unit
// (fire and forget), then the grid waits for its predecessor like every kernel of the chain, so
// the kernels after it still see everything before it.
constexpr int64_t kPrefetchChunk = 16384;

__global__ void l2_prefetch_kernel(const char *a, int64_t a_bytes, const char *b, int64_t b_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int64_t a_chunks = (a_bytes + kPrefetchChunk - 1) / kPrefetchChunk;
    const int64_t chunks = a_chunks + (b_bytes + kPrefetchChunk - 1) / kPrefetchChunk;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < chunks; i += (int64_t)gridDim.x * blockDim.x) {
        const bool first = i < a_chunks;
        const int64_t offset = (first ? i : i - a_chunks) * kPrefetchChunk, total = first ? a_bytes : b_bytes;
        const int64_t size = total - offset < kPrefetchChunk ? total - offset : kPrefetchChunk;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"((first ? a : b) + offset), "r"((unsigned)size)
                     : "memory");
    }
#endif
    pdl_launch_dependents();
    pdl_wait();
}

}  // namespace

int32_t weights_prefetch_enqueue(petrel_context *ctx, const void *w, int64_t rows, int64_t k, int64_t n, int32_t halves) {
    if (ctx->l2_prefetch_bytes <= 0 || n < 1 || n > ctx->gemv_max_rows || n > kGemvMaxRows || rows < halves ||
        k % 8 != 0 || ((uintptr_t)w & 15) != 0 || (halves != 1 && halves != 2))
        return PETREL_OK;
    // Whole rows of each half, as many as the budget holds (the GEMV reads the first rows of each
    // half first: blocks start in order).
    const int64_t row_bytes = k * 2, half_rows = rows / halves;
    int64_t take = ctx->l2_prefetch_bytes / halves / row_bytes;
    if (take > half_rows) take = half_rows;
    if (take == 0) return PETREL_OK;
    const int64_t bytes = take * row_bytes;
    const char *a = (const char *)w, *b = halves == 2 ? a + half_rows * row_bytes : nullptr;
    const int64_t chunks = (bytes + kPrefetchChunk - 1) / kPrefetchChunk * halves;
    const int threads = 32;
    int64_t blocks = (chunks + threads - 1) / threads;
    if (blocks > ctx->sm_count) blocks = ctx->sm_count;
    CUDA_TRY(ctx, launch_dependent(ctx, dim3((unsigned)blocks), dim3(threads), 0, l2_prefetch_kernel, a, bytes, b,
                                   halves == 2 ? bytes : (int64_t)0));
    return PETREL_OK;
}

bool gemv_applies(const petrel_context *ctx, int64_t n, int64_t k, const void *x, const void *w, const void *out) {
    return n >= 1 && n <= ctx->gemv_max_rows && n <= kGemvMaxRows && k % 8 == 0 && ((uintptr_t)x & 15) == 0 &&
           ((uintptr_t)w & 15) == 0 && ((uintptr_t)out & 1) == 0;
}

int32_t gemv_enqueue(petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w, int64_t cols,
                     const void *bias, void *out) {
    const cudaError_t e = is_bf16(ctx) ? launch_gemv<__nv_bfloat16>(ctx, mode, x, n, k, w, cols, bias, out)
                                       : launch_gemv<half>(ctx, mode, x, n, k, w, cols, bias, out);
    CUDA_TRY(ctx, e);
    return PETREL_OK;
}
