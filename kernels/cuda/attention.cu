// attention.cu: paged attention over a ragged batch. First every new token's K and V go into
// its cache slot; then a tiled kernel serves prefill chunks: a thread block takes a tile
// of up to 16 query rows (tokens x the query heads that share one KV head, so GQA reads each
// K/V chunk once per group) and walks that sequence's context in chunks of 32 keys staged in
// shared memory, with an online softmax in fp32. Sequences with a single new token (decode)
// take a split-K path instead (decode_attention_kernel, attention_decode.cu): their context is cut
// into partitions of 64-512 keys, each its own thread block; the last block of a sequence's KV head
// to finish combines the partitions. New keys are rotated (RoPE) as they are written when the caller
// passes positions (rope_kv_write_kernel). Fresh prefills (no cached prefix, at least
// kPrefillGemmMinTokens new tokens) take tensor-core GEMMs through cuBLAS instead of the tiled kernel
// (prefill_gemm_attention, attention_gemm.cu): S = scale Q K^T in fp32, a causal softmax into P (the context's
// element type), then O = P V written straight into `out`.
//
// Element type T: the context's (half or __nv_bfloat16) for qkv, the caches and out; every score,
// softmax and accumulator is fp32.
#include "internal.h"

#include <cfloat>

namespace {

constexpr int kRows = 16;      // query rows per tile
constexpr int kKeys = 32;      // keys per shared-memory chunk (one per lane)
constexpr int kThreads = 128;  // 4 warps x 4 rows

// Copies 2-byte elements bit for bit: serves fp16 and bf16 alike.
__global__ void kv_write_kernel(const half *qkv, int64_t stride, int heads, int kv_heads, int head_dim,
                                const int32_t *slots, half *k_cache, half *v_cache) {
    int slot = slots[blockIdx.x];
    if (slot < 0) return;
    int kvs = kv_heads * head_dim;
    const half *k = qkv + (int64_t)blockIdx.x * stride + heads * head_dim;
    const half *v = k + kvs;
    half *kd = k_cache + (int64_t)slot * kvs, *vd = v_cache + (int64_t)slot * kvs;
    for (int i = threadIdx.x; i < kvs; i += blockDim.x) {
        kd[i] = k[i];
        vd[i] = v[i];
    }
}

// RoPE fused with the K/V write. blockIdx: (row, head) over heads + 2 kv_heads "heads": query
// heads are rotated in place (rotate-half, angle position * inv_freq[i]), key heads rotated into
// the row's cache slot, value heads copied there. One thread per frequency (head_dim / 2).
// The attention kernels read keys from the cache only, so qkv's key part is left unrotated.
// k_rot, unless NULL, receives the same rotated keys of rows [k_first, k_end), row r at
// (r - k_first) kv_heads head_dim (the GEMM prefill path reads them there: contiguous, unlike
// the paged cache, and qkv's key part stays as the caller gave it).
template <typename T>
__global__ void rope_kv_write_kernel(T *qkv, int64_t stride, int heads, int kv_heads, int head_dim,
                                     const int32_t *slots, const int32_t *positions, const float *inv_freq,
                                     T *k_cache, T *v_cache, T *k_rot, int k_first, int k_end) {
    pdl_wait();   // launched as a programmatic dependent of the QKV matmul (launch_dependent)
    pdl_launch_dependents();
    const int half_dim = head_dim / 2, kvs = kv_heads * head_dim;
    const int h = blockIdx.y, i = threadIdx.x;
    const int slot = slots[blockIdx.x];
    T *src = qkv + (int64_t)blockIdx.x * stride + (int64_t)h * head_dim;
    if (i >= half_dim) return;
    if (h >= heads + kv_heads) {   // a value head: copy
        if (slot < 0) return;
        T *dst = v_cache + (int64_t)slot * kvs + (int64_t)(h - heads - kv_heads) * head_dim;
        dst[i] = src[i];
        dst[i + half_dim] = src[i + half_dim];
        return;
    }
    T ra, rb;
    rope_rotate<T>(to_float(src[i]), to_float(src[i + half_dim]), (float)positions[blockIdx.x], inv_freq[i], &ra, &rb);
    T *dst = src;
    if (h >= heads) {
        if (k_rot && (int)blockIdx.x >= k_first && (int)blockIdx.x < k_end) {
            T *kr = k_rot + (int64_t)(blockIdx.x - k_first) * kvs + (int64_t)(h - heads) * head_dim;
            kr[i] = ra;
            kr[i + half_dim] = rb;
        }
        if (slot < 0) return;
        dst = k_cache + (int64_t)slot * kvs + (int64_t)(h - heads) * head_dim;
    }
    dst[i] = ra;
    dst[i + half_dim] = rb;
}

// seqs: (token_begin, token_count, context_before, table_offset) per sequence.
// tiles: (sequence, first token within the sequence) per tile.
// blockIdx.x: tile; blockIdx.y: kv head * splits + split, where a split is `group_heads`
// consecutive query heads of that KV head's group.
template <int NT, typename T>  // head_dim <= 64 NT; lane owns dims 2 lane + 64 t (t < NT), as a pair
__global__ void __launch_bounds__(kThreads) attention_kernel(
    const T *qkv, int64_t stride, int heads, int kv_heads, int head_dim, const T *k_cache,
    const T *v_cache, int block_size, const int4 *seqs, const int32_t *tables, const int2 *tiles,
    int group_heads, int tile_tokens, float scale, T *out, int64_t out_stride) {
    using P = pair_t<T>;                            // half2 or __nv_bfloat162 (4 bytes either way)
    constexpr int HD2 = 32 * NT;                    // max pairs per head row
    __shared__ float2 qs[kRows][HD2];               // scaled queries
    __shared__ P ks[kKeys][HD2 + 1];                // +1: odd row stride, conflict-free per lane
    __shared__ P vs[kKeys][HD2];

    const int2 tile = tiles[blockIdx.x];
    const int4 sq = seqs[tile.x];
    const int token_count = min(tile_tokens, sq.y - tile.y);
    const int group = heads / kv_heads, splits = group / group_heads;
    const int kvh = blockIdx.y / splits, split = blockIdx.y % splits;
    const int rows = token_count * group_heads;
    const int hd2 = head_dim / 2;
    const int kvs = kv_heads * head_dim;

    for (int idx = threadIdx.x; idx < kRows * HD2; idx += kThreads) {
        int r = idx / HD2, d2 = idx % HD2;
        float2 v = make_float2(0.f, 0.f);
        if (r < rows && d2 < hd2) {
            int t = r / group_heads, h = kvh * group + split * group_heads + r % group_heads;
            const P *q = (const P *)(qkv + (int64_t)(sq.x + tile.y + t) * stride + h * head_dim);
            v = to_float2(q[d2]);
            v.x *= scale;
            v.y *= scale;
        }
        qs[r][d2] = v;
    }

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row0 = warp * 4;
    const bool active = row0 < rows;
    int last_key[4];   // position of the last key each row may see (causal); -1: no row
#pragma unroll
    for (int r = 0; r < 4; r++) last_key[r] = row0 + r < rows ? sq.z + tile.y + (row0 + r) / group_heads : -1;
    float m[4], l[4];
    float2 acc[4][NT];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        m[r] = -FLT_MAX;
        l[r] = 0.f;
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = make_float2(0.f, 0.f);
    }

    const int key_end = sq.z + tile.y + token_count;   // exclusive
    const int32_t *table = tables + sq.w;
    for (int k0 = 0; k0 < key_end; k0 += kKeys) {
        __syncthreads();   // the previous chunk (and the queries, first time) are settled
        for (int idx = threadIdx.x; idx < kKeys * hd2; idx += kThreads) {
            int j = idx / hd2, d2 = idx % hd2, pos = k0 + j;
            P kv = splat2<T>(0.f), vv = kv;
            if (pos < key_end) {
                int64_t slot = (int64_t)table[pos / block_size] * block_size + pos % block_size;
                int64_t off = slot * kvs + kvh * head_dim;
                kv = ((const P *)(k_cache + off))[d2];
                vv = ((const P *)(v_cache + off))[d2];
            }
            ks[j][d2] = kv;
            vs[j][d2] = vv;
        }
        __syncthreads();
        if (!active) continue;

        // Scores: lane j against the warp's 4 rows.
        float s[4] = {0.f, 0.f, 0.f, 0.f};
        for (int d2 = 0; d2 < hd2; d2++) {
            float2 k = to_float2(ks[lane][d2]);
#pragma unroll
            for (int r = 0; r < 4; r++) {
                float2 q = qs[row0 + r][d2];
                s[r] += q.x * k.x + q.y * k.y;
            }
        }
        const int pos = k0 + lane;
        float p[4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            bool visible = pos <= last_key[r];
            float sc = visible ? s[r] : -FLT_MAX;
            float mx = sc;
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            float new_m = fmaxf(m[r], mx);
            float corr = __expf(m[r] - new_m);
            p[r] = visible ? __expf(sc - new_m) : 0.f;
            float ps = p[r];
            for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
            l[r] = l[r] * corr + ps;
            m[r] = new_m;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                acc[r][t].x *= corr;
                acc[r][t].y *= corr;
            }
        }
        // Weighted values: lane owns dims 2 (lane + 32 t).
        int keys = min(kKeys, key_end - k0);
        for (int j = 0; j < keys; j++) {
            float pj[4];
#pragma unroll
            for (int r = 0; r < 4; r++) pj[r] = __shfl_sync(0xffffffffu, p[r], j);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                int d2 = lane + 32 * t;
                if (d2 < hd2) {
                    float2 v = to_float2(vs[j][d2]);
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        acc[r][t].x += pj[r] * v.x;
                        acc[r][t].y += pj[r] * v.y;
                    }
                }
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int r = 0; r < 4; r++) {
        int row = row0 + r;
        if (row >= rows) continue;
        int t = row / group_heads, h = kvh * group + split * group_heads + row % group_heads;
        P *o = (P *)(out + (int64_t)(sq.x + tile.y + t) * out_stride + h * head_dim);
        float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
#pragma unroll
        for (int tt = 0; tt < NT; tt++) {
            int d2 = lane + 32 * tt;
            if (d2 < hd2) o[d2] = from_float2<T>(acc[r][tt].x * inv, acc[r][tt].y * inv);
        }
    }
}


// A decode step inside petrel_step_begin .. petrel_step_end: every input comes from the step's
// upload (ctx->step), so the launches are the same for every step of the shape and can be captured.
int32_t step_attention(petrel_context *ctx, void *qkv, int64_t heads, int64_t kv_heads, int64_t head_dim, void *k_cache,
                       void *v_cache, int64_t block_size, int64_t seq_count, bool rope, float scale, void *out) {
    StepState &st = ctx->step;
    if (seq_count != st.n || head_dim / 2 != st.half_dim)
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "attention: %lld sequences of head_dim %lld in a step begun with %lld of %lld",
                    (long long)seq_count, (long long)head_dim, (long long)st.n, (long long)(2 * st.half_dim));
    return with_element_type(ctx, [&](auto tag) -> int32_t {
        using T = typename decltype(tag)::type;
        const int64_t stride = (heads + 2 * kv_heads) * head_dim;
        // Every row of a step is a decode sequence: its rotation and K/V write go into the
        // attention kernel itself.
        DecodeRope fused;
        if (rope) {
            fused.positions = st.positions;
            fused.slots = st.slots;
            fused.inv_freq = st.inv_freq;
        } else {
            kv_write_kernel<<<(unsigned)st.n, 128, 0, ctx->stream>>>((const half *)qkv, stride, (int)heads, (int)kv_heads,
                                                                      (int)head_dim, st.slots, (half *)k_cache, (half *)v_cache);
        }
        LAUNCH_CHECK(ctx);
        CUDA_TRY(ctx, launch_decode<T>(ctx, (const T *)qkv, stride, (int)heads, (int)kv_heads, (int)head_dim, (const T *)k_cache,
                                       (const T *)v_cache, (int)block_size, st.seqs, st.tables, st.decode, st.dyn, st.n,
                                       (int)st.max_parts, kMaxPartKeys, scale, (T *)out, fused));
        return PETREL_OK;
    });
}

}  // namespace


extern "C" int32_t petrel_attention_enqueue(petrel_context *ctx, void *qkv, int64_t heads, int64_t kv_heads,
                                            int64_t head_dim, void *k_cache, void *v_cache, int64_t block_size,
                                            const petrel_attn_seq *seqs, int64_t seq_count, const int32_t *positions,
                                            const float *inv_freq, float scale, void *out) {
    if (seq_count == 0) return PETREL_OK;
    if (ctx->step.active)
        return step_attention(ctx, qkv, heads, kv_heads, head_dim, k_cache, v_cache, block_size, seq_count,
                              positions != nullptr, scale, out);
    if (head_dim % 2 || head_dim > 192 || head_dim <= 0)
        return fail(ctx, PETREL_ERROR_UNSUPPORTED, "attention: head_dim %lld (supported: even, <= 192)", (long long)head_dim);
    if (kv_heads <= 0 || heads % kv_heads)
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "attention: %lld heads over %lld KV heads", (long long)heads, (long long)kv_heads);
    const int group = (int)(heads / kv_heads);
    int group_heads = group;   // query heads per tile: the largest divisor of the group <= 16
    while (group_heads > kRows || group % group_heads) group_heads--;
    const int tile_tokens = kRows / group_heads;
    // Sequences with one new token go to the split-K decode kernel (16-byte K/V loads need
    // head_dim % 8 == 0; its registers hold up to kDecodeMaxGroup query heads per KV head).
    const bool split_decode = head_dim % 8 == 0 && group <= kDecodeMaxGroup;
    auto is_decode = [&](const petrel_attn_seq &q) { return split_decode && q.token_count == 1; };
    // Fresh prefills (no cached prefix) of at least kPrefillGemmMinTokens tokens take the cuBLAS
    // path (prefill_gemm_attention) after the kernels, unless the sequence is too long for the
    // score budget or its scratch cannot be allocated.
    bool gemm_on = true;
    auto is_gemm = [&](const petrel_attn_seq &q) {
        return gemm_on && !is_decode(q) && q.context_before == 0 && q.token_count >= kPrefillGemmMinTokens &&
               gemm_block_rows(heads, q.token_count) > 0;
    };

    // Metadata blob (int32): seqs (4 each) | block tables | slot of every row | tiles (2 each) |
    // indices of the decode sequences.
    int64_t rows = 0, table_total = 0, tile_count = 0, decode_count = 0;
    // GEMM path: its sequences, the tiles they would take otherwise, the largest block's
    // heads x rows x padded keys, and the rows [key_first, key_end) that hold its sequences.
    int64_t gemm_count = 0, gemm_tiles = 0, score_elems = 0, key_first = 0, key_end = 0;
    for (int64_t s = 0; s < seq_count; s++) {
        const petrel_attn_seq &q = seqs[s];
        if (q.block_count * block_size < q.context_before + q.token_count)
            return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "attention: sequence %lld's block table is too short", (long long)s);
        rows = rows > q.token_begin + q.token_count ? rows : q.token_begin + q.token_count;
        table_total += q.block_count;
        if (is_decode(q)) {
            decode_count++;
        } else if (is_gemm(q)) {
            const int64_t elems = heads * gemm_block_rows(heads, q.token_count) * round8(q.token_count);
            score_elems = score_elems > elems ? score_elems : elems;
            key_first = gemm_count == 0 || q.token_begin < key_first ? q.token_begin : key_first;
            key_end = key_end > q.token_begin + q.token_count ? key_end : q.token_begin + q.token_count;
            gemm_count++;
            gemm_tiles += (q.token_count + tile_tokens - 1) / tile_tokens;
        } else {
            tile_count += (q.token_count + tile_tokens - 1) / tile_tokens;
        }
    }
    // GEMM scratch (ctx->prefill_scratch): with RoPE the rotated keys of rows [key_first,
    // key_end) (the element type, 2 bytes, kv_heads * head_dim each; rope_kv_write_kernel writes
    // them), then S (fp32) and P (the element type) of one row block, score_elems each. Grown on
    // demand, stream-ordered; if it cannot be had, this call's fresh prefills take the tiled kernel
    // instead.
    const int64_t kvs = kv_heads * head_dim;
    size_t keys_bytes = 0, score_bytes = 0;
    if (gemm_count > 0) {
        keys_bytes = positions ? round256((size_t)((key_end - key_first) * kvs) * 2) : 0;
        score_bytes = round256((size_t)score_elems * 4);
        const size_t need = keys_bytes + score_bytes + (size_t)score_elems * 2;
        if (need > ctx->prefill_scratch_bytes) {
            if (ctx->prefill_scratch) CUDA_TRY(ctx, cudaFreeAsync(ctx->prefill_scratch, ctx->stream));
            ctx->prefill_scratch = nullptr;
            ctx->prefill_scratch_bytes = 0;
            const size_t grow = (need + (8u << 20) - 1) / (8u << 20) * (8u << 20);   // whole 8 MiB
            if (cudaMallocAsync(&ctx->prefill_scratch, grow, ctx->stream) == cudaSuccess) {
                ctx->prefill_scratch_bytes = grow;
            } else {
                cudaGetLastError();   // out of memory is not sticky: fall back to the tiled kernel
                ctx->prefill_scratch = nullptr;
                gemm_on = false;
                tile_count += gemm_tiles;
                gemm_count = 0;
            }
        }
    }
    if (tile_count == 0 && decode_count == 0 && gemm_count == 0) return PETREL_OK;
    int part_keys = 0, max_parts = 0, prefetch = 0;
    if (decode_count > 0) {
        std::vector<int64_t> contexts;
        for (int64_t s = 0; s < seq_count; s++)
            if (is_decode(seqs[s])) contexts.push_back(seqs[s].context_before + 1);
        decode_partition(ctx, contexts, kv_heads, &part_keys, &max_parts);
        prefetch = decode_prefetch(contexts, kv_heads, head_dim);
        const int32_t status = ensure_decode_scratch(ctx, decode_count, heads, kv_heads, head_dim, max_parts);
        if (status != PETREL_OK) return status;
    }
    // One padding int keeps the tiles (read as int2) 8-byte aligned. The last two words: the decode
    // partition size and whether to prefetch (the decode kernel's dyn[0] and dyn[1]).
    const int64_t pad = (seq_count * 4 + table_total + rows) % 2;
    const int64_t position_count = positions ? rows : 0;
    std::vector<int32_t> blob((size_t)(seq_count * 4 + table_total + rows + pad + tile_count * 2 + decode_count + position_count + 2));
    int32_t *seq_part = blob.data(), *table_part = seq_part + seq_count * 4, *slot_part = table_part + table_total,
            *tile_part = slot_part + rows + pad, *decode_part = tile_part + tile_count * 2;
    int32_t *position_part = decode_part + decode_count;
    if (positions) memcpy(position_part, positions, (size_t)rows * 4);
    position_part[position_count] = part_keys;
    position_part[position_count + 1] = prefetch;
    int64_t decode_index = 0;
    for (int64_t i = 0; i < rows; i++) slot_part[i] = -1;
    int64_t table_offset = 0, tile = 0;
    for (int64_t s = 0; s < seq_count; s++) {
        const petrel_attn_seq &q = seqs[s];
        seq_part[s * 4 + 0] = (int32_t)q.token_begin;
        seq_part[s * 4 + 1] = (int32_t)q.token_count;
        seq_part[s * 4 + 2] = (int32_t)q.context_before;
        seq_part[s * 4 + 3] = (int32_t)table_offset;
        memcpy(table_part + table_offset, q.block_table, (size_t)q.block_count * 4);
        table_offset += q.block_count;
        for (int64_t i = 0; i < q.token_count; i++) {
            int64_t pos = q.context_before + i;
            slot_part[q.token_begin + i] = (int32_t)(q.block_table[pos / block_size] * block_size + pos % block_size);
        }
        if (is_decode(q)) {
            decode_part[decode_index++] = (int32_t)s;
            continue;
        }
        if (is_gemm(q)) continue;   // no tiles: prefill_gemm_attention serves it below
        for (int64_t first = 0; first < q.token_count; first += tile_tokens) {
            tile_part[tile * 2] = (int32_t)s;
            tile_part[tile * 2 + 1] = (int32_t)first;
            tile++;
        }
    }
    void *dev, *dev_freq = nullptr;
    int32_t status = reserve_arena(ctx, (blob.size() * 4 + 255) / 256 * 256 + ((size_t)head_dim * 2 + 255) / 256 * 256);
    if (status == PETREL_OK) status = upload_cached(ctx, ctx->attention_cache, blob.data(), blob.size() * 4, &dev);
    if (status == PETREL_OK && positions)
        status = upload_cached(ctx, ctx->inv_freq_cache, inv_freq, (size_t)head_dim / 2 * 4, &dev_freq);
    if (status != PETREL_OK) return status;
    const int32_t *d_blob = (const int32_t *)dev;
    const int4 *d_seqs = (const int4 *)d_blob;
    const int32_t *d_tables = d_blob + seq_count * 4, *d_slots = d_tables + table_total;
    const int2 *d_tiles = (const int2 *)(d_slots + rows + pad);
    const int32_t *d_decode = (const int32_t *)(d_tiles + tile_count);
    const int32_t *d_positions = d_decode + decode_count;
    const int32_t *d_dyn = d_positions + position_count;

    // The launches, for the context's element type T (kv_write_kernel copies 2-byte elements as
    // they are, whichever the type).
    return with_element_type(ctx, [&](auto tag) -> int32_t {
        using T = typename decltype(tag)::type;
        const int64_t stride = (heads + 2 * kv_heads) * head_dim;
        T *k_rot = positions && gemm_count > 0 ? (T *)ctx->prefill_scratch : nullptr;
        if (positions)
            CUDA_TRY(ctx, launch_dependent(ctx, dim3((unsigned)rows, (unsigned)(heads + 2 * kv_heads)),
                                           dim3((unsigned)((head_dim / 2 + 31) / 32 * 32)), 0, rope_kv_write_kernel<T>, (T *)qkv,
                                           stride, (int)heads, (int)kv_heads, (int)head_dim, (const int32_t *)d_slots,
                                           (const int32_t *)d_positions, (const float *)dev_freq, (T *)k_cache,
                                           (T *)v_cache, k_rot, (int)key_first, (int)key_end));
        else
            kv_write_kernel<<<(unsigned)rows, 128, 0, ctx->stream>>>((const half *)qkv, stride, (int)heads, (int)kv_heads,
                                                                      (int)head_dim, d_slots, (half *)k_cache, (half *)v_cache);
        LAUNCH_CHECK(ctx);

        if (decode_count > 0)
            CUDA_TRY(ctx, launch_decode<T>(ctx, (const T *)qkv, stride, (int)heads, (int)kv_heads, (int)head_dim,
                                           (const T *)k_cache, (const T *)v_cache, (int)block_size, d_seqs, d_tables, d_decode,
                                           d_dyn, decode_count, max_parts, part_keys, scale, (T *)out));
        if (tile_count > 0) {
            dim3 grid((unsigned)tile_count, (unsigned)(kv_heads * (group / group_heads)));
#define LAUNCH(NT)                                                                                             \
        attention_kernel<NT, T><<<grid, kThreads, 0, ctx->stream>>>(                                              \
            (const T *)qkv, stride, (int)heads, (int)kv_heads, (int)head_dim, (const T *)k_cache,                  \
            (const T *)v_cache, (int)block_size, d_seqs, d_tables, d_tiles, group_heads, tile_tokens, scale,        \
            (T *)out, heads * head_dim)
            if (head_dim <= 64) LAUNCH(1);
            else if (head_dim <= 128) LAUNCH(2);
            else LAUNCH(3);
#undef LAUNCH
            LAUNCH_CHECK(ctx);
        }

        // Fresh prefills through cuBLAS, one sequence at a time (they share the scratch; the stream
        // orders them). Queries: qkv (rotated in place by now). Keys: with RoPE the rotated copies in
        // k_rot (the very elements the cache got), else qkv's key part (what kv_write_kernel copied).
        // Values: qkv's value part (copied to the cache unchanged either way).
        if (gemm_count > 0) {
            const T *base = (const T *)qkv;
            unsigned char *scratch = (unsigned char *)ctx->prefill_scratch;
            float *S = (float *)(scratch + keys_bytes);
            T *P = (T *)(scratch + keys_bytes + score_bytes);
            for (int64_t s = 0; s < seq_count; s++) {
                const petrel_attn_seq &q = seqs[s];
                if (!is_gemm(q)) continue;
                const int64_t b = q.token_begin;
                const T *row = base + b * stride;
                const T *k = k_rot ? k_rot + (b - key_first) * kvs : row + heads * head_dim;
                const int32_t st = prefill_gemm_attention(
                    ctx, q.token_count, gemm_block_rows(heads, q.token_count), heads, kv_heads, head_dim, row, stride, k,
                    k_rot ? kvs : stride, row + (heads + kv_heads) * head_dim, stride, scale, S, P,
                    (T *)out + b * heads * head_dim, heads * head_dim);
                if (st != PETREL_OK) return st;
            }
        }
        return PETREL_OK;
    });
}
