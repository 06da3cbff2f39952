// attention_decode.cu: the split-K ("flash-decoding") attention of decode sequences (one new token
// each), launched by petrel_attention_enqueue and by a step's attention (attention.cu), and the host
// helpers that size it: the partition of the contexts and the partials' scratch.
//
// Element type T: the context's (half or __nv_bfloat16) for qkv, the caches and out; every score,
// softmax and accumulator is fp32.
#include "internal.h"

#include <cfloat>

namespace {

// Split-K ("flash-decoding") attention for sequences with one new token. blockIdx: (partition,
// kv head, decode sequence); a partition is `part_keys` consecutive keys of the context. The
// block's G = heads / kv_heads query heads share every K/V row it loads. L lanes take one key
// row, each loading 16 bytes (8 elements) of it. Results per (sequence, query head, partition):
// the unnormalized output sum p V, the partition's max score and its sum of p; the last block to
// arrive (an atomic counter per sequence and KV head) combines them into the output. A context
// of one partition writes the output directly.
constexpr int kDecodeThreads = 128;
constexpr int kDecodeBlocksPerSM = 8;   // decode_attention_kernel_small's residency

// U: key rows (and value rows) each lane group loads before using them (decode_kernel: 8 for
// groups of at most 2 query heads, 4 for larger groups, whose accumulators would spill). Whatever
// U, each key's score and each slice's sum take the keys in the same order: the same bits.
template <int L, int MAXG, int U, bool EARLY, typename T>  // MAXG >= G: register arrays sized for the group
__device__ __forceinline__ void decode_attention(
    const T *qkv, int64_t stride, int heads, int kv_heads, int head_dim, const T *k_cache,
    const T *v_cache, int block_size, const int4 *seqs, const int32_t *tables, const int32_t *decode_seqs,
    const int32_t *dyn, int max_parts, float scale, float *part_o, float2 *part_ml, int32_t *counters, T *out,
    int64_t out_stride, DecodeRope rope, T *k_write, T *v_write) {
    using P = pair_t<T>;
    extern __shared__ float smem[];
    // The metadata (sequences, block tables, the partition size at dyn[0]: uploaded before any
    // kernel of the step or call ran, never written by one) is read before waiting for the
    // predecessor, and when dyn[1] says so (decode_prefetch) this block's keys and values are asked
    // into L2: all but the newest were written by earlier steps, and a prefetch of the newest row at
    // worst fetches it twice.
    // The partition size comes from device memory so a captured step graph serves every context
    // length of its shape.
    const int part_keys = dyn[0];
    const int G = heads / kv_heads;
    const int d = blockIdx.z, kvh = blockIdx.y, part = blockIdx.x;
    const int4 sq = seqs[decode_seqs[d]];
    const int ctx_len = sq.z + 1;
    const int k0 = part * part_keys;
    const int n = min(part_keys, ctx_len - k0);
    const int tid = threadIdx.x;
    const int kvs = kv_heads * head_dim;
    const int32_t *table = tables + sq.w;
    const int lane = tid % 32, warp = tid / 32, sub = lane % L;
    const int V = head_dim / 8;              // 16-byte vectors per row
    constexpr int KPW = 32 / L;              // keys per warp per step
    constexpr int KU = U;                    // key rows each lane group loads before using them
    constexpr int kSlices = kDecodeThreads / L;   // value rows in flight per block
    const int slice = tid / L;
    auto k_row = [&](int j) {
        const int pos = k0 + j;
        const int64_t slot = (int64_t)table[pos / block_size] * block_size + pos % block_size;
        return *(const uint4 *)(k_cache + slot * kvs + kvh * head_dim + sub * 8);
    };
    auto v_row = [&](int j) {
        const int pos = k0 + j;
        const int64_t slot = (int64_t)table[pos / block_size] * block_size + pos % block_size;
        return *(const uint4 *)(v_cache + slot * kvs + kvh * head_dim + sub * 8);
    };
    // With EARLY (launch_decode says when) the first key rows and value rows this thread uses are
    // loaded into registers now, all but the newest (ctx_len - 1): that one is written in this step
    // (by this kernel's last partition block, or by rope_kv_write just before) and is loaded after
    // the wait and the __syncthreads that follows the write.
    const int newest = ctx_len - 1 - k0;     // the newest key's row in this partition, if 0 <= newest < n
    const int first_k = warp * KPW * KU;
    uint4 raw[KU], vraw[U];
#pragma unroll
    for (int u = 0; u < KU; u++) {
        const int j = first_k + u * KPW + lane / L;
        raw[u] = EARLY && j < n && sub < V && j != newest ? k_row(j) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int j = slice + u * kSlices;
        vraw[u] = EARLY && j < n && sub < V && j != newest ? v_row(j) : make_uint4(0u, 0u, 0u, 0u);
    }
    // The L2 prefetch (dyn[1]) skips the rows the early loads already asked for.
    const int prefetch_rows = dyn[1] ? n : 0;
    for (int j = (EARLY ? kSlices * U : 0) + tid; j < prefetch_rows; j += kDecodeThreads) {
        const int pos = k0 + j;
        const int64_t at = ((int64_t)table[pos / block_size] * block_size + pos % block_size) * kvs + kvh * head_dim;
        for (int b = 0; b < head_dim * 2; b += 128) {
            asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)(k_cache + at) + b));
            asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)(v_cache + at) + b));
        }
    }
    const bool fused = rope.inv_freq != nullptr;
    const float position = fused ? (float)rope.positions[sq.x] : 0.f;
    const int new_slot = fused ? rope.slots[sq.x] : -1;
    pdl_wait();                // launched as a programmatic dependent of rope_kv_write or the QKV matmul
    pdl_launch_dependents();   // the next GEMV may get resident and start on its weights meanwhile
    if (k0 >= ctx_len) return;
    constexpr int kWarpCount = kDecodeThreads / 32;
    float *qs = smem;                        // G x head_dim, scaled queries
    float *red = qs + G * head_dim;          // kWarpCount x G x head_dim, each warp's output sums
    float *ss = red + kWarpCount * G * head_dim;   // G x part_keys, scores then probabilities
    float *ms = ss + G * part_keys;          // G maxima
    float *ls = ms + kDecodeMaxGroup;        // G sums

    const T *q = qkv + (int64_t)sq.x * stride + (int64_t)kvh * G * head_dim;
    if (fused) {
        // rope_kv_write_kernel's work for this block: the group's query heads rotated (kept here
        // only), and in the block holding the newest key (the last partition) that key rotated into
        // its cache slot and its value copied; the __syncthreads below makes them visible here.
        const int half_dim = head_dim / 2;
        for (int idx = tid; idx < G * half_dim; idx += kDecodeThreads) {
            const int g = idx / half_dim, i = idx % half_dim;
            T ra, rb;
            rope_rotate<T>(to_float(q[g * head_dim + i]), to_float(q[g * head_dim + i + half_dim]), position, rope.inv_freq[i],
                           &ra, &rb);
            qs[g * head_dim + i] = to_float(ra) * scale;
            qs[g * head_dim + i + half_dim] = to_float(rb) * scale;
        }
        if (k0 + n == ctx_len && new_slot >= 0) {
            const T *kn = qkv + (int64_t)sq.x * stride + (int64_t)(heads + kvh) * head_dim, *vn = kn + kvs;
            T *kd = k_write + (int64_t)new_slot * kvs + (int64_t)kvh * head_dim;
            T *vd = v_write + (int64_t)new_slot * kvs + (int64_t)kvh * head_dim;
            for (int i = tid; i < half_dim; i += kDecodeThreads) {
                T ra, rb;
                rope_rotate<T>(to_float(kn[i]), to_float(kn[i + half_dim]), position, rope.inv_freq[i], &ra, &rb);
                kd[i] = ra;
                kd[i + half_dim] = rb;
                vd[i] = vn[i];
                vd[i + half_dim] = vn[i + half_dim];
            }
        }
    } else {
        for (int idx = tid; idx < G * head_dim; idx += kDecodeThreads) qs[idx] = to_float(q[idx]) * scale;
    }
    __syncthreads();

    for (int j0 = first_k; j0 < n; j0 += kWarpCount * KPW * KU) {   // warp-uniform
        // The first rows came before the wait (with EARLY, all but the newest).
        const bool have = EARLY && j0 == first_k;
#pragma unroll
        for (int u = 0; u < KU; u++) {
            const int j = j0 + u * KPW + lane / L;
            if (!have || j == newest) raw[u] = j < n && sub < V ? k_row(j) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < KU; u++) {
            const int j = j0 + u * KPW + lane / L;
            const P *h2 = (const P *)&raw[u];
            float2 kf[4];
#pragma unroll
            for (int i = 0; i < 4; i++) kf[i] = to_float2(h2[i]);
#pragma unroll
            for (int g = 0; g < MAXG; g++) {
                if (g < G) {
                    float a = 0.f;
                    if (sub < V) {
                        const float *qq = qs + g * head_dim + sub * 8;
#pragma unroll
                        for (int i = 0; i < 4; i++) a += qq[2 * i] * kf[i].x + qq[2 * i + 1] * kf[i].y;
                    }
#pragma unroll
                    for (int o = L / 2; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
                    if (sub == 0 && j < n) ss[g * part_keys + j] = a;
                }
            }
        }
    }
    // The first value rows this thread weighs (with EARLY only the newest is missing): loaded
    // now, their latency overlaps the softmax.
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int j = slice + u * kSlices;
        if (!EARLY || j == newest) vraw[u] = j < n && sub < V ? v_row(j) : make_uint4(0u, 0u, 0u, 0u);
    }
    __syncthreads();

    for (int g = warp; g < G; g += kDecodeThreads / 32) {
        float mx = -FLT_MAX;
        for (int j = lane; j < n; j += 32) mx = fmaxf(mx, ss[g * part_keys + j]);
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float sum = 0.f;
        for (int j = lane; j < n; j += 32) {
            float p = __expf(ss[g * part_keys + j] - mx);
            ss[g * part_keys + j] = p;
            sum += p;
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) {
            ms[g] = mx;
            ls[g] = sum;
        }
    }
    __syncthreads();

    float acc[MAXG][8];
#pragma unroll
    for (int g = 0; g < MAXG; g++)
#pragma unroll
        for (int i = 0; i < 8; i++) acc[g][i] = 0.f;
    if (sub < V) {
        constexpr int VU = U;   // value rows loaded before use
        for (int j0 = slice; j0 < n; j0 += kSlices * VU) {
            if (j0 != slice) {   // the first rows came before the softmax
#pragma unroll
                for (int u = 0; u < VU; u++) {
                    const int j = j0 + u * kSlices;
                    vraw[u] = j < n ? v_row(j) : make_uint4(0u, 0u, 0u, 0u);
                }
            }
#pragma unroll
            for (int u = 0; u < VU; u++) {
                const int j = j0 + u * kSlices;
                if (j >= n) break;
                const P *h2 = (const P *)&vraw[u];
                float2 vf[4];
#pragma unroll
                for (int i = 0; i < 4; i++) vf[i] = to_float2(h2[i]);
#pragma unroll
                for (int g = 0; g < MAXG; g++) {
                    if (g < G) {
                        const float p = ss[g * part_keys + j];
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            acc[g][2 * i] += p * vf[i].x;
                            acc[g][2 * i + 1] += p * vf[i].y;
                        }
                    }
                }
            }
        }
    }
    // Sum the key slices in a fixed order, so a sequence's output never depends on timing (no
    // float atomics): first the slices within a warp (a butterfly over the lanes that share
    // `sub`), then the warps' sums (each warp's in `red`) in warp order.
#pragma unroll
    for (int o = L; o < 32; o <<= 1)
#pragma unroll
        for (int g = 0; g < MAXG; g++)
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], o);
    if (lane < L && sub < V) {
#pragma unroll
        for (int g = 0; g < MAXG; g++)
            if (g < G)
#pragma unroll
                for (int i = 0; i < 8; i++) red[(warp * G + g) * head_dim + sub * 8 + i] = acc[g][i];
    }
    __syncthreads();
    auto summed = [&](int idx) {
        float t = 0.f;
#pragma unroll
        for (int w = 0; w < kWarpCount; w++) t += red[w * G * head_dim + idx];
        return t;
    };

    const int parts = (ctx_len + part_keys - 1) / part_keys;
    T *o = out + (int64_t)sq.x * out_stride + (int64_t)kvh * G * head_dim;
    if (parts == 1) {   // the whole context in one partition: normalize and write the output
        for (int idx = tid; idx < G * head_dim; idx += kDecodeThreads) {
            const float l = ls[idx / head_dim];
            o[idx] = from_float<T>(l > 0.f ? summed(idx) / l : 0.f);
        }
        return;
    }
    for (int idx = tid; idx < G * head_dim; idx += kDecodeThreads) {
        const int g = idx / head_dim, x = idx % head_dim;
        const int64_t base = ((int64_t)d * heads + kvh * G + g) * max_parts + part;
        part_o[base * head_dim + x] = summed(idx);
    }
    if (tid < G) {
        const int64_t base = ((int64_t)d * heads + kvh * G + tid) * max_parts + part;
        part_ml[base] = make_float2(ms[tid], ls[tid]);
    }
    // The last partition block of this (sequence, KV head) to finish combines all partitions
    // (no separate reduce launch): publish the partials, count in, and let the last one read.
    __shared__ int is_last;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        const int done = atomicAdd(&counters[d * kv_heads + kvh], 1);
        is_last = done == parts - 1;
        if (is_last) counters[d * kv_heads + kvh] = 0;   // ready for the next launch
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    for (int idx = tid; idx < G * head_dim; idx += kDecodeThreads) {
        const int g = idx / head_dim, x = idx % head_dim;
        const int64_t base = ((int64_t)d * heads + kvh * G + g) * max_parts;
        float mx = -FLT_MAX;
        for (int p = 0; p < parts; p++) mx = fmaxf(mx, __ldcg(&part_ml[base + p].x));
        float total = 0.f, a = 0.f;
        for (int p = 0; p < parts; p++) {
            const float w = __expf(__ldcg(&part_ml[base + p].x) - mx);
            total += __ldcg(&part_ml[base + p].y) * w;
            a += __ldcg(&part_o[(base + p) * head_dim + x]) * w;
        }
        o[idx] = from_float<T>(total > 0.f ? a / total : 0.f);
    }
}

// The kernels. The variant without early loads for one query head per KV head (MHA) is held to 64
// registers (kDecodeBlocksPerSM blocks an SM): it serves large grids, which are latency-bound. The
// others keep the compiler's choice (held to 64, the larger groups would spill).
#define DECODE_PARAMS                                                                                          \
    const T *qkv, int64_t stride, int heads, int kv_heads, int head_dim, const T *k_cache, const T *v_cache,     \
        int block_size, const int4 *seqs, const int32_t *tables, const int32_t *decode_seqs, const int32_t *dyn, \
        int max_parts, float scale, float *part_o, float2 *part_ml, int32_t *counters, T *out, int64_t out_stride, \
        DecodeRope rope, T *k_write, T *v_write
#define DECODE_ARGS                                                                                             \
    qkv, stride, heads, kv_heads, head_dim, k_cache, v_cache, block_size, seqs, tables, decode_seqs, dyn, max_parts, \
        scale, part_o, part_ml, counters, out, out_stride, rope, k_write, v_write
template <int L, int MAXG, int U, bool EARLY, typename T>
__global__ void __launch_bounds__(kDecodeThreads) decode_attention_kernel(DECODE_PARAMS) {
    decode_attention<L, MAXG, U, EARLY, T>(DECODE_ARGS);
}
template <int L, int MAXG, int U, typename T>
__global__ void __launch_bounds__(kDecodeThreads, kDecodeBlocksPerSM) decode_attention_kernel_small(DECODE_PARAMS) {
    decode_attention<L, MAXG, U, false, T>(DECODE_ARGS);
}
#undef DECODE_ARGS
#undef DECODE_PARAMS

// The kernel launch_decode takes for L lanes a row, groups of up to G query heads, with or without
// the early K/V loads: 8 rows per lane group before use for G <= 2, else 4; without early loads
// and G == 1, the 64-register kernel.
template <int L, int G, bool EARLY, typename T>
constexpr auto decode_kernel() {
    constexpr int U = G <= 2 ? 8 : 4;
    if constexpr (!EARLY && G == 1) return &decode_attention_kernel_small<L, 1, U, T>;
    else return &decode_attention_kernel<L, G, U, EARLY, T>;
}

}  // namespace

// Declared and described in internal.h.
template <typename T>
cudaError_t launch_decode(petrel_context *ctx, const T *qkv, int64_t stride, int heads, int kv_heads, int head_dim,
                          const T *k_cache, const T *v_cache, int block_size, const int4 *seqs, const int32_t *tables,
                          const int32_t *decode, const int32_t *dyn, int64_t decode_count, int max_parts, int smem_keys,
                          float scale, T *out, DecodeRope rope) {
    const int group = heads / kv_heads;
    const size_t entries = (size_t)(decode_count * heads * max_parts);
    float2 *part_ml = (float2 *)ctx->decode_partials;
    float *part_o = (float *)(part_ml + entries);
    const size_t smem = (size_t)((1 + kDecodeThreads / 32) * group * head_dim + group * smem_keys + 2 * kDecodeMaxGroup) * 4;
    const dim3 grid((unsigned)max_parts, (unsigned)kv_heads, (unsigned)decode_count);
    const int vecs = head_dim / 8;
    cudaError_t launched = cudaErrorInvalidValue;
    // Early K/V loads hold 16 more 16-byte rows per thread in registers (about twice the kernel's
    // registers, so half the resident blocks): they are taken while the grid fits the card in one
    // go (batch 1 to 16 of short contexts); larger grids take the variant without them. Both give
    // the same bits.
    const bool early = (int64_t)grid.x * grid.y * grid.z <= kDecodeEarlyBlocksPerSM * (int64_t)ctx->sm_count;
#define DARGS                                                                                                \
    qkv, stride, heads, kv_heads, head_dim, k_cache, v_cache, block_size, seqs, tables, decode, dyn, max_parts, \
        scale, part_o, part_ml, ctx->decode_counters, out, (int64_t)heads * head_dim, rope, (T *)k_cache, (T *)v_cache
#define DLAUNCH(L, G)                                                                                                 \
    launched = early ? launch_dependent(ctx, grid, dim3(kDecodeThreads), smem, decode_kernel<L, G, true, T>(), DARGS) \
                     : launch_dependent(ctx, grid, dim3(kDecodeThreads), smem, decode_kernel<L, G, false, T>(), DARGS)
#define DLAUNCH_G(L)                        \
    do {                                    \
        if (group == 1) DLAUNCH(L, 1);      \
        else if (group == 2) DLAUNCH(L, 2); \
        else if (group <= 4) DLAUNCH(L, 4); \
        else DLAUNCH(L, 8);                 \
    } while (0)
    if (vecs <= 2) DLAUNCH_G(2);
    else if (vecs <= 4) DLAUNCH_G(4);
    else if (vecs <= 8) DLAUNCH_G(8);
    else if (vecs <= 16) DLAUNCH_G(16);
    else DLAUNCH_G(32);
#undef DLAUNCH_G
#undef DLAUNCH
#undef DARGS
    return launched;
}

template cudaError_t launch_decode<half>(petrel_context *, const half *, int64_t, int, int, int, const half *, const half *,
                                         int, const int4 *, const int32_t *, const int32_t *, const int32_t *, int64_t, int,
                                         int, float, half *, DecodeRope);
template cudaError_t launch_decode<__nv_bfloat16>(petrel_context *, const __nv_bfloat16 *, int64_t, int, int, int,
                                                  const __nv_bfloat16 *, const __nv_bfloat16 *, int, const int4 *,
                                                  const int32_t *, const int32_t *, const int32_t *, int64_t, int, int, float,
                                                  __nv_bfloat16 *, DecodeRope);

int32_t decode_prefetch(const std::vector<int64_t> &contexts, int64_t kv_heads, int64_t head_dim) {
    int64_t keys = 0;
    for (int64_t c : contexts) keys += c;
    return keys * kv_heads * head_dim * 2 * 2 <= kDecodePrefetchBytes ? 1 : 0;
}

bool step_attention_applies(int64_t heads, int64_t kv_heads, int64_t head_dim) {
    return head_dim > 0 && head_dim % 8 == 0 && head_dim <= 192 && kv_heads > 0 && heads % kv_heads == 0 &&
           heads / kv_heads <= kDecodeMaxGroup;
}

void decode_partition(const petrel_context *ctx, const std::vector<int64_t> &contexts, int64_t kv_heads, int *part_keys_out,
                      int *max_parts_out) {
    int64_t max_context = 0;
    for (int64_t c : contexts) max_context = max_context > c ? max_context : c;
    // Partition size: the largest of 512, 256, 128, 64 keys that still gives about two blocks per
    // SM, so a small batch spreads its long contexts over the whole card.
    int part_keys = kMaxPartKeys;
    auto blocks_for = [&](int pk) {
        int64_t b = 0;
        for (int64_t c : contexts) b += (c + pk - 1) / pk;
        return b * kv_heads;
    };
    while (part_keys > kMinPartKeys && blocks_for(part_keys) < 2 * (int64_t)ctx->sm_count) part_keys /= 2;
    // Balance: as many partitions as that size needs for the longest context, of equal length
    // (rounded up to 32 keys), so a 530-key context splits 288 + 242, not 512 + 18.
    const int64_t parts = (max_context + part_keys - 1) / part_keys;
    const int64_t even = (max_context + parts - 1) / parts;
    part_keys = (int)((even + 31) / 32 * 32);
    *part_keys_out = part_keys;
    *max_parts_out = (int)((max_context + part_keys - 1) / part_keys);
}

int32_t ensure_decode_scratch(petrel_context *ctx, int64_t decode_count, int64_t heads, int64_t kv_heads, int64_t head_dim,
                              int64_t max_parts) {
    const size_t entries = (size_t)(decode_count * heads * max_parts);
    const size_t need = entries * (size_t)head_dim * 4 + entries * 8;
    if (need > ctx->decode_partials_bytes) {
        invalidate_graphs(ctx);
        if (ctx->decode_partials) CUDA_TRY(ctx, cudaFreeAsync(ctx->decode_partials, ctx->stream));
        ctx->decode_partials = nullptr;
        ctx->decode_partials_bytes = 0;
        const size_t grow = need * 2;
        CUDA_TRY(ctx, cudaMallocAsync(&ctx->decode_partials, grow, ctx->stream));
        ctx->decode_partials_bytes = grow;
    }
    // One arrival counter per (decode sequence, KV head), zero between launches (the last block of
    // each resets its own).
    const size_t counter_count = (size_t)(decode_count * kv_heads);
    if (counter_count > ctx->decode_counter_count) {
        invalidate_graphs(ctx);
        if (ctx->decode_counters) CUDA_TRY(ctx, cudaFreeAsync(ctx->decode_counters, ctx->stream));
        ctx->decode_counters = nullptr;
        ctx->decode_counter_count = 0;
        CUDA_TRY(ctx, cudaMallocAsync((void **)&ctx->decode_counters, counter_count * 2 * 4, ctx->stream));
        CUDA_TRY(ctx, cudaMemsetAsync(ctx->decode_counters, 0, counter_count * 2 * 4, ctx->stream));
        ctx->decode_counter_count = counter_count * 2;
    }
    return PETREL_OK;
}
