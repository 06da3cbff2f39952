// petrel_cpu.h: the C ABI of Petrel's CPU kernels (float32 activations, weights in
// F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1). Every pointer is borrowed for the call only;
// nothing is retained. Row-major layouts; shapes are given next to each parameter.
#ifndef PETREL_CPU_H
#define PETREL_CPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Weight storage types; values match GGML's type ids so GGUF types map directly.
typedef enum {
    PK_TYPE_F32 = 0,
    PK_TYPE_F16 = 1,
    PK_TYPE_Q4_0 = 2,
    PK_TYPE_Q4_1 = 3,
    PK_TYPE_Q8_0 = 8,
    PK_TYPE_BF16 = 30,
} pk_type;

/// Bytes for one row of `n` elements of type `type` (n must be a multiple of the block size).
size_t pk_row_bytes(int type, int64_t n);
/// Elements per block of `type` (1 for float types, 32 for the quantized ones).
int pk_block_size(int type);

/// Thread pool. `pk_set_threads(0)` picks the number of online CPUs. Idempotent.
void pk_set_threads(int n);
int pk_get_threads(void);
typedef void (*pk_range_fn)(void *ctx, int64_t begin, int64_t end);
/// Runs fn over [0, n) split into chunks of `grain`, on every pool thread; returns when done.
void pk_parallel_for(int64_t n, int64_t grain, pk_range_fn fn, void *ctx);

/// Dequantizes `n` elements of one row into dst.
void pk_dequantize_row(int type, const void *src, float *dst, int64_t n);

/// out (n, m) = x (n, k) · w (m, k)^T [+ bias (m)].
/// exact != 0: activations stay float32 and weights are dequantized inside the dot product
/// (the reference path). exact == 0: for quantized weights the activations are quantized to
/// 8 bits per 32-element block and the dot products run in integers (the fast path).
void pk_matmul(const float *x, int64_t n, int64_t k, const void *w, int wtype, int64_t m,
               const float *bias, float *out, int exact);

/// out (n, m) = x (n, k) · W^T [+ bias (m)] for a weight-only matrix W (Sources/Compute/WeightOnly.swift):
/// m rows of `row_bytes`, each its codes of `bits` (8 or 4) in chunk order, then fp16 scales, one per
/// `group_size` columns (0: one per row), then as many fp16 zeros when has_zeros (else z = 128 or 8);
/// w = (u - z) * s. k is a multiple of 16 (8 bits) or 32 (4 bits); the last group may be shorter.
/// exact as in pk_matmul: float32 activations, or (0) activations quantized to 8 bits per 32 columns
/// for integer dot products. Each output sums in the same order whatever n.
void pk_matmul_wo(const float *x, int64_t n, int64_t k, const void *w, int bits, int64_t group_size, int has_zeros,
                  size_t row_bytes, int64_t m, const float *bias, float *out, int exact);

/// out (n, m) = (xq (n, k) · decode(W)^T) * (sx[t] * s_w[r]) [+ bias (m)] for an FP8 W8A8 matrix W
/// (Sources/Compute/FP8.swift): m rows of `row_bytes`, each k E4M3 codes (none NaN) then its fp32
/// scale s_w. xq: the activations already quantized to E4M3 and decoded (unscaled); sx (n): each
/// token's activation scale. Sums in fp32; each output in the same order whatever n.
void pk_matmul_fp8(const float *xq, const float *sx, int64_t n, int64_t k, const void *w, size_t row_bytes, int64_t m,
                   const float *bias, float *out);

/// Gathers rows of a (vocab, dim) table of any weight type into out (count, dim).
void pk_embed(const int32_t *ids, int64_t count, const void *table, int type, int64_t dim, float *out);

/// out (n, d) = x * rsqrt(mean(x^2) + eps) * w (d). out may alias x.
void pk_rmsnorm(const float *x, const float *w, int64_t n, int64_t d, float eps, float *out);

/// Rotary embedding in the rotate-half layout, in place, on the first `heads` heads of each
/// row of x (n rows, `row_stride` floats apart; head h at offset h*head_dim).
/// positions (n); inv_freq (head_dim/2).
void pk_rope(float *x, int64_t n, int64_t row_stride, int64_t heads, int64_t head_dim,
             const int32_t *positions, const float *inv_freq);

/// out (n, f) = silu(gu[:, :f]) * gu[:, f:], gu (n, 2f).
void pk_swiglu(const float *gu, int64_t n, int64_t f, float *out);

/// acc (count) += x (count).
void pk_add(float *acc, const float *x, int64_t count);

/// One sequence's part of a ragged batch for paged attention.
typedef struct {
    int64_t token_begin;        // first row of this sequence in qkv / out
    int64_t token_count;        // rows (new tokens) of this sequence in this step
    int64_t context_before;     // tokens already in the cache before this step
    const int32_t *block_table; // the sequence's KV blocks, in order (borrowed)
} pk_attn_seq;

/// Writes the new K and V rows of every sequence into the paged cache, then computes causal
/// attention of each new query over the sequence's whole context.
/// qkv (tokens, (heads + 2*kv_heads) * head_dim): q heads, then k heads, then v heads.
/// k_cache, v_cache: (blocks, block_size, kv_heads, head_dim) for one layer.
/// out (tokens, heads * head_dim).
void pk_attention(const float *qkv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                  float *k_cache, float *v_cache, int64_t block_size,
                  const pk_attn_seq *seqs, int64_t seq_count, float scale, float *out);
/// pk_attention with a sliding window: window > 0 lets a query at position p see keys
/// p - window + 1 .. p only (0: every earlier key).
void pk_attention_window(const float *qkv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                         float *k_cache, float *v_cache, int64_t block_size,
                         const pk_attn_seq *seqs, int64_t seq_count, float scale, int64_t window, float *out);

#ifdef __cplusplus
}
#endif
#endif
