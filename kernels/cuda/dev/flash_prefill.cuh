// dev/flash_prefill.cuh: a candidate prefill attention on tensor cores, FlashAttention-2's algorithm
// (Dao, 2023) written from the paper for Petrel's paged cache: causal attention of a ragged batch's
// new tokens over each sequence's whole context, reading keys and values through the block table.
// Not in the library: dev/bench_attn.cu checks it against a CPU reference and against
// petrel_attention_enqueue, then times it beside the product.
//
// Contract (the same as attention.cu's tiled kernel, so it can replace the tiled and cuBLAS prefill
// later): the caller has already written every new token's K and V to its cache slot (kv_write_kernel
// or rope_kv_write_kernel) and rotated the queries in qkv. qkv rows: heads query heads, then kv_heads
// key heads, then kv_heads value heads, head_dim each, `stride` elements apart. k_cache / v_cache:
// (blocks, block_size, kv_heads, head_dim); key position p of a sequence lies in slot
// table[p / block_size] * block_size + p % block_size. seqs: (token_begin, token_count,
// context_before, table_offset) per sequence, as petrel_attention_enqueue uploads them. out: row r,
// head h at r * out_stride + h * head_dim; S = scale Q K^T, softmax in fp32, rows written nowhere else.
//
// Design. A thread block (W warps) takes one tile of BM = 16 W query rows of one KV head: rows are
// (token, member of the GQA group) pairs, token-major (row = t * group + m, as the tiled kernel packs
// them), so the group's heads share every K/V tile; BM / group tokens a tile. It walks the keys
// [0, key_end) of the tile's last token in tiles of BN = 64, staged in shared memory by cp.async,
// two stages deep (tile j + 1 is copied while tile j is used). Each warp owns 16 query rows:
//   S (16 x 64, fp32 registers) = Q K^T     mma.m16n8k16, Q and K fragments by ldmatrix
//   causal mask (only the tiles that reach past the tile's first token), online softmax in fp32
//   with exp2 and the scale folded with log2 e; P rounded to the element type straight into
//   A fragments (the S accumulator layout of two n8 tiles is the A layout of one k16 step)
//   O (16 x head_dim, fp32 registers) += P V  V's B fragments by ldmatrix.trans
// Q stays in shared memory and is re-read per k step (32 registers fewer than holding it). At the
// end each warp writes its rows of O / l through its own rows of the Q buffer as 16-byte stores.
// Shared rows are head_dim + 8 elements long: 8 consecutive rows of an ldmatrix phase then start 16
// bytes apart modulo 128, so no bank is hit twice.
#pragma once
#include "../internal.h"

#include <cmath>

namespace flash {

constexpr int kKeysTile = 64;                 // BN: keys per shared-memory tile
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, bypassing L1; when !valid no byte is read and the 16 bytes are zeroed
// (src must still be a valid address).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i .. 8i + 7 give the row addresses of matrix i, r[i] receives it:
// lane l holds row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 (with .trans: column l / 4, rows
// 2 (l % 4) and 2 (l % 4) + 1), the lower column (row) in the low half.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}

// c (16x8, fp32) += a (16x16, row) . b (16x8, col). With g = lane / 4, q = lane % 4:
// a[0]: row g, k 2q, 2q+1; a[1]: row g+8, same k; a[2]: row g, k 2q+8, 2q+9; a[3]: row g+8, k 2q+8, 2q+9.
// b0: k 2q, 2q+1, column g; b1: k 2q+8, 2q+9, column g.
// c[0], c[1]: row g, columns 2q, 2q+1; c[2], c[3]: row g+8, columns 2q, 2q+1.
template <typename T> __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    if constexpr (std::is_same<T, half>::value)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// (a, b) rounded to T, a in the low half.
template <typename T> __device__ __forceinline__ uint32_t pack2(float a, float b) {
    pair_t<T> p = from_float2<T>(a, b);
    return *reinterpret_cast<uint32_t *>(&p);
}

// 2^x (MUFU.EX2; 2^-inf = 0).
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

template <int HD, int W> struct Shape {
    static constexpr int BM = 16 * W;         // query rows a tile
    static constexpr int BN = kKeysTile;
    static constexpr int LD = HD + 8;          // shared row length in elements (+16 bytes: no bank conflicts)
    static constexpr int CH = HD / 8;          // 16-byte chunks a row
    static constexpr int kThreads = 32 * W;
    // Q (BM rows), then K and V for two stages (BN rows each); 2-byte elements.
    static constexpr size_t kSmemBytes = (size_t)(BM + 4 * BN) * LD * 2;
};

// blockIdx.x: tile (tiles[x] = (sequence, first token within it)); blockIdx.y: KV head.
// scale_log2 = scale * log2(e) (scale > 0).
template <typename T, int HD, int W>
__global__ void __launch_bounds__(32 * W) flash_prefill_kernel(const T *__restrict__ qkv, int64_t stride, int heads, int kv_heads,
                                                            const T *__restrict__ k_cache, const T *__restrict__ v_cache,
                                                            int block_size, const int4 *__restrict__ seqs,
                                                            const int32_t *__restrict__ tables, const int2 *__restrict__ tiles,
                                                            float scale_log2, T *__restrict__ out, int64_t out_stride) {
    using S = Shape<HD, W>;
    constexpr int BM = S::BM, BN = S::BN, LD = S::LD, CH = S::CH, NT = S::kThreads;
    static_assert(NT % CH == 0, "a thread's chunk column is fixed across its rows");
    extern __shared__ uint4 smem_raw[];
    T *const qs = reinterpret_cast<T *>(smem_raw);   // BM x LD
    T *const ks = qs + BM * LD;                       // 2 stages of BN x LD
    T *const vs = ks + 2 * BN * LD;                   // 2 stages of BN x LD

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int2 tile = tiles[blockIdx.x];
    const int4 sq = seqs[tile.x];
    const int kvh = blockIdx.y;
    const int group = heads / kv_heads;
    const int tokens = min(BM / group, sq.y - tile.y);   // tokens of this tile (>= 1)
    const int rows = tokens * group;                      // live query rows
    const int first_pos = sq.z + tile.y;                  // position of the tile's first token
    const int key_end = first_pos + tokens;               // keys [0, key_end): causal
    const int key_tiles = (key_end + BN - 1) / BN;
    const int64_t kvs = (int64_t)kv_heads * HD;
    const int32_t *table = tables + sq.w;
    const int chunk = tid % CH;   // the 16-byte column this thread copies, in every row it copies

    // Q: row r = (token r / group, head kvh group + r % group); rows past `rows` are zeroed.
    for (int r = tid / CH; r < BM; r += NT / CH) {
        const bool live = r < rows;
        const T *src = qkv;
        if (live)
            src = qkv + (int64_t)(sq.x + tile.y + r / group) * stride + (int64_t)(kvh * group + r % group) * HD + chunk * 8;
        cp_async16(qs + r * LD + chunk * 8, src, live);
    }
    // K and V tile j into stage s; positions past key_end are zeroed (P is 0 there, and 0 x NaN
    // would not be).
    auto load_kv = [&](int j, int s) {
        T *kd = ks + s * BN * LD, *vd = vs + s * BN * LD;
        for (int r = tid / CH; r < BN; r += NT / CH) {
            const int pos = j * BN + r;
            const bool live = pos < key_end;
            int64_t off = 0;
            if (live) off = ((int64_t)table[pos / block_size] * block_size + pos % block_size) * kvs + kvh * HD + chunk * 8;
            cp_async16(kd + r * LD + chunk * 8, k_cache + off, live);
            cp_async16(vd + r * LD + chunk * 8, v_cache + off, live);
        }
    };
    load_kv(0, 0);
    cp_async_commit();   // group 0: Q and K/V tile 0

    // This thread's two rows of the warp's 16: g and g + 8; their last visible key.
    const int g = lane / 4, q4 = lane % 4;
    const int row0 = warp * 16 + g, row1 = row0 + 8;
    const bool warp_live = warp * 16 < rows;
    const int last0 = first_pos + min(row0 / group, tokens - 1), last1 = first_pos + min(row1 / group, tokens - 1);

    float o[HD / 8][4];   // O: d-tile n holds columns 8n + 2 q4, +1 of rows g (0, 1) and g + 8 (2, 3)
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY;   // running max of the raw scores (Q K^T, unscaled)
    float l0 = 0.f, l1 = 0.f;               // this thread's part of the running sum (summed over the quad at the end)

    // ldmatrix row addresses of this lane (see ldmatrix_x4): Q's A fragment (matrices: rows 0-7 /
    // 8-15 x columns 0-7, then the same x columns 8-15), K's B fragments of two n8 tiles (keys 0-7 x
    // dims 0-7 / 8-15, then keys 8-15), V's through .trans (keys 0-7 / 8-15 x dims 0-7, then dims 8-15).
    const int lr = lane % 8, lb3 = (lane / 8) % 2, lb4 = lane / 16;
    const T *q_lane = qs + (warp * 16 + lr + 8 * lb3) * LD + 8 * lb4;
    const int k_lane = (lr + 8 * lb4) * LD + 8 * lb3;
    const int v_lane = (lr + 8 * lb3) * LD + 8 * lb4;

    for (int j = 0; j < key_tiles; j++) {
        if (j + 1 < key_tiles) load_kv(j + 1, (j + 1) % 2);   // its stage was last read in iteration j - 1
        cp_async_commit();                                    // (possibly empty) group j + 1
        cp_async_wait<1>();                                   // group j has landed for this thread
        __syncthreads();                                      // ... and for every thread
        if (warp_live) {
            const T *kt = ks + (j % 2) * BN * LD, *vt = vs + (j % 2) * BN * LD;
            float s[BN / 8][4];
#pragma unroll
            for (int n = 0; n < BN / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                uint32_t a[4];
                ldmatrix_x4(a, q_lane + kk * 16);
#pragma unroll
                for (int nn = 0; nn < BN / 16; nn++) {
                    uint32_t b[4];
                    ldmatrix_x4(b, kt + k_lane + nn * 16 * LD + kk * 16);
                    mma16816<T>(s[2 * nn], a, b[0], b[1]);
                    mma16816<T>(s[2 * nn + 1], a, b[2], b[3]);
                }
            }
            // Causal mask: only tiles with a key past the tile's first token's position can hide one.
            const int k0 = j * BN;
            if (k0 + BN - 1 > first_pos) {
#pragma unroll
                for (int n = 0; n < BN / 8; n++) {
                    const int key = k0 + 8 * n + 2 * q4;
                    if (key > last0) s[n][0] = -INFINITY;
                    if (key + 1 > last0) s[n][1] = -INFINITY;
                    if (key > last1) s[n][2] = -INFINITY;
                    if (key + 1 > last1) s[n][3] = -INFINITY;
                }
            }
            // Online softmax: a row's 64 scores lie in the 4 lanes of a quad.
            float mx0 = m0, mx1 = m1;
#pragma unroll
            for (int n = 0; n < BN / 8; n++) {
                mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
                mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            // Key 0 is visible to every row, so the max is finite from the first tile on; the guard
            // keeps a row that has seen nothing at exp2(-inf) = 0 instead of NaN.
            const float base0 = mx0 == -INFINITY ? 0.f : mx0 * scale_log2;
            const float base1 = mx1 == -INFINITY ? 0.f : mx1 * scale_log2;
            const float corr0 = exp2_approx(m0 * scale_log2 - base0), corr1 = exp2_approx(m1 * scale_log2 - base1);
            m0 = mx0;
            m1 = mx1;
            l0 *= corr0;
            l1 *= corr1;
#pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                o[n][0] *= corr0;
                o[n][1] *= corr0;
                o[n][2] *= corr1;
                o[n][3] *= corr1;
            }
#pragma unroll
            for (int n = 0; n < BN / 8; n++) {
                s[n][0] = exp2_approx(fmaf(s[n][0], scale_log2, -base0));
                s[n][1] = exp2_approx(fmaf(s[n][1], scale_log2, -base0));
                s[n][2] = exp2_approx(fmaf(s[n][2], scale_log2, -base1));
                s[n][3] = exp2_approx(fmaf(s[n][3], scale_log2, -base1));
                l0 += s[n][0] + s[n][1];
                l1 += s[n][2] + s[n][3];
            }
            // O += P V: the accumulators of n8 tiles 2 kk and 2 kk + 1 are the A fragment of k step kk.
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                uint32_t a[4];
                a[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
                a[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
                a[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                a[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int dd = 0; dd < HD / 16; dd++) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, vt + v_lane + kk * 16 * LD + dd * 16);
                    mma16816<T>(o[2 * dd], a, b[0], b[1]);
                    mma16816<T>(o[2 * dd + 1], a, b[2], b[3]);
                }
            }
        }
        __syncthreads();   // stage j % 2 is free for tile j + 2
    }
    cp_async_wait<0>();   // nothing is in flight (the last group is empty), but leave none behind
    if (!warp_live) return;

    // O / l through the warp's own Q rows (no other warp reads them), then 16-byte stores.
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = 1.f / l0, inv1 = 1.f / l1;   // l >= 1: the row's max contributes 2^0
    uint32_t *w0 = reinterpret_cast<uint32_t *>(qs + row0 * LD) + q4, *w1 = reinterpret_cast<uint32_t *>(qs + row1 * LD) + q4;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        w0[4 * n] = pack2<T>(o[n][0] * inv0, o[n][1] * inv0);
        w1[4 * n] = pack2<T>(o[n][2] * inv1, o[n][3] * inv1);
    }
    __syncwarp();
    for (int i = lane; i < 16 * CH; i += 32) {
        const int r = warp * 16 + i / CH, c = i % CH;
        if (r >= rows) continue;
        T *dst = out + (int64_t)(sq.x + tile.y + r / group) * out_stride + (int64_t)(kvh * group + r % group) * HD + c * 8;
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(qs + r * LD + c * 8);
    }
}

// Query tokens a tile of `warps` warps holds for this GQA group size (0: the group does not fit a tile).
inline int tile_tokens(int warps, int heads, int kv_heads) { return 16 * warps / (heads / kv_heads); }

// One instantiation's launch (its > 48 KiB shared-memory opt-in made once).
template <typename T, int HD, int W>
cudaError_t launch_flash(cudaStream_t stream, const T *qkv, int64_t stride, int heads, int kv_heads, const T *k_cache,
                         const T *v_cache, int block_size, const int4 *seqs, const int32_t *tables, const int2 *tiles,
                         int tile_count, float scale, T *out, int64_t out_stride) {
    constexpr size_t smem = Shape<HD, W>::kSmemBytes;
    static bool raised = false;
    if (!raised) {
        const cudaError_t e = cudaFuncSetAttribute(flash_prefill_kernel<T, HD, W>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    flash_prefill_kernel<T, HD, W><<<dim3((unsigned)tile_count, (unsigned)kv_heads), dim3(32 * W), smem, stream>>>(
        qkv, stride, heads, kv_heads, k_cache, v_cache, block_size, seqs, tables, tiles, scale * kLog2e, out, out_stride);
    return cudaGetLastError();
}

// Launches the kernel over tile_count tiles x kv_heads. tiles: (sequence, first token) with the
// first tokens tile_tokens(warps, ...) apart (longest contexts first balances the grid best).
// cudaErrorNotSupported: head_dim not 64 or 128, warps not 4 or 8, or a GQA group wider than a tile.
template <typename T>
cudaError_t flash_prefill(cudaStream_t stream, int warps, const T *qkv, int64_t stride, int heads, int kv_heads, int head_dim,
                          const T *k_cache, const T *v_cache, int block_size, const int4 *seqs, const int32_t *tables,
                          const int2 *tiles, int tile_count, float scale, T *out, int64_t out_stride) {
    if ((head_dim != 64 && head_dim != 128) || (warps != 4 && warps != 8) || kv_heads <= 0 || heads % kv_heads ||
        tile_tokens(warps, heads, kv_heads) < 1)
        return cudaErrorNotSupported;
    if (tile_count == 0) return cudaSuccess;
#define FLASH_LAUNCH(HD, W) \
    launch_flash<T, HD, W>(stream, qkv, stride, heads, kv_heads, k_cache, v_cache, block_size, seqs, tables, tiles, tile_count, scale, out, out_stride)
    if (head_dim == 64) return warps == 4 ? FLASH_LAUNCH(64, 4) : FLASH_LAUNCH(64, 8);
    return warps == 4 ? FLASH_LAUNCH(128, 4) : FLASH_LAUNCH(128, 8);
#undef FLASH_LAUNCH
}

}  // namespace flash
