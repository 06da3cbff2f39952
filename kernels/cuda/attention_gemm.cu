// attention_gemm.cu: prefill attention through cuBLAS (tensor cores), for fresh prefills (no
// cached prefix) of at least kPrefillGemmMinTokens tokens; petrel_attention_enqueue
// (attention.cu) picks the sequences, sizes the scratch and calls prefill_gemm_attention.
//
// Per sequence (T new tokens at rows [b, b + T) of qkv, positions 0..T-1), the queries are cut
// into row blocks [r0, r1) of at most `R` rows (gemm_block_rows): causal, so a block needs keys
// [0, r1) only. Per block, with L = r1 keys, Lp = L rounded up to 8 (the scratch row length, so
// rows start 32-byte aligned) and Rb = r1 - r0 rows:
//   1. S_h (Rb x L, fp32, row stride Lp) = scale Q_h[r0:r1] K_{h/g}^T     (cuBLAS, per head)
//   2. P_h (Rb x L, T, row stride Lp) = causal softmax of each row         (prefill_softmax_kernel)
//   3. out[b + r0 : b + r1, h head_dim : (h + 1) head_dim] = P_h V_{h/g}   (cuBLAS, per head)
// Heads are the batch of strided-batched GEMMs; with GQA (g = heads / kv_heads > 1) one call per
// member m of the group batches over the KV heads kvh (query head kvh g + m).
// Scratch per block: heads x Rb x Lp x (4 + 2) bytes (T is 2 bytes); kGemmScoreBudget bounds heads x R x Lp.
// The budget is only a memory bound: the benchmark's 512-token prefills (32 heads) fit in one
// block. Longer sequences are split into row blocks of a multiple of 16 rows; a sequence so long
// that even 16 rows miss the budget (32 heads: T > 32768) stays on the tiled kernel.
// Fresh prefills shorter than kPrefillGemmMinTokens stay on the tiled kernel: per sequence the
// GEMM path is three launches a layer, one sequence after another, while the tiled kernel takes
// every sequence of the step in one launch, so for many short prompts the launches cost more than
// the CUDA-core math they save (docs/BENCHMARKS.md).
#include "internal.h"

#include <cfloat>

namespace {

constexpr int kSoftmaxThreads = 256;   // one warp per score row

// One warp per score row. Row q = h * rows + i of the block (query r0 + i of head h) sees keys
// [0, r0 + i]; P gets exp(S - max) / sum over them and 0 for the keys after, up to `keys`.
// S and P rows are `ld` (a multiple of 8) elements apart; S entries past the diagonal are never used.
template <typename T>
__global__ void __launch_bounds__(kSoftmaxThreads) prefill_softmax_kernel(const float *S, T *P, int64_t total_rows,
                                                                          int rows, int r0, int keys, int ld) {
    const int64_t q = (int64_t)blockIdx.x * (kSoftmaxThreads / 32) + threadIdx.x / 32;
    if (q >= total_rows) return;   // warp-uniform
    const int lane = threadIdx.x % 32;
    const int n = r0 + (int)(q % rows) + 1;   // visible keys, 1 <= n <= keys
    const int n4 = (n + 3) / 4, k4 = (keys + 3) / 4;   // float4 chunks holding visible keys / all keys
    const float4 *s4 = (const float4 *)(S + q * ld);
    // Online max and sum per lane over its chunks (each chunk's first key is visible: 4 c < n).
    float m = -FLT_MAX, l = 0.f;
    for (int c = lane; c < n4; c += 32) {
        const float4 v = s4[c];
        const int j = 4 * c;
        const float x0 = v.x, x1 = j + 1 < n ? v.y : -FLT_MAX, x2 = j + 2 < n ? v.z : -FLT_MAX,
                    x3 = j + 3 < n ? v.w : -FLT_MAX;
        const float nm = fmaxf(m, fmaxf(fmaxf(x0, x1), fmaxf(x2, x3)));
        l = l * __expf(m - nm) + __expf(x0 - nm) + __expf(x1 - nm) + __expf(x2 - nm) + __expf(x3 - nm);
        m = nm;
    }
    float mx = m;
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    l *= __expf(m - mx);   // a lane with no chunk: 0 * 0
    for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
    const float inv = 1.f / l;   // l >= 1: the maximum contributes exp(0)
    uint2 *p4 = (uint2 *)(P + q * ld);
    for (int c = lane; c < k4; c += 32) {
        const int j = 4 * c;
        float p[4] = {0.f, 0.f, 0.f, 0.f};
        if (c < n4) {
            const float4 v = s4[c];
            p[0] = __expf(v.x - mx) * inv;   // j < n
            if (j + 1 < n) p[1] = __expf(v.y - mx) * inv;
            if (j + 2 < n) p[2] = __expf(v.z - mx) * inv;
            if (j + 3 < n) p[3] = __expf(v.w - mx) * inv;
        }
        const pair_t<T> a = from_float2<T>(p[0], p[1]), b = from_float2<T>(p[2], p[3]);
        uint2 u;
        u.x = *(const uint32_t *)&a;
        u.y = *(const uint32_t *)&b;
        p4[c] = u;
    }
}

// C = alpha op(A) B (column-major, B never transposed), `batch` times with the given strides;
// A and B of the context's element type (fp16 or bf16), fp32 accumulation, C fp32 or the element
// type (beta = 0: C is only written).
int32_t gemm_strided(petrel_context *ctx, cublasOperation_t transa, int64_t m, int64_t n, int64_t k, float alpha,
                     const void *A, int64_t lda, int64_t stride_a, const void *B, int64_t ldb, int64_t stride_b,
                     void *C, cudaDataType_t c_type, int64_t ldc, int64_t stride_c, int64_t batch) {
    const float beta = 0.0f;
    const cudaDataType_t ab_type = cuda_element_type(ctx);
    cublasStatus_t st = cublasGemmStridedBatchedEx(
        ctx->cublas, transa, CUBLAS_OP_N, (int)m, (int)n, (int)k, &alpha, A, ab_type, (int)lda, (long long)stride_a,
        B, ab_type, (int)ldb, (long long)stride_b, &beta, C, c_type, (int)ldc, (long long)stride_c, (int)batch,
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return fail(ctx, PETREL_ERROR_CUBLAS,
                    "attention: cublasGemmStridedBatchedEx(op %d, m=%lld, n=%lld, k=%lld, batch %lld) failed: status %d",
                    (int)transa, (long long)m, (long long)n, (long long)k, (long long)batch, (int)st);
    return PETREL_OK;
}

}  // namespace

// One fresh prefill: T tokens from row b. q, k, v: row b's query head 0, key head 0, value head
// 0, rows ldq / ldk / ldv elements apart (qkv rows, or the rotated-key rows); out row b's head 0,
// rows ldo apart. S, P: the scratch (heads x R x round8(T) of each at least). E: the element type.
template <typename E>
int32_t prefill_gemm_attention(petrel_context *ctx, int64_t T, int64_t R, int64_t heads, int64_t kv_heads,
                               int64_t head_dim, const E *q, int64_t ldq, const E *k, int64_t ldk,
                               const E *v, int64_t ldv, float scale, float *S, E *P, E *out, int64_t ldo) {
    const int64_t g = heads / kv_heads, hd = head_dim;
    for (int64_t r0 = 0; r0 < T; r0 += R) {
        const int64_t r1 = r0 + R < T ? r0 + R : T, rb = r1 - r0, L = r1, lp = round8(L);
        // 1. Row-major S_h (rb x L, row stride lp) is column-major S_h^T (L x rb, ldc lp), and
        //    S_h^T = K (L x hd) . Q_h[r0:r1]^T (hd x rb). Row-major K rows (ldk apart) are the
        //    column-major hd x L matrix K^T with lda = ldk, so op(A) = OP_T; row-major Q rows (ldq
        //    apart) are the column-major hd x rb matrix Q^T with ldb = ldq, so OP_N.
        //    m = L, n = rb, k = hd, alpha = scale. Batch over kvh (kv_heads of them), member mm of
        //    the group: A = K head kvh (stride hd), B = query head kvh g + mm (stride g hd), C = S of
        //    that head at (kvh g + mm) rb lp (stride g rb lp). g = 1: one call over all heads.
        for (int64_t mm = 0; mm < g; mm++) {
            int32_t st = gemm_strided(ctx, CUBLAS_OP_T, L, rb, hd, scale, k, ldk, hd, q + r0 * ldq + mm * hd, ldq, g * hd,
                                      S + mm * rb * lp, CUDA_R_32F, lp, g * rb * lp, kv_heads);
            if (st != PETREL_OK) return st;
        }
        // 2. Causal softmax of the heads x rb rows into P (same layout as S).
        const int64_t total_rows = heads * rb;
        constexpr int rows_per_block = kSoftmaxThreads / 32;
        prefill_softmax_kernel<E><<<(unsigned)((total_rows + rows_per_block - 1) / rows_per_block), kSoftmaxThreads, 0, ctx->stream>>>(
            S, P, total_rows, (int)rb, (int)r0, (int)L, (int)lp);
        LAUNCH_CHECK(ctx);
        // 3. Row-major O_h (rb x hd, rows ldo apart) is column-major O_h^T (hd x rb, ldc ldo), and
        //    O_h^T = V^T (hd x L) . P_h^T (L x rb). Row-major V rows (ldv apart) are the
        //    column-major hd x L matrix V^T with lda = ldv: OP_N; row-major P_h (rb x L, row stride
        //    lp) is the column-major L x rb matrix P_h^T with ldb = lp: OP_N (only its first L
        //    of lp entries per column are read, k = L). m = hd, n = rb, k = L, alpha = 1. Batch
        //    over kvh, member mm: A = V head kvh (stride hd), B = P of head kvh g + mm (stride
        //    g rb lp), C = out row r0, column (kvh g + mm) hd (stride g hd: the heads' outputs
        //    interleave within each row, never overlapping).
        for (int64_t mm = 0; mm < g; mm++) {
            int32_t st = gemm_strided(ctx, CUBLAS_OP_N, hd, rb, L, 1.0f, v, ldv, hd, P + mm * rb * lp, lp, g * rb * lp,
                                      out + r0 * ldo + mm * hd, cuda_element_type(ctx), ldo, g * hd, kv_heads);
            if (st != PETREL_OK) return st;
        }
    }
    return PETREL_OK;
}

template int32_t prefill_gemm_attention<half>(petrel_context *, int64_t, int64_t, int64_t, int64_t, int64_t, const half *,
                                              int64_t, const half *, int64_t, const half *, int64_t, float, float *, half *,
                                              half *, int64_t);
template int32_t prefill_gemm_attention<__nv_bfloat16>(petrel_context *, int64_t, int64_t, int64_t, int64_t, int64_t,
                                                       const __nv_bfloat16 *, int64_t, const __nv_bfloat16 *, int64_t,
                                                       const __nv_bfloat16 *, int64_t, float, float *, __nv_bfloat16 *,
                                                       __nv_bfloat16 *, int64_t);
