// ops.cu: the element-wise and row-wise operations (embedding, RMSNorm, RoPE, SwiGLU, add, row
// and column gathers) and the cuBLAS matmul. The context's element type (fp16 or bf16: T, half or
// __nv_bfloat16) in and out, fp32 arithmetic inside every kernel.
#include "internal.h"

// ---- embedding and row gather: one block per output row. Copies 2-byte elements bit for bit
// (16 bytes at a time when rows are whole 16-byte vectors), so it serves fp16 and bf16 alike.

__global__ void gather_rows_kernel(const half *table, const int32_t *rows, int64_t dim, half *out) {
    const half *src = table + (int64_t)rows[blockIdx.x] * dim;
    half *dst = out + (int64_t)blockIdx.x * dim;
    if ((dim & 7) == 0) {
        const int4 *s = (const int4 *)src;
        int4 *d = (int4 *)dst;
        for (int64_t i = threadIdx.x; i < dim / 8; i += blockDim.x) d[i] = s[i];
    } else {
        for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
    }
}

// ---- column gather (GPTQ act-order inputs): out[r, j] = x[r, order[j]], 2-byte elements copied
// bit for bit (fp16 and bf16 alike). Grid (n rows, chunks of columns); writes are coalesced, reads
// scatter within a row that the caches hold.

constexpr int kColumnsGatherThreads = 256;

__global__ void gather_columns_kernel(const uint16_t *x, int64_t d, const int32_t *order, int64_t k, uint16_t *out) {
    pdl_wait();   // launched as a programmatic dependent (launch_dependent)
    pdl_launch_dependents();
    const uint16_t *src = x + (int64_t)blockIdx.x * d;
    uint16_t *dst = out + (int64_t)blockIdx.x * k;
    for (int64_t j = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; j < k; j += (int64_t)gridDim.y * blockDim.x)
        dst[j] = src[order[j]];
}

// ---- RMSNorm: one block per row

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ float block_sum(float v) {
    __shared__ float partial[32];
    v = warp_sum(v);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();   // `partial` may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) / 32;
    v = lane < warps ? partial[lane] : 0.0f;
    return warp_sum(v);
}

template <typename T>
__global__ void rmsnorm_kernel(const T *x, const T *w, int64_t d, float eps, T *out) {
    pdl_wait();   // launched as a programmatic dependent (launch_dependent)
    pdl_launch_dependents();
    const T *xr = x + (int64_t)blockIdx.x * d;
    T *o = out + (int64_t)blockIdx.x * d;
    float ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = to_float(xr[i]);
        ss += v * v;
    }
    float scale = rsqrtf(block_sum(ss) / (float)d + eps);
    // Each thread rewrites only the elements it read, so out may be x.
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        o[i] = from_float<T>(to_float(xr[i]) * scale * to_float(w[i]));
}

// Rows of up to 4 pairs per thread (d <= 8192 at 1024 threads): each thread keeps its part of
// the row in registers between the sum and the write, so the row is read once and written once
// (out may be x).
template <int PER, typename T, typename P = pair_t<T>>
__global__ void norm_regs_kernel(const P *x, const P *w, int d2, float eps, P *out) {
    pdl_wait();   // launched as a programmatic dependent (launch_dependent)
    pdl_launch_dependents();
    const P *xr = x + (int64_t)blockIdx.x * d2;
    P *o = out + (int64_t)blockIdx.x * d2;
    float2 v[PER];
    float ss = 0;
#pragma unroll
    for (int j = 0; j < PER; j++) {
        const int i = threadIdx.x + j * blockDim.x;
        if (i < d2) {
            v[j] = to_float2(xr[i]);
            ss += v[j].x * v[j].x + v[j].y * v[j].y;
        }
    }
    const float scale = rsqrtf(block_sum(ss) / (float)(2 * d2) + eps);
#pragma unroll
    for (int j = 0; j < PER; j++) {
        const int i = threadIdx.x + j * blockDim.x;
        if (i < d2) {
            float2 g = to_float2(w[i]);
            o[i] = from_float2<T>(v[j].x * scale * g.x, v[j].y * scale * g.y);
        }
    }
}

// Launches norm_regs_kernel for n rows of d2 pairs (d2 <= 4096).
template <typename T, typename P = pair_t<T>>
cudaError_t launch_norm_regs(const petrel_context *ctx, int64_t n, const P *x, const P *w, int64_t d2, float eps, P *out) {
    const int threads = d2 <= 1024 ? (int)((d2 + 31) / 32 * 32) : 1024;
    const int per = (int)((d2 + threads - 1) / threads);
    const dim3 grid((unsigned)n), block((unsigned)threads);
    if (per == 1) return launch_dependent(ctx, grid, block, 0, norm_regs_kernel<1, T>, x, w, (int)d2, eps, out);
    if (per == 2) return launch_dependent(ctx, grid, block, 0, norm_regs_kernel<2, T>, x, w, (int)d2, eps, out);
    return launch_dependent(ctx, grid, block, 0, norm_regs_kernel<4, T>, x, w, (int)d2, eps, out);
}

// ---- RoPE (rotate-half): one block per row

template <typename T>
__global__ void rope_kernel(T *x, int64_t row_stride, int heads, int head_dim, const int32_t *positions,
                            const float *inv_freq) {
    int half_dim = head_dim / 2;
    T *row = x + (int64_t)blockIdx.x * row_stride;
    float pos = (float)positions[blockIdx.x];
    for (int idx = threadIdx.x; idx < heads * half_dim; idx += blockDim.x) {
        int h = idx / half_dim, i = idx % half_dim;
        float s, c;
        sincosf(pos * inv_freq[i], &s, &c);
        T *v = row + h * head_dim;
        float a = to_float(v[i]), b = to_float(v[i + half_dim]);
        v[i] = from_float<T>(a * c - b * s);
        v[i + half_dim] = from_float<T>(b * c + a * s);
    }
}

// ---- SwiGLU, add, bias

template <typename T>
__global__ void swiglu_kernel(const T *gu, int64_t n, int64_t f, T *out) {
    int64_t total = n * f;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = idx / f, i = idx % f;
        float g = to_float(gu[t * 2 * f + i]), u = to_float(gu[t * 2 * f + f + i]);
        out[idx] = from_float<T>(g / (1.0f + __expf(-g)) * u);
    }
}

template <typename T>
__global__ void add_kernel(T *acc, const T *x, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        acc[i] = from_float<T>(to_float(acc[i]) + to_float(x[i]));
}

template <typename T, typename P = pair_t<T>>
__global__ void add2_kernel(P *acc, const P *x, int64_t count2) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count2; i += (int64_t)gridDim.x * blockDim.x) {
        float2 a = to_float2(acc[i]), b = to_float2(x[i]);
        acc[i] = from_float2<T>(a.x + b.x, a.y + b.y);
    }
}

template <typename T>
__global__ void bias_kernel(T *out, const T *bias, int64_t n, int64_t m) {
    int64_t total = n * m;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x)
        out[idx] = from_float<T>(to_float(out[idx]) + to_float(bias[idx % m]));
}

static unsigned elementwise_grid(petrel_context *ctx, int64_t count) {
    unsigned grid = grid_for(count, 256);
    unsigned cap = (unsigned)ctx->sm_count * 16;
    return grid < cap ? (grid ? grid : 1) : cap;
}

static int rows_threads(int64_t d) { return d >= 2048 ? 512 : d >= 512 ? 256 : 128; }

extern "C" {

int32_t petrel_embed_enqueue(petrel_context *ctx, const int32_t *ids, int64_t count, const void *table, int64_t vocab,
                             int64_t dim, void *out) {
    if (count == 0) return PETREL_OK;
    for (int64_t i = 0; i < count; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "embed: token id %d outside the vocabulary of %lld", ids[i], (long long)vocab);
    void *dev_ids;
    if (ctx->step.active && count == ctx->step.n) {
        dev_ids = (void *)ctx->step.ids;   // the step's upload (graphs.cu)
    } else {
        int32_t status = upload_scratch(ctx, ids, (size_t)count * 4, &dev_ids);
        if (status != PETREL_OK) return status;
    }
    gather_rows_kernel<<<(unsigned)count, 128, 0, ctx->stream>>>((const half *)table, (const int32_t *)dev_ids, dim, (half *)out);
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}

int32_t petrel_rows_gather_enqueue(petrel_context *ctx, const void *x, int64_t d, const int32_t *rows, int64_t count, void *out) {
    if (count == 0) return PETREL_OK;
    void *dev_rows;
    if (ctx->step.active && count == ctx->step.row_count) {
        dev_rows = (void *)ctx->step.rows;   // the step's upload (graphs.cu)
    } else {
        int32_t status = upload_scratch(ctx, rows, (size_t)count * 4, &dev_rows);
        if (status != PETREL_OK) return status;
    }
    gather_rows_kernel<<<(unsigned)count, 128, 0, ctx->stream>>>((const half *)x, (const int32_t *)dev_rows, d, (half *)out);
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}

int32_t petrel_columns_gather_enqueue(petrel_context *ctx, const void *x, int64_t n, int64_t d, const int32_t *order, int64_t k,
                                      void *out) {
    if (n == 0 || k == 0) return PETREL_OK;
    if (!order || d <= 0)
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "columns gather: %s", !order ? "no order" : "rows without columns");
    const int64_t chunks = (k + kColumnsGatherThreads - 1) / kColumnsGatherThreads;
    const dim3 grid((unsigned)n, (unsigned)(chunks < 65535 ? chunks : 65535));
    CUDA_TRY(ctx, launch_dependent(ctx, grid, dim3(kColumnsGatherThreads), 0, gather_columns_kernel, (const uint16_t *)x, d,
                                   order, k, (uint16_t *)out));
    return PETREL_OK;
}

int32_t petrel_rmsnorm_enqueue(petrel_context *ctx, const void *x, const void *weight, int64_t n, int64_t d, float eps, void *out) {
    if (n == 0) return PETREL_OK;
    const bool pairs = d % 2 == 0 && d / 2 <= 4 * 1024 && ((uintptr_t)x & 3) == 0 && ((uintptr_t)weight & 3) == 0 &&
                       ((uintptr_t)out & 3) == 0;
    const cudaError_t e = with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        using P = pair_t<T>;
        if (pairs) return launch_norm_regs<T>(ctx, n, (const P *)x, (const P *)weight, d / 2, eps, (P *)out);
        return launch_dependent(ctx, dim3((unsigned)n), dim3(rows_threads(d)), 0, rmsnorm_kernel<T>, (const T *)x,
                                (const T *)weight, d, eps, (T *)out);
    });
    CUDA_TRY(ctx, e);
    return PETREL_OK;
}

static int32_t cublas_matmul(petrel_context *ctx, const void *x, int64_t n, int64_t k, const void *w, int64_t m, void *out,
                             bool accumulate = false) {
    // Row-major out (n, m) is column-major out^T (m, n) = W (m, k) . X^T (k, n); W row-major (m, k)
    // is column-major (k, m), hence OP_T on it. A, B and C of the context's element type (fp16
    // or bf16), fp32 compute and scale; accumulate: out += the product (beta 1).
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const cudaDataType_t type = cuda_element_type(ctx);
    cublasStatus_t s = cublasGemmEx(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)k, &alpha,
                                    w, type, (int)k, x, type, (int)k, &beta,
                                    out, type, (int)m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return fail(ctx, PETREL_ERROR_CUBLAS, "cublasGemmEx(m=%lld, n=%lld, k=%lld) failed: status %d",
                    (long long)m, (long long)n, (long long)k, (int)s);
    return PETREL_OK;
}

int32_t petrel_matmul_enqueue(petrel_context *ctx, const void *x, int64_t n, int64_t k, const void *w, const petrel_wo_desc *wo,
                              int64_t m, const void *bias, void *out) {
    if (n == 0 || m == 0) return PETREL_OK;
    if (wo) return wo_matmul(ctx, bias ? kGemvBias : kGemvPlain, x, n, k, w, *wo, m, bias, out);
    if (gemv_applies(n, k, x, w, out))
        return gemv_enqueue(ctx, bias ? kGemvBias : kGemvPlain, x, n, k, w, m, bias, out);
    int32_t status = cublas_matmul(ctx, x, n, k, w, m, out);
    if (status != PETREL_OK) return status;
    if (bias) {
        with_element_type(ctx, [&](auto tag) {
            using T = typename decltype(tag)::type;
            bias_kernel<T><<<elementwise_grid(ctx, n * m), 256, 0, ctx->stream>>>((T *)out, (const T *)bias, n, m);
            return 0;
        });
        LAUNCH_CHECK(ctx);
    }
    return PETREL_OK;
}

int32_t petrel_matmul_swiglu_enqueue(petrel_context *ctx, const void *x, int64_t n, int64_t k, const void *w_gate_up,
                                     const petrel_wo_desc *wo, int64_t f, void *out) {
    if (n == 0 || f == 0) return PETREL_OK;
    if (wo) return wo_matmul(ctx, kGemvSwiGLU, x, n, k, w_gate_up, *wo, f, nullptr, out);
    if (gemv_applies(n, k, x, w_gate_up, out)) return gemv_enqueue(ctx, kGemvSwiGLU, x, n, k, w_gate_up, f, nullptr, out);
    // Large batches: one cuBLAS GEMM into a stream-ordered temporary, then the SwiGLU kernel. A
    // step (graphs.cu) uses the step's own buffer instead, grown outside captures: a capture that
    // finds it too small is abandoned and the step runs again uncaptured.
    const size_t bytes = (size_t)(n * 2 * f) * 2;   // 2-byte elements
    void *gate_up = nullptr;
    StepState &st = ctx->step;
    if (st.active) {
        if (bytes > st.gate_up_bytes) {
            if (st.capturing) {
                st.broken = true;
                return PETREL_OK;
            }
            invalidate_graphs(ctx);
            if (st.gate_up) CUDA_TRY(ctx, cudaFreeAsync(st.gate_up, ctx->stream));
            st.gate_up = nullptr;
            st.gate_up_bytes = 0;
            CUDA_TRY(ctx, cudaMallocAsync(&st.gate_up, bytes, ctx->stream));
            st.gate_up_bytes = bytes;
        }
        gate_up = st.gate_up;
    } else {
        CUDA_TRY(ctx, cudaMallocAsync(&gate_up, bytes, ctx->stream));
    }
    int32_t status = cublas_matmul(ctx, x, n, k, w_gate_up, 2 * f, gate_up);
    if (status == PETREL_OK) {
        with_element_type(ctx, [&](auto tag) {
            using T = typename decltype(tag)::type;
            swiglu_kernel<T><<<elementwise_grid(ctx, n * f), 256, 0, ctx->stream>>>((const T *)gate_up, n, f, (T *)out);
            return 0;
        });
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) status = fail(ctx, PETREL_ERROR_CUDA, "swiglu launch: %s", cudaGetErrorString(e));
    }
    if (!st.active) cudaFreeAsync(gate_up, ctx->stream);
    return status;
}

int32_t petrel_matmul_add_enqueue(petrel_context *ctx, const void *x, int64_t n, int64_t k, const void *w, const petrel_wo_desc *wo,
                                  int64_t m, void *acc) {
    if (n == 0 || m == 0) return PETREL_OK;
    if (wo) return wo_matmul(ctx, kGemvAdd, x, n, k, w, *wo, m, nullptr, acc);
    if (gemv_applies(n, k, x, w, acc)) return gemv_enqueue(ctx, kGemvAdd, x, n, k, w, m, nullptr, acc);
    return cublas_matmul(ctx, x, n, k, w, m, acc, true);
}

int32_t petrel_rmsnorm_matmul_enqueue(petrel_context *ctx, const void *x, const void *norm_w, float eps, int64_t n,
                                      int64_t k, const void *w, const petrel_wo_desc *wo, int64_t m, const void *bias, void *normed,
                                      void *out) {
    if (n == 0 || m == 0) return PETREL_OK;
    if (wo) return wo_matmul(ctx, bias ? kGemvBias : kGemvPlain, x, n, k, w, *wo, m, bias, out, norm_w, eps, normed);
    if (gemv_norm_applies(n, k, x, w, out, norm_w))
        return gemv_enqueue(ctx, bias ? kGemvBias : kGemvPlain, x, n, k, w, m, bias, out, norm_w, eps);
    const int32_t status = petrel_rmsnorm_enqueue(ctx, x, norm_w, n, k, eps, normed);
    return status != PETREL_OK ? status : petrel_matmul_enqueue(ctx, normed, n, k, w, nullptr, m, bias, out);
}

int32_t petrel_rmsnorm_matmul_swiglu_enqueue(petrel_context *ctx, const void *x, const void *norm_w, float eps,
                                             int64_t n, int64_t k, const void *w_gate_up, const petrel_wo_desc *wo, int64_t f,
                                             void *normed, void *out) {
    if (n == 0 || f == 0) return PETREL_OK;
    if (wo) return wo_matmul(ctx, kGemvSwiGLU, x, n, k, w_gate_up, *wo, f, nullptr, out, norm_w, eps, normed);
    if (gemv_norm_applies(n, k, x, w_gate_up, out, norm_w))
        return gemv_enqueue(ctx, kGemvSwiGLU, x, n, k, w_gate_up, f, nullptr, out, norm_w, eps);
    const int32_t status = petrel_rmsnorm_enqueue(ctx, x, norm_w, n, k, eps, normed);
    return status != PETREL_OK ? status : petrel_matmul_swiglu_enqueue(ctx, normed, n, k, w_gate_up, nullptr, f, out);
}

int32_t petrel_rope_enqueue(petrel_context *ctx, void *x, int64_t n, int64_t row_stride, int64_t heads, int64_t head_dim,
                            const int32_t *positions, const float *inv_freq) {
    if (n == 0) return PETREL_OK;
    if (head_dim % 2) return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "rope: odd head_dim %lld", (long long)head_dim);
    void *dev_pos, *dev_freq;
    int32_t status = reserve_arena(ctx, ((size_t)n * 4 + 255) / 256 * 256 + ((size_t)head_dim * 2 + 255) / 256 * 256);
    if (status == PETREL_OK) status = upload_cached(ctx, ctx->positions_cache, positions, (size_t)n * 4, &dev_pos);
    if (status == PETREL_OK) status = upload_cached(ctx, ctx->inv_freq_cache, inv_freq, (size_t)head_dim / 2 * 4, &dev_freq);
    if (status != PETREL_OK) return status;
    int threads = heads * head_dim / 2 >= 1024 ? 512 : 128;
    with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        rope_kernel<T><<<(unsigned)n, threads, 0, ctx->stream>>>((T *)x, row_stride, (int)heads, (int)head_dim,
                                                                  (const int32_t *)dev_pos, (const float *)dev_freq);
        return 0;
    });
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}

int32_t petrel_swiglu_enqueue(petrel_context *ctx, const void *gate_up, int64_t n, int64_t f, void *out) {
    if (n * f == 0) return PETREL_OK;
    with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        swiglu_kernel<T><<<elementwise_grid(ctx, n * f), 256, 0, ctx->stream>>>((const T *)gate_up, n, f, (T *)out);
        return 0;
    });
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}

int32_t petrel_add_enqueue(petrel_context *ctx, void *acc, const void *x, int64_t count) {
    if (count == 0) return PETREL_OK;
    with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        using P = pair_t<T>;
        if (count % 2 == 0 && ((uintptr_t)acc & 3) == 0 && ((uintptr_t)x & 3) == 0)
            add2_kernel<T><<<elementwise_grid(ctx, count / 2), 256, 0, ctx->stream>>>((P *)acc, (const P *)x, count / 2);
        else
            add_kernel<T><<<elementwise_grid(ctx, count), 256, 0, ctx->stream>>>((T *)acc, (const T *)x, count);
        return 0;
    });
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}

}  // extern "C"
