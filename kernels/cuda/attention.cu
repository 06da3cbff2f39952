// attention.cu: paged attention over a ragged batch. First every new token's K and V go into
// its cache slot; then one kernel serves prefill and decode alike: a thread block takes a tile
// of up to 16 query rows (tokens x the query heads that share one KV head, so GQA reads each
// K/V chunk once per group) and walks that sequence's context in chunks of 32 keys staged in
// shared memory, with an online softmax in fp32.
#include "internal.h"

#include <cfloat>

namespace {

constexpr int kRows = 16;      // query rows per tile
constexpr int kKeys = 32;      // keys per shared-memory chunk (one per lane)
constexpr int kThreads = 128;  // 4 warps x 4 rows

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

// seqs: (token_begin, token_count, context_before, table_offset) per sequence.
// tiles: (sequence, first token within the sequence) per tile.
// blockIdx.x: tile; blockIdx.y: kv head * splits + split, where a split is `group_heads`
// consecutive query heads of that KV head's group.
template <int NT>  // head_dim <= 64 NT; lane owns dims 2 lane + 64 t (t < NT), as half2
__global__ void __launch_bounds__(kThreads) attention_kernel(
    const half *qkv, int64_t stride, int heads, int kv_heads, int head_dim, const half *k_cache,
    const half *v_cache, int block_size, const int4 *seqs, const int32_t *tables, const int2 *tiles,
    int group_heads, int tile_tokens, float scale, half *out, int64_t out_stride) {
    constexpr int HD2 = 32 * NT;                    // max half2 per head row
    __shared__ float2 qs[kRows][HD2];               // scaled queries
    __shared__ half2 ks[kKeys][HD2 + 1];            // +1: odd row stride, conflict-free per lane
    __shared__ half2 vs[kKeys][HD2];

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
            const half2 *q = (const half2 *)(qkv + (int64_t)(sq.x + tile.y + t) * stride + h * head_dim);
            v = __half22float2(q[d2]);
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
            half2 kv = __float2half2_rn(0.f), vv = kv;
            if (pos < key_end) {
                int64_t slot = (int64_t)table[pos / block_size] * block_size + pos % block_size;
                int64_t off = slot * kvs + kvh * head_dim;
                kv = ((const half2 *)(k_cache + off))[d2];
                vv = ((const half2 *)(v_cache + off))[d2];
            }
            ks[j][d2] = kv;
            vs[j][d2] = vv;
        }
        __syncthreads();
        if (!active) continue;

        // Scores: lane j against the warp's 4 rows.
        float s[4] = {0.f, 0.f, 0.f, 0.f};
        for (int d2 = 0; d2 < hd2; d2++) {
            float2 k = __half22float2(ks[lane][d2]);
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
                    float2 v = __half22float2(vs[j][d2]);
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
        half2 *o = (half2 *)(out + (int64_t)(sq.x + tile.y + t) * out_stride + h * head_dim);
        float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
#pragma unroll
        for (int tt = 0; tt < NT; tt++) {
            int d2 = lane + 32 * tt;
            if (d2 < hd2) o[d2] = __floats2half2_rn(acc[r][tt].x * inv, acc[r][tt].y * inv);
        }
    }
}

}  // namespace

extern "C" int32_t petrel_attention_enqueue(petrel_context *ctx, const void *qkv, int64_t heads, int64_t kv_heads,
                                            int64_t head_dim, void *k_cache, void *v_cache, int64_t block_size,
                                            const petrel_attn_seq *seqs, int64_t seq_count, float scale, void *out) {
    if (seq_count == 0) return PETREL_OK;
    if (head_dim % 2 || head_dim > 192 || head_dim <= 0)
        return fail(ctx, PETREL_ERROR_UNSUPPORTED, "attention: head_dim %lld (supported: even, <= 192)", (long long)head_dim);
    if (kv_heads <= 0 || heads % kv_heads)
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "attention: %lld heads over %lld KV heads", (long long)heads, (long long)kv_heads);
    const int group = (int)(heads / kv_heads);
    int group_heads = group;   // query heads per tile: the largest divisor of the group <= 16
    while (group_heads > kRows || group % group_heads) group_heads--;
    const int tile_tokens = kRows / group_heads;

    // Metadata blob (int32): seqs (4 each) | block tables | slot of every row | tiles (2 each).
    int64_t rows = 0, table_total = 0, tile_count = 0;
    for (int64_t s = 0; s < seq_count; s++) {
        const petrel_attn_seq &q = seqs[s];
        if (q.block_count * block_size < q.context_before + q.token_count)
            return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "attention: sequence %lld's block table is too short", (long long)s);
        rows = rows > q.token_begin + q.token_count ? rows : q.token_begin + q.token_count;
        table_total += q.block_count;
        tile_count += (q.token_count + tile_tokens - 1) / tile_tokens;
    }
    if (tile_count == 0) return PETREL_OK;
    // One padding int keeps the tiles (read as int2) 8-byte aligned.
    const int64_t pad = (seq_count * 4 + table_total + rows) % 2;
    std::vector<int32_t> blob((size_t)(seq_count * 4 + table_total + rows + pad + tile_count * 2));
    int32_t *seq_part = blob.data(), *table_part = seq_part + seq_count * 4, *slot_part = table_part + table_total,
            *tile_part = slot_part + rows + pad;
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
        for (int64_t first = 0; first < q.token_count; first += tile_tokens) {
            tile_part[tile * 2] = (int32_t)s;
            tile_part[tile * 2 + 1] = (int32_t)first;
            tile++;
        }
    }
    void *dev;
    int32_t status = upload_cached(ctx, ctx->attention_cache, blob.data(), blob.size() * 4, &dev);
    if (status != PETREL_OK) return status;
    const int32_t *d_blob = (const int32_t *)dev;
    const int4 *d_seqs = (const int4 *)d_blob;
    const int32_t *d_tables = d_blob + seq_count * 4, *d_slots = d_tables + table_total;
    const int2 *d_tiles = (const int2 *)(d_slots + rows + pad);

    const int64_t stride = (heads + 2 * kv_heads) * head_dim;
    kv_write_kernel<<<(unsigned)rows, 128, 0, ctx->stream>>>((const half *)qkv, stride, (int)heads, (int)kv_heads,
                                                              (int)head_dim, d_slots, (half *)k_cache, (half *)v_cache);
    LAUNCH_CHECK(ctx);

    dim3 grid((unsigned)tile_count, (unsigned)(kv_heads * (group / group_heads)));
#define LAUNCH(NT)                                                                                             \
    attention_kernel<NT><<<grid, kThreads, 0, ctx->stream>>>(                                                 \
        (const half *)qkv, stride, (int)heads, (int)kv_heads, (int)head_dim, (const half *)k_cache,            \
        (const half *)v_cache, (int)block_size, d_seqs, d_tables, d_tiles, group_heads, tile_tokens, scale,     \
        (half *)out, heads * head_dim)
    if (head_dim <= 64) LAUNCH(1);
    else if (head_dim <= 128) LAUNCH(2);
    else LAUNCH(3);
#undef LAUNCH
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}
