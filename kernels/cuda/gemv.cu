// gemv.cu: the skinny matmul of decode steps. With a handful of activation rows (n <= kGemvMaxRows) a
// matmul is a stream over the weights; cuBLAS's GEMM kernels reach only part of the card's
// bandwidth there. Here each warp owns one output column (one weight row), streams that row in
// 16-byte loads that bypass L1 (several in flight per lane), dots it with every activation row
// (read through the read-only cache; they are small and shared by the whole block) in fp32, and
// reduces across the warp. Epilogues: + bias, SwiGLU (the warp also streams the matching "up"
// row and writes silu(gate) * up, so the gate/up product never reaches memory), or + the output's
// old value (the residual add). Prologue, optionally: the RMSNorm of the activation rows, computed
// by every block into shared memory, so the norm needs no kernel of its own.
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

// out (N, cols): out[n][c] = x[n] . w[c] (+ bias[c]); SWIGLU: out[n][c] = silu(x[n].w[c]) * (x[n].w[c + cols]);
// ADD: out[n][c] += x[n] . w[c] (the fp32 sum rounded once). NORM: x is first normalised per row
// (x * rsqrt(mean(x^2) + eps) * norm_w, rounded to T, as rmsnorm_kernel does) into shared memory
// by every block (N x k elements: the launcher keeps that within kGemvNormSmem), and the dot
// products read that copy.
// S warps share one output column, each summing one contiguous slice of k (more loads in flight
// for matrices with few columns); their partial sums meet in shared memory in slice order.
template <typename T, int N, int MODE, int S, bool NORM>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T *__restrict__ x, const T *__restrict__ w,
                                                           const T *__restrict__ bias, int64_t k, int64_t cols,
                                                           T *__restrict__ out, const T *__restrict__ norm_w, float eps) {
    constexpr int R = MODE == kGemvSwiGLU ? 2 : 1;  // weight rows per output column
    __shared__ float partial[kWarps][R][N];
    extern __shared__ int4 normed[];                // NORM: N x k / 8 vectors
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

    // Launched as a programmatic dependent (launch_dependent): the weights are not written by any
    // kernel, so this warp's first weight loads are issued while the previous kernel finishes; x,
    // out and norm_w's product are touched only after pdl_wait().
    constexpr int64_t kRound = 32 * kUnroll;   // chunks a warp loads per round
    int64_t base = begin + lane;
    int4 wv[R][kUnroll];
    auto load = [&](int64_t from) {
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t c = from + u * 32;
#pragma unroll
            for (int r = 0; r < R; r++) wv[r][u] = c < end ? load_streaming(wr[r] + c) : make_int4(0, 0, 0, 0);
        }
    };
    if (valid) load(base);
    // NORM: the norm weights (constant too) of the first x vectors this thread normalises.
    constexpr int kThreads = kWarps * 32;
    constexpr int kNormRegs = NORM && N <= 2 ? 2 : 0;   // x vectors a row a thread keeps in registers
    const int4 *g4 = reinterpret_cast<const int4 *>(norm_w);
    int4 gr[kNormRegs > 0 ? kNormRegs : 1];
#pragma unroll
    for (int i = 0; i < kNormRegs; i++) {
        const int64_t c = threadIdx.x + i * kThreads;
        if (c < chunks) gr[i] = __ldg(g4 + c);
    }
    pdl_wait();
    pdl_launch_dependents();

    // ADD: the values added to, read now (one thread writes each output).
    float old[N];
    if (MODE == kGemvAdd && valid && slice == 0 && lane == 0)
#pragma unroll
        for (int n = 0; n < N; n++) old[n] = to_float(out[n * cols + col]);

    const int4 *xs = x4;
    if constexpr (NORM) {
        // Sums of squares per row: thread t takes vectors t, t + 256, ...; then the warps' sums in
        // warp order; the same order whatever N is. The first kNormRegs vectors of each row a thread
        // takes stay in registers for the second pass (their norm weights came before the wait);
        // any further ones are read again.
        __shared__ float squares[kWarps][N];
        int4 xr[N][kNormRegs > 0 ? kNormRegs : 1];
        float ss[N];
#pragma unroll
        for (int n = 0; n < N; n++) {
            ss[n] = 0.f;
#pragma unroll
            for (int i = 0; i < kNormRegs; i++) {
                const int64_t c = threadIdx.x + i * kThreads;
                if (c < chunks) xr[n][i] = __ldg(x4 + n * chunks + c);
            }
        }
        auto add_squares = [&](const int4 &v, float &sum) {
            const pair_t<T> *p = reinterpret_cast<const pair_t<T> *>(&v);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float2 f = to_float2(p[i]);
                sum += f.x * f.x + f.y * f.y;
            }
        };
#pragma unroll
        for (int n = 0; n < N; n++) {
#pragma unroll
            for (int i = 0; i < kNormRegs; i++)
                if (threadIdx.x + i * kThreads < chunks) add_squares(xr[n][i], ss[n]);
            for (int64_t c = threadIdx.x + kNormRegs * kThreads; c < chunks; c += kThreads) add_squares(__ldg(x4 + n * chunks + c), ss[n]);
            ss[n] = warp_total(ss[n]);
        }
        if (lane == 0)
#pragma unroll
            for (int n = 0; n < N; n++) squares[warp][n] = ss[n];
        __syncthreads();
        auto normalise = [&](const int4 &v, const int4 &g, float scale) {
            const pair_t<T> *p = reinterpret_cast<const pair_t<T> *>(&v);
            const pair_t<T> *q = reinterpret_cast<const pair_t<T> *>(&g);
            int4 o;
            pair_t<T> *po = reinterpret_cast<pair_t<T> *>(&o);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float2 a = to_float2(p[i]), b = to_float2(q[i]);
                po[i] = from_float2<T>(a.x * scale * b.x, a.y * scale * b.y);
            }
            return o;
        };
#pragma unroll
        for (int n = 0; n < N; n++) {
            float total = 0.f;
#pragma unroll
            for (int q = 0; q < kWarps; q++) total += squares[q][n];
            const float scale = rsqrtf(total / (float)k + eps);
#pragma unroll
            for (int i = 0; i < kNormRegs; i++) {
                const int64_t c = threadIdx.x + i * kThreads;
                if (c < chunks) normed[n * chunks + c] = normalise(xr[n][i], gr[i], scale);
            }
            for (int64_t c = threadIdx.x + kNormRegs * kThreads; c < chunks; c += kThreads)
                normed[n * chunks + c] = normalise(__ldg(x4 + n * chunks + c), __ldg(g4 + c), scale);
        }
        __syncthreads();
        xs = normed;
    }

    if (valid) {
        for (;;) {
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                const int64_t c = base + u * 32;
                if (c >= end) break;
#pragma unroll
                for (int n = 0; n < N; n++) {
                    const int4 xv = NORM ? xs[n * chunks + c] : __ldg(xs + n * chunks + c);
#pragma unroll
                    for (int r = 0; r < R; r++) acc[r][n] = dot8<T>(wv[r][u], xv, acc[r][n]);
                }
            }
            base += kRound;
            if (base >= end) break;
            load(base);
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
        if (MODE == kGemvAdd) v += old[n];
        out[n * cols + col] = from_float<T>(v);
    }
}

template <typename T, int MODE, int S, bool NORM>
cudaError_t launch_split(const petrel_context *ctx, int64_t n, const T *x, const T *w, const T *bias, int64_t k,
                         int64_t cols, T *out, const T *norm_w, float eps) {
    const int per_block = kWarps / S;
    dim3 grid((unsigned)((cols + per_block - 1) / per_block));
    const size_t smem = NORM ? (size_t)(n * k * 2) : 0;
    static_assert(kGemvMaxRows == 4, "one case per row count up to kGemvMaxRows");
    switch (n) {
#define CASE(N)                                                                                                  \
    case N:                                                                                                      \
        return launch_dependent(ctx, grid, dim3(kWarps * 32), smem, gemv_kernel<T, N, MODE, S, NORM>, x, w, bias, k, \
                                cols, out, norm_w, eps);
        CASE(1) CASE(2) CASE(3) CASE(4)
#undef CASE
    }
    return cudaErrorInvalidValue;
}

// Slices per column: enough warps in flight to cover the card twice over (132 SMs x 64 warps),
// at most 4; a function of the matrix alone, so results never depend on the row count.
inline int slices_for(int64_t cols) { return cols <= 4096 ? 4 : cols <= 8192 ? 2 : 1; }

template <typename T, int MODE, bool NORM>
cudaError_t launch_mode(const petrel_context *ctx, int64_t n, const T *x, const T *w, const T *bias, int64_t k,
                        int64_t cols, T *out, const T *norm_w, float eps) {
    switch (slices_for(cols)) {
    case 4: return launch_split<T, MODE, 4, NORM>(ctx, n, x, w, bias, k, cols, out, norm_w, eps);
    case 2: return launch_split<T, MODE, 2, NORM>(ctx, n, x, w, bias, k, cols, out, norm_w, eps);
    default: return launch_split<T, MODE, 1, NORM>(ctx, n, x, w, bias, k, cols, out, norm_w, eps);
    }
}

template <typename T>
cudaError_t launch_gemv(const petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w,
                        int64_t cols, const void *bias, void *out, const void *norm_w, float eps) {
    const T *xt = (const T *)x, *wt = (const T *)w, *bt = (const T *)bias, *gt = (const T *)norm_w;
    T *ot = (T *)out;
    if (norm_w) {
        if (mode == kGemvBias) return launch_mode<T, kGemvBias, true>(ctx, n, xt, wt, bt, k, cols, ot, gt, eps);
        if (mode == kGemvSwiGLU) return launch_mode<T, kGemvSwiGLU, true>(ctx, n, xt, wt, bt, k, cols, ot, gt, eps);
        if (mode == kGemvPlain) return launch_mode<T, kGemvPlain, true>(ctx, n, xt, wt, bt, k, cols, ot, gt, eps);
        return cudaErrorInvalidValue;
    }
    if (mode == kGemvBias) return launch_mode<T, kGemvBias, false>(ctx, n, xt, wt, bt, k, cols, ot, gt, eps);
    if (mode == kGemvSwiGLU) return launch_mode<T, kGemvSwiGLU, false>(ctx, n, xt, wt, bt, k, cols, ot, gt, eps);
    if (mode == kGemvAdd) return launch_mode<T, kGemvAdd, false>(ctx, n, xt, wt, bt, k, cols, ot, gt, eps);
    return launch_mode<T, kGemvPlain, false>(ctx, n, xt, wt, bt, k, cols, ot, gt, eps);
}

}  // namespace

bool gemv_applies(int64_t n, int64_t k, const void *x, const void *w, const void *out) {
    return n >= 1 && n <= kGemvMaxRows && k % 8 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)w & 15) == 0 &&
           ((uintptr_t)out & 1) == 0;
}

bool gemv_norm_applies(int64_t n, int64_t k, const void *x, const void *w, const void *out, const void *norm_w) {
    // The normed kernels' own static shared memory (under 1 KiB) counts against the same 48 KiB a
    // block gets without opting in, so the rows must leave room for it.
    return gemv_applies(n, k, x, w, out) && ((uintptr_t)norm_w & 15) == 0 && (size_t)(n * k * 2) + 1024 <= kGemvNormSmem;
}

int32_t gemv_enqueue(petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w, int64_t cols,
                     const void *bias, void *out, const void *norm_w, float eps) {
    const cudaError_t e = is_bf16(ctx) ? launch_gemv<__nv_bfloat16>(ctx, mode, x, n, k, w, cols, bias, out, norm_w, eps)
                                       : launch_gemv<half>(ctx, mode, x, n, k, w, cols, bias, out, norm_w, eps);
    CUDA_TRY(ctx, e);
    return PETREL_OK;
}
