// weight_only.cu: matmuls whose weights are weight-only quantized matrices (W8A16 / W4A16; the
// layout: petrel_wo_desc, defined by Sources/Compute/WeightOnly.swift), activations of the
// context's type (fp16 or bf16), fp32 sums. Three paths, by the number of activation rows n:
//   n <= kWoGemvMaxRows       wo_gemv_kernel: the decode GEMV, a stream over the codes
//   n < kWoCublasMinRows      wo_gemm_kernel: tiles through shared memory, split-K over a cluster
//   larger n (prefill)        dequantize into a scratch of the context's type, then the fp16 path
// with the fp16 path's prologue (RMSNorm) and epilogues (+ bias, SwiGLU, + the output's old value).
//
// Fragments. Both kernels run mma.m16n8k16 with the weights as A (16 output features x 16
// columns) and the activations as B. Lane (g = lane / 4, c = lane % 4) of a warp holds A's columns
// 2c, 2c+1, 2c+8, 2c+9 of rows g and g + 8: in the chunk order that is 32-bit word c of an 8-bit
// chunk (16 columns), and one 4-bit word (32 columns) holds it for two k16 steps. The kernels
// hand a lane whole 16-byte chunks instead, chunk c of every four, and step through their four
// words: the mma's sum over k does not care which columns sit in which step, as long as A and B
// agree, so B (the activations) is read the same way, chunk c for the lanes with that c: the
// lane's 8 or 4 activation vectors of 8 elements give b0 / b1 by word.
//
// Dequantization in registers, pairs at a time: a code goes into the mantissa of a magic number,
// 1024 + u in fp16 (0x6400 | u; prmt for bytes, and-or for nibbles: (w >> 4j) & 0x000F000F | magic
// gives the pair of columns (2c + 8j, 2c + 8j + 1)) or 128 + u in bf16 (4 bits; 8-bit codes go
// through fp32, 2^23 + u, since bf16 has too few mantissa bits); minus the magic is u, exactly;
// then w = u * s + (-z * s) in one fused multiply-add of the element type. s and -z * s are
// themselves held in it: in fp16 s is exact (stored as fp16) and only -z * s is rounded; in bf16
// both are, so a bf16 4-bit weight may sit a unit or two of bf16 from (u - z) * s rounded once.
#include <cooperative_groups.h>

#include "internal.h"

namespace cg = cooperative_groups;

namespace {

// One matrix's layout, for the kernels (from petrel_wo_desc).
struct WoMatrix {
    int64_t row_bytes;
    int64_t code_bytes;    // k * bits / 8: where the scales start in a row
    int64_t zero_offset;   // where the zeros start (code_bytes + 2 G)
    int32_t chunks_per_group;   // 0: one group per row
    int32_t has_zeros;
};

// ---- element-type helpers on raw 32-bit pairs

__device__ __forceinline__ uint32_t u32(half2 v) { return *reinterpret_cast<uint32_t *>(&v); }
__device__ __forceinline__ uint32_t u32(__nv_bfloat162 v) { return *reinterpret_cast<uint32_t *>(&v); }
template <typename T> __device__ __forceinline__ pair_t<T> as_pair(uint32_t v) { return *reinterpret_cast<pair_t<T> *>(&v); }

template <typename T> __device__ __forceinline__ uint32_t fma2(uint32_t a, uint32_t b, uint32_t c) {
    return u32(__hfma2(as_pair<T>(a), as_pair<T>(b), as_pair<T>(c)));
}
template <typename T> __device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b) {
    return u32(__hsub2(as_pair<T>(a), as_pair<T>(b)));
}

// A group's scale s and offset -z s, as pairs of T (and floats, for the fp32 route of 8-bit bf16).
struct WoScale {
    uint32_t s2, m2;
    float s, m;
};

template <typename T, int BITS>
__device__ __forceinline__ WoScale wo_scale(uint16_t s_bits, uint16_t z_bits, bool has_zeros) {
    WoScale r;
    r.s = __half2float(__ushort_as_half(s_bits));
    const float z = has_zeros ? __half2float(__ushort_as_half(z_bits)) : (BITS == 8 ? 128.f : 8.f);
    r.m = -z * r.s;
    r.s2 = u32(splat2<T>(r.s));
    r.m2 = u32(splat2<T>(r.m));
    return r;
}

// The dequantized pairs of one code word. 8 bits: p[0] = columns (2c, 2c+1), p[1] = (2c+8, 2c+9).
// 4 bits: p[j] = columns (2c + 8j, 2c + 8j + 1), j < 4.
template <typename T, int BITS> struct Dequant;

template <> struct Dequant<half, 8> {
    static __device__ __forceinline__ void run(uint32_t w, const WoScale &q, uint32_t (&p)[2]) {
        const uint32_t lo = __byte_perm(w, 0x64646464u, 0x4140), hi = __byte_perm(w, 0x64646464u, 0x4342);
        p[0] = fma2<half>(sub2<half>(lo, 0x64006400u), q.s2, q.m2);
        p[1] = fma2<half>(sub2<half>(hi, 0x64006400u), q.s2, q.m2);
    }
};

template <> struct Dequant<half, 4> {
    // The high nibble of each byte is or-ed in as 1024 + 16 u and scaled by 1/16 (exact), which
    // spares three of the four shifts.
    static __device__ __forceinline__ void run(uint32_t w, const WoScale &q, uint32_t (&p)[4]) {
        const uint32_t w8 = w >> 8;
        const uint32_t sixteenth = 0x2C002C00u, minus64 = 0xD400D400u;   // (1/16, 1/16), (-64, -64)
        p[0] = fma2<half>(sub2<half>((w & 0x000F000Fu) | 0x64006400u, 0x64006400u), q.s2, q.m2);
        p[1] = fma2<half>(fma2<half>((w & 0x00F000F0u) | 0x64006400u, sixteenth, minus64), q.s2, q.m2);
        p[2] = fma2<half>(sub2<half>((w8 & 0x000F000Fu) | 0x64006400u, 0x64006400u), q.s2, q.m2);
        p[3] = fma2<half>(fma2<half>((w8 & 0x00F000F0u) | 0x64006400u, sixteenth, minus64), q.s2, q.m2);
    }
};

template <> struct Dequant<__nv_bfloat16, 4> {
    static __device__ __forceinline__ void run(uint32_t w, const WoScale &q, uint32_t (&p)[4]) {
#pragma unroll
        for (int j = 0; j < 4; j++)   // 128 + u (0x4300 | u), minus 128
            p[j] = fma2<__nv_bfloat16>(sub2<__nv_bfloat16>(((w >> (4 * j)) & 0x000F000Fu) | 0x43004300u, 0x43004300u), q.s2, q.m2);
    }
};

template <> struct Dequant<__nv_bfloat16, 8> {
    // 128 + u is not exact in bf16 past u = 127: the bytes become fp32 2^23 + u (0x4B0000uu) instead.
    static __device__ __forceinline__ void run(uint32_t w, const WoScale &q, uint32_t (&p)[2]) {
        float v[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
            v[i] = fmaf(__uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440 | i)) - 8388608.f, q.s, q.m);
        p[0] = u32(__floats2bfloat162_rn(v[0], v[1]));
        p[1] = u32(__floats2bfloat162_rn(v[2], v[3]));
    }
};

// d += A (16 x 16) . B (16 x 8), fp32 accumulation.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    if constexpr (std::is_same<T, half>::value)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                     "{%0, %1, %2, %3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                     "{%0, %1, %2, %3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The mmas of one 16-byte chunk of codes (rows g and g + 8: wg, wh) against the lane's activation
// vectors of the same chunk (xv: BITS == 8: 2, else 4), dequantized with the rows' scales.
template <typename T, int BITS>
__device__ __forceinline__ void mma_chunk(float (&d)[4], const uint4 &wg, const uint4 &wh, const WoScale &sg,
                                          const WoScale &sh, const uint4 *xv) {
    const uint32_t g4[4] = {wg.x, wg.y, wg.z, wg.w}, h4[4] = {wh.x, wh.y, wh.z, wh.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t x0[4] = {xv[0].x, xv[0].y, xv[0].z, xv[0].w}, x1[4] = {xv[1].x, xv[1].y, xv[1].z, xv[1].w};
        if constexpr (BITS == 8) {
            uint32_t pg[2], ph[2];
            Dequant<T, 8>::run(g4[i], sg, pg);
            Dequant<T, 8>::run(h4[i], sh, ph);
            mma16816<T>(d, pg[0], ph[0], pg[1], ph[1], x0[i], x1[i]);
        } else {
            const uint32_t x2[4] = {xv[2].x, xv[2].y, xv[2].z, xv[2].w}, x3[4] = {xv[3].x, xv[3].y, xv[3].z, xv[3].w};
            uint32_t pg[4], ph[4];
            Dequant<T, 4>::run(g4[i], sg, pg);
            Dequant<T, 4>::run(h4[i], sh, ph);
            mma16816<T>(d, pg[0], ph[0], pg[1], ph[1], x0[i], x1[i]);
            mma16816<T>(d, pg[2], ph[2], pg[3], ph[3], x2[i], x3[i]);
        }
    }
}

__device__ __forceinline__ uint16_t load_u16(const uint8_t *p) { return __ldg(reinterpret_cast<const unsigned short *>(p)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out[tok][col] from the fp32 product v (SwiGLU: v = the gate's product, up = the up row's).
template <typename T, int MODE>
__device__ __forceinline__ void store_output(T *out, int64_t index, float v, float up, const T *bias, int64_t col) {
    if (MODE == kGemvBias && bias) v += to_float(bias[col]);
    if (MODE == kGemvSwiGLU) v = v / (1.0f + __expf(-v)) * up;
    if (MODE == kGemvAdd) v += to_float(out[index]);
    out[index] = from_float<T>(v);
}

// ---- the decode GEMV: n <= kWoGemvMaxRows activation rows

constexpr int kWoGemvWarps = 8;   // K slices of a block, one warp each

// out (n, cols) = x (n, k) . w^T with the epilogue MODE (kGemvBias takes a NULL bias as none;
// SwiGLU: w has 2 cols rows, gate then up). A block owns 16 output columns (16 weight rows, and
// their 16 up rows for SwiGLU); its warps each sum one contiguous slice of whole rounds of four
// chunks, streaming the codes with 16-byte loads that bypass L1 (U rounds in flight, the scales
// beside them through L1), and meet in shared memory in slice order. Each (row, column) sums in
// the same order whatever n is: the mma's columns are independent, so a row's result does not
// depend on the others. NORM: every block first normalises the n rows into shared memory, like
// gemv.cu's kernel (x * rsqrt(mean(x^2) + eps) * norm_w, rounded to T; n x k x 2 bytes).
template <typename T, int BITS, int MODE, bool NORM, int W = kWoGemvWarps, int UR = 0, bool PIPE = false>
__global__ void __launch_bounds__(W * 32) wo_gemv_kernel(const T *__restrict__ x, const uint8_t *__restrict__ w,
                                                                   WoMatrix q, const T *__restrict__ bias, int n, int64_t k,
                                                                   int64_t cols, T *__restrict__ out,
                                                                   const T *__restrict__ norm_w, float eps) {
    constexpr int MT = MODE == kGemvSwiGLU ? 2 : 1;   // 16-row tiles a warp multiplies (gate, up)
    constexpr int CH = BITS == 8 ? 16 : 32;           // columns a chunk
    constexpr int XV = CH / 8;                        // activation vectors a chunk
    constexpr int U = (UR ? UR : 4) / MT;             // rounds of code loads in flight
    __shared__ float partial[W][MT][16][8];
    __shared__ float squares[W][kWoGemvMaxRows];
    extern __shared__ uint4 normed[];   // NORM: n x k / 8 vectors
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, c = lane % 4;
    const int64_t col0 = (int64_t)blockIdx.x * 16;
    const uint8_t *rows[MT][2];
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t r = col0 + g + 8 * h;
            rows[t][h] = w + ((r < cols ? r : cols - 1) + t * cols) * q.row_bytes;   // rows past the end: results dropped
        }
    const int64_t chunks = k / CH;
    const int64_t per = (chunks + 4 * W - 1) / (4 * W) * 4;   // whole rounds a slice
    const int64_t begin = warp * per, end = begin + per < chunks ? begin + per : chunks;

    // PIPE: two sets of registers, the next U rounds asked for before the current ones are used.
    uint4 wv[U][MT][2], wv2[PIPE ? U : 1][MT][2];
    uint32_t sz[U][MT][2], sz2[PIPE ? U : 1][MT][2];   // scale bits | zero bits << 16
    auto load_into = [&](auto &wv, auto &sz, int64_t base) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t ch = base + 4 * u + c;
            const bool ok = ch < end;
            const int64_t grp = q.chunks_per_group ? ch / q.chunks_per_group : 0;
#pragma unroll
            for (int t = 0; t < MT; t++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    wv[u][t][h] = ok ? load_streaming<uint4>(rows[t][h] + ch * 16) : make_uint4(0, 0, 0, 0);
                    const uint32_t s = ok ? load_u16(rows[t][h] + q.code_bytes + 2 * grp) : 0;
                    const uint32_t z = ok && q.has_zeros ? load_u16(rows[t][h] + q.zero_offset + 2 * grp) : 0;
                    sz[u][t][h] = s | z << 16;
                }
        }
    };
    auto load = [&](int64_t base) { load_into(wv, sz, base); };
    // Launched as a programmatic dependent: the codes are not written by any kernel, so the first
    // round's loads go out while the previous kernel finishes; x and out only after pdl_wait().
    load(begin);
    pdl_wait();
    pdl_launch_dependents();

    const uint4 *xs = reinterpret_cast<const uint4 *>(x);
    const int64_t row_vectors = k / 8;
    if constexpr (NORM) {
        // Sums of squares per row: thread t takes vectors t, t + 256, ...; then the warps' sums
        // in warp order: the same order whatever n is.
        constexpr int kThreads = W * 32;
        for (int r = 0; r < n; r++) {
            float ss = 0.f;
            for (int64_t i = threadIdx.x; i < row_vectors; i += kThreads) {
                const uint4 v = __ldg(xs + r * row_vectors + i);
                const uint32_t e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float2 f = to_float2(as_pair<T>(e[j]));
                    ss += f.x * f.x + f.y * f.y;
                }
            }
            ss = warp_sum(ss);
            if (lane == 0) squares[warp][r] = ss;
        }
        __syncthreads();
        for (int r = 0; r < n; r++) {
            float total = 0.f;
#pragma unroll
            for (int i = 0; i < W; i++) total += squares[i][r];
            const float scale = rsqrtf(total / (float)k + eps);
            for (int64_t i = threadIdx.x; i < row_vectors; i += kThreads) {
                const uint4 v = __ldg(xs + r * row_vectors + i), gw = __ldg(reinterpret_cast<const uint4 *>(norm_w) + i);
                const uint32_t e[4] = {v.x, v.y, v.z, v.w}, ge[4] = {gw.x, gw.y, gw.z, gw.w};
                uint32_t o[4];
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const float2 a = to_float2(as_pair<T>(e[j])), b = to_float2(as_pair<T>(ge[j]));
                    o[j] = u32(from_float2<T>(a.x * scale * b.x, a.y * scale * b.y));
                }
                normed[r * row_vectors + i] = make_uint4(o[0], o[1], o[2], o[3]);
            }
        }
        __syncthreads();
        xs = normed;
    }

    float d[MT][4] = {};
    auto compute = [&](const auto &wv, const auto &sz, int64_t base) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t ch = base + 4 * u + c;
            uint4 xv[XV];
            const bool ok = ch < end && g < n;   // lane g supplies activation row g (B's column g)
#pragma unroll
            for (int j = 0; j < XV; j++) {
                const uint4 *p = xs + g * row_vectors + ch * XV + j;
                xv[j] = ok ? (NORM ? *p : __ldg(p)) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int t = 0; t < MT; t++) {
                const WoScale sg = wo_scale<T, BITS>(sz[u][t][0] & 0xFFFF, sz[u][t][0] >> 16, q.has_zeros);
                const WoScale sh = wo_scale<T, BITS>(sz[u][t][1] & 0xFFFF, sz[u][t][1] >> 16, q.has_zeros);
                mma_chunk<T, BITS>(d[t], wv[u][t][0], wv[u][t][1], sg, sh, xv);
            }
        }
    };
    if constexpr (PIPE) {
        for (int64_t base = begin; base < end; base += 8 * U) {
            if (base + 4 * U < end) load_into(wv2, sz2, base + 4 * U);
            compute(wv, sz, base);
            if (base + 4 * U >= end) break;
            if (base + 8 * U < end) load(base + 8 * U);
            compute(wv2, sz2, base + 4 * U);
        }
    } else {
        for (int64_t base = begin; base < end; base += 4 * U) {
            compute(wv, sz, base);
            if (base + 4 * U < end) load(base + 4 * U);
        }
    }

    // D: lane (g, c) holds rows g (d[0], d[1]) and g + 8 (d[2], d[3]) of activation rows 2c, 2c + 1.
#pragma unroll
    for (int t = 0; t < MT; t++) {
        partial[warp][t][g][2 * c] = d[t][0];
        partial[warp][t][g][2 * c + 1] = d[t][1];
        partial[warp][t][g + 8][2 * c] = d[t][2];
        partial[warp][t][g + 8][2 * c + 1] = d[t][3];
    }
    __syncthreads();
    if (threadIdx.x >= 16 * n) return;
    const int r = threadIdx.x % 16, tok = threadIdx.x / 16;
    const int64_t col = col0 + r;
    if (col >= cols) return;
    float v[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) {
        v[t] = 0.f;
#pragma unroll
        for (int i = 0; i < W; i++) v[t] += partial[i][t][r][tok];
    }
    store_output<T, MODE>(out, tok * cols + col, v[0], v[MT - 1], bias, col);
}

// ---- the tiled GEMM: kWoGemvMaxRows < n < kWoCublasMinRows

constexpr int kWoGemmWarps = 8;                  // each one 16-row tile of the block's 128 rows
constexpr int kWoGemmRows = 16 * kWoGemmWarps;   // weight rows a block (SwiGLU: 64 gate, 64 up)
constexpr int kWoGemmTokens = 64;                // activation rows a block: 8 n8 tiles a warp
constexpr int kWoStages = 3;                     // cp.async pipeline depth
constexpr int kWoMaxSplit = 8;                   // K splits, one block each of a cluster

// Shared memory of one pipeline stage. A k-tile is four chunks of every row (64 or 128 columns):
// codes: 128 rows x 64 bytes (a lane's 16-byte chunk: rows g and g + 8 of a quarter-warp fall in
// distinct banks); meta: per row, two 16-byte windows of scales and two of zeros around the tile's
// groups (wherever they start, two aligned windows hold the at most five groups of a tile);
// activations: 64 rows of the tile's columns, each padded by 16 bytes (8 bits) or 32 bytes with
// the 16-byte units of a chunk's second half-row swapped in pairs (4 bits), so that a
// quarter-warp's 16-byte reads hit distinct banks.
template <int BITS> struct WoTile {
    static constexpr int kColumns = BITS == 8 ? 64 : 128;
    static constexpr int kXStride = BITS == 8 ? 144 : 288;
    static constexpr int kCodeBytes = kWoGemmRows * 64;
    static constexpr int kMetaBytes = kWoGemmRows * 64;
    static constexpr int kXBytes = kWoGemmTokens * kXStride;
    static constexpr int kStageBytes = kCodeBytes + kMetaBytes + kXBytes;
    static constexpr int kOutStride = kWoGemmRows + 4;   // fp32 staging of the block's results
    static constexpr int kBytes = kStageBytes * kWoStages > kWoGemmTokens * kOutStride * 4 ? kStageBytes * kWoStages
                                                                                            : kWoGemmTokens * kOutStride * 4;
    // Byte offset in a row of activations of 16-byte unit u (u = 4 c + j of chunk c, 4 bits).
    static __device__ __forceinline__ int x_unit(int u) { return BITS == 8 ? 16 * u : 16 * (u ^ ((u >> 3) & 1)); }
};

__device__ __forceinline__ void cp_async16(void *smem, const void *global, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// out (n, cols) = x (n, k) . w^T with the epilogue MODE, blocks of 128 weight rows x 64 activation
// rows, the k-tiles split over the blockIdx.z of a cluster of gridDim.z blocks (1 to kWoMaxSplit):
// each block stages its fp32 sums in shared memory, and after a cluster barrier block z adds up
// its share of the outputs over the blocks in order (distributed shared memory), so the sum is
// the same whatever the cluster's timing. SwiGLU: a block's warps 0-3 take gate rows, 4-7 the
// matching up rows, so a block makes 64 outputs.
template <typename T, int BITS, int MODE>
__global__ void __launch_bounds__(kWoGemmWarps * 32) wo_gemm_kernel(const T *__restrict__ x, const uint8_t *__restrict__ w,
                                                                   WoMatrix q, const T *__restrict__ bias, int64_t n, int64_t k,
                                                                   int64_t cols, T *__restrict__ out, int64_t group_size) {
    using Tile = WoTile<BITS>;
    constexpr int CH = BITS == 8 ? 16 : 32, XV = CH / 8;
    constexpr bool SWIGLU = MODE == kGemvSwiGLU;
    constexpr int kOutputs = SWIGLU ? kWoGemmRows / 2 : kWoGemmRows;   // output columns a block
    extern __shared__ __align__(16) unsigned char smem[];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, c = lane % 4;
    const int64_t out0 = (int64_t)blockIdx.x * kOutputs, n0 = (int64_t)blockIdx.y * kWoGemmTokens;
    const int nt = (int)((n - n0 + 7) / 8 < 8 ? (n - n0 + 7) / 8 : 8);   // active n8 tiles
    const int64_t chunks = k / CH, ktiles = (chunks + 3) / 4;
    const int64_t per_split = (ktiles + gridDim.z - 1) / gridDim.z;
    const int64_t kt0 = blockIdx.z * per_split, kt1 = kt0 + per_split < ktiles ? kt0 + per_split : ktiles;

    // Weight row of tile row rho (0..127), or -1 past the matrix.
    auto weight_row = [&](int rho) -> int64_t {
        if (SWIGLU) {
            const int64_t f = out0 + (rho & 63);
            return f < cols ? f + (rho >= 64 ? cols : 0) : -1;
        }
        const int64_t r = out0 + rho;
        return r < cols ? r : -1;
    };
    auto group_of = [&](int64_t column) { return group_size ? column / group_size : 0; };
    // The first scale window of k-tile kt in a row, as a byte offset (code_bytes is a multiple of 16).
    auto scale_window = [&](int64_t kt) { return (q.code_bytes + 2 * group_of(kt * Tile::kColumns)) & ~(int64_t)15; };
    auto zero_window = [&](int64_t kt) { return (q.zero_offset + 2 * group_of(kt * Tile::kColumns)) & ~(int64_t)15; };

    auto stage_ptr = [&](int s) { return smem + s * Tile::kStageBytes; };
    // Codes and meta of k-tile kt into stage s: 512 code units and 512 meta windows, two each a thread.
    auto load_weights = [&](int s, int64_t kt) {
        unsigned char *codes = stage_ptr(s), *meta = codes + Tile::kCodeBytes;
        const int64_t last = group_of((kt + 1) * Tile::kColumns < k ? (kt + 1) * Tile::kColumns - 1 : k - 1);
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int unit = threadIdx.x + i * kWoGemmWarps * 32, rho = unit / 4, part = unit % 4;
            const int64_t r = weight_row(rho);
            const uint8_t *row = w + (r < 0 ? 0 : r) * q.row_bytes;
            const int64_t ch = kt * 4 + part;
            const bool code_ok = r >= 0 && ch < chunks;   // else zeros (and no address past the matrix)
            cp_async16(codes + rho * 64 + part * 16, code_ok ? row + ch * 16 : w, code_ok);
            // Window `part`: scales 0 and 1, zeros 2 and 3; a second window only when the tile's last
            // group reaches it (it could lie past the row otherwise).
            const bool zeros = part >= 2;
            const int64_t start = (zeros ? zero_window(kt) : scale_window(kt)) + 16 * (part & 1);
            const int64_t need_end = (zeros ? q.zero_offset : q.code_bytes) + 2 * last + 2;
            const bool meta_ok = r >= 0 && start < need_end && (!zeros || q.has_zeros);
            cp_async16(meta + rho * 64 + part * 16, meta_ok ? row + start : w, meta_ok);
        }
    };
    // Activations of k-tile kt into stage s: rows n0 .. n0 + 8 nt, zeros past n and past k.
    auto load_x = [&](int s, int64_t kt) {
        unsigned char *xs = stage_ptr(s) + Tile::kCodeBytes + Tile::kMetaBytes;
        constexpr int kUnits = Tile::kColumns / 8;   // 16-byte units a row
        for (int unit = threadIdx.x; unit < 8 * nt * kUnits; unit += kWoGemmWarps * 32) {
            const int tok = unit / kUnits, u = unit % kUnits;
            const int64_t col = kt * Tile::kColumns + 8 * u;
            const bool ok = n0 + tok < n && col < k;
            cp_async16(xs + tok * Tile::kXStride + Tile::x_unit(u), ok ? x + (n0 + tok) * k + col : x, ok);
        }
    };

    // The weights are constant: their first stages are asked for before the programmatic wait.
    for (int s = 0; s < kWoStages - 1; s++)
        if (kt0 + s < kt1) load_weights(s, kt0 + s);
    pdl_wait();
    pdl_launch_dependents();
    for (int s = 0; s < kWoStages - 1; s++) {
        if (kt0 + s < kt1) load_x(s, kt0 + s);
        cp_async_commit();
    }

    float d[8][4] = {};
    const int rho_g = 16 * warp + g;   // the lane's tile rows: rho_g and rho_g + 8
    for (int64_t kt = kt0; kt < kt1; kt++) {
        cp_async_wait<kWoStages - 2>();
        __syncthreads();
        const int64_t next = kt + kWoStages - 1;
        if (next < kt1) {
            load_weights((int)((next - kt0) % kWoStages), next);
            load_x((int)((next - kt0) % kWoStages), next);
        }
        cp_async_commit();

        const unsigned char *codes = stage_ptr((int)((kt - kt0) % kWoStages)), *meta = codes + Tile::kCodeBytes,
                            *xs = meta + Tile::kMetaBytes;
        const int64_t ch = kt * 4 + c;
        const uint4 wg = *reinterpret_cast<const uint4 *>(codes + rho_g * 64 + c * 16);
        const uint4 wh = *reinterpret_cast<const uint4 *>(codes + (rho_g + 8) * 64 + c * 16);
        WoScale sg = {}, sh = {};
        if (ch < chunks) {   // else the codes are zeros and so are s and -z s: A stays finite (zero)
            const int64_t grp = group_of(ch * CH);
            const int es = (int)((q.code_bytes + 2 * grp - scale_window(kt)) / 2);
            const int ez = (int)((q.zero_offset + 2 * grp - zero_window(kt)) / 2);
            const uint16_t *mg = reinterpret_cast<const uint16_t *>(meta + rho_g * 64);
            const uint16_t *mh = reinterpret_cast<const uint16_t *>(meta + (rho_g + 8) * 64);
            sg = wo_scale<T, BITS>(mg[es], mg[16 + ez], q.has_zeros);
            sh = wo_scale<T, BITS>(mh[es], mh[16 + ez], q.has_zeros);
        }
#pragma unroll
        for (int t = 0; t < 8; t++) {
            if (t >= nt) break;
            uint4 xv[XV];
            const unsigned char *xr = xs + (8 * t + g) * Tile::kXStride;
#pragma unroll
            for (int j = 0; j < XV; j++) xv[j] = *reinterpret_cast<const uint4 *>(xr + Tile::x_unit(XV * c + j));
            mma_chunk<T, BITS>(d[t], wg, wh, sg, sh, xv);
        }
    }
    cp_async_wait<0>();
    __syncthreads();

    // The block's sums, fp32, [activation row][tile row], then the cluster's blocks added in order.
    float *staged = reinterpret_cast<float *>(smem);
#pragma unroll
    for (int t = 0; t < 8; t++) {
        if (t >= nt) break;
        const int tok = 8 * t + 2 * c;
        staged[tok * Tile::kOutStride + rho_g] = d[t][0];
        staged[(tok + 1) * Tile::kOutStride + rho_g] = d[t][1];
        staged[tok * Tile::kOutStride + rho_g + 8] = d[t][2];
        staged[(tok + 1) * Tile::kOutStride + rho_g + 8] = d[t][3];
    }
    cg::cluster_group cluster = cg::this_cluster();
    const unsigned split = gridDim.z, rank = blockIdx.z;
    if (split > 1) cluster.sync(); else __syncthreads();
    const int outputs = 8 * nt * kOutputs;
    const int share = (outputs + split - 1) / split, first = rank * share, last = first + share < outputs ? first + share : outputs;
    for (int i = first + threadIdx.x; i < last; i += kWoGemmWarps * 32) {
        const int tok = i / kOutputs, o = i % kOutputs;
        const int64_t col = out0 + o;
        if (n0 + tok >= n || col >= cols) continue;
        float v = 0.f, up = 0.f;
        for (unsigned b = 0; b < split; b++) {
            const float *src = split > 1 ? cluster.map_shared_rank(staged, b) : staged;
            v += src[tok * Tile::kOutStride + o];
            if (SWIGLU) up += src[tok * Tile::kOutStride + 64 + o];
        }
        store_output<T, MODE>(out, (n0 + tok) * cols + col, v, up, bias, col);
    }
    if (split > 1) cluster.sync();   // no block leaves while another reads its shared memory
}

// ---- large n: the weights dequantized into a scratch of the context's type for cuBLAS

// One thread a 16-byte chunk of codes: its 16 or 32 values, in column order, as the mma kernels
// compute them (the same Dequant).
template <typename T, int BITS>
__global__ void wo_dequant_kernel(const uint8_t *__restrict__ w, WoMatrix q, int64_t rows, int64_t k, T *__restrict__ dst) {
    constexpr int CH = BITS == 8 ? 16 : 32;
    const int64_t chunks = k / CH;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * chunks; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / chunks, ch = i % chunks, grp = q.chunks_per_group ? ch / q.chunks_per_group : 0;
        const uint8_t *row = w + r * q.row_bytes;
        const uint4 v = *reinterpret_cast<const uint4 *>(row + ch * 16);
        const WoScale s = wo_scale<T, BITS>(load_u16(row + q.code_bytes + 2 * grp),
                                            q.has_zeros ? load_u16(row + q.zero_offset + 2 * grp) : 0, q.has_zeros);
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
        uint4 *o = reinterpret_cast<uint4 *>(dst + r * k + ch * CH);
        if constexpr (BITS == 8) {
            uint32_t p[4][2];
#pragma unroll
            for (int c = 0; c < 4; c++) Dequant<T, 8>::run(words[c], s, p[c]);
            o[0] = make_uint4(p[0][0], p[1][0], p[2][0], p[3][0]);   // columns 0-7: word c's first pair is 2c, 2c+1
            o[1] = make_uint4(p[0][1], p[1][1], p[2][1], p[3][1]);   // columns 8-15
        } else {
            uint32_t p[4][4];
#pragma unroll
            for (int c = 0; c < 4; c++) Dequant<T, 4>::run(words[c], s, p[c]);
#pragma unroll
            for (int j = 0; j < 4; j++) o[j] = make_uint4(p[0][j], p[1][j], p[2][j], p[3][j]);   // columns 8j .. 8j + 7
        }
    }
}

// ---- random weight-only matrices (petrel_weights_random_wo)

__device__ __forceinline__ uint64_t splitmix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// One thread a 32-bit word of the matrix: random codes, then scales, zeros, padding.
__global__ void wo_random_kernel(uint32_t *dst, int64_t words, int64_t row_words, WoMatrix q, int64_t groups, int bits,
                                 uint64_t seed, float amplitude) {
    const float maxcode = (float)((1 << bits) - 1);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < words; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t off = 4 * (i % row_words);
        const uint64_t z = splitmix(seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1));
        if (off < q.code_bytes) {
            // Uniform codes have the mean maxcode / 2 = z - 0.5, not z: symmetric matrices would
            // carry a bias of -s / 2 in every weight, which 32 random layers grow until fp16
            // overflows. Code 0 becomes z, so the codes are symmetric about z (mean 0).
            uint32_t v = (uint32_t)z;
            if (!q.has_zeros) {
                const uint32_t mask = bits == 8 ? 0xFFu : 0xFu, mid = bits == 8 ? 0x80u : 0x8u;
                for (int f = 0; f < 32 / bits; f++)
                    if (((v >> (f * bits)) & mask) == 0) v |= mid << (f * bits);
            }
            dst[i] = v;
            continue;
        }
        uint32_t halves = 0;
        for (int h = 0; h < 2; h++) {
            const int64_t e = (off - q.code_bytes) / 2 + h;   // element of the scales, then the zeros
            const float r = (float)((z >> (32 * h + 8)) & 0xFFFFFF) * (1.0f / 16777216.0f);   // [0, 1)
            float v = 0.f;
            if (e < groups) v = amplitude * (1.0f + r) / maxcode;
            else if (q.has_zeros && e < 2 * groups) v = floorf(maxcode * (0.25f + 0.5f * r) + 0.5f);
            halves |= (uint32_t)__half_as_ushort(__float2half(v)) << (16 * h);
        }
        dst[i] = halves;
    }
}

// ---- launches

constexpr int chunk_columns(int bits) { return bits == 8 ? 16 : 32; }

WoMatrix wo_matrix(const petrel_wo_desc &d, int64_t k) {
    const int64_t groups = d.group_size ? (k + d.group_size - 1) / d.group_size : 1;
    WoMatrix q;
    q.code_bytes = k * d.bits / 8;
    q.zero_offset = q.code_bytes + 2 * groups;
    q.row_bytes = d.row_bytes;
    q.chunks_per_group = d.group_size / chunk_columns(d.bits);
    q.has_zeros = d.has_zeros != 0;
    return q;
}

// Why this descriptor cannot describe a matrix of k columns at w, or nullptr.
const char *wo_problem(const petrel_wo_desc &d, int64_t k, const void *w) {
    if (d.bits != 8 && d.bits != 4) return "bits must be 8 or 4";
    const int ch = chunk_columns(d.bits);
    if (k <= 0 || k % ch != 0) return "k must be a multiple of 16 (8 bits) or 32 (4 bits)";
    if (d.group_size < 0 || d.group_size % ch != 0) return "group_size must be 0 or a multiple of 16 (8 bits) or 32 (4 bits)";
    const int64_t groups = d.group_size ? (k + d.group_size - 1) / d.group_size : 1;
    if (d.row_bytes != (k * d.bits / 8 + groups * 2 * (d.has_zeros ? 2 : 1) + 15) / 16 * 16)
        return "row_bytes does not match k, bits, group_size and has_zeros";
    if ((uintptr_t)w & 15) return "the matrix must be 16-byte aligned";
    return nullptr;
}

template <typename T, int BITS, int MODE, bool NORM>
cudaError_t launch_wo_gemv(const petrel_context *ctx, const T *x, const uint8_t *w, const WoMatrix &q, const T *bias, int64_t n,
                           int64_t k, int64_t cols, T *out, const T *norm_w, float eps) {
    auto kernel = wo_gemv_kernel<T, BITS, MODE, NORM>;
    const size_t smem = NORM ? (size_t)(n * k * 2) : 0;
    if (NORM) {
        // Up to kGemvNormSmem of normalised rows on top of the static partial sums (4-8 KiB):
        // past the 48 KiB a block gets without the opt-in.
        static bool configured = false;   // per instantiation
        if (!configured) {
            const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kGemvNormSmem);
            if (e != cudaSuccess) return e;
            configured = true;
        }
    }
    return launch_dependent(ctx, dim3((unsigned)((cols + 15) / 16)), dim3(kWoGemvWarps * 32), smem, kernel, x, w, q, bias,
                            (int)n, k, cols, out, norm_w, eps);
}

// K splits for the GEMM: enough blocks for two a multiprocessor, at most kWoMaxSplit, each split
// at least four k-tiles.
int wo_gemm_split(const petrel_context *ctx, int64_t tiles, int64_t ktiles) {
    int64_t split = (2 * (int64_t)ctx->sm_count + tiles - 1) / tiles;
    if (split > ktiles / 4) split = ktiles / 4;
    if (split > kWoMaxSplit) split = kWoMaxSplit;
    return split < 1 ? 1 : (int)split;
}

template <typename T, int BITS, int MODE>
cudaError_t launch_wo_gemm(const petrel_context *ctx, const T *x, const uint8_t *w, const WoMatrix &q, int64_t group_size,
                           const T *bias, int64_t n, int64_t k, int64_t cols, T *out, int split = 0) {
    using Tile = WoTile<BITS>;
    auto kernel = wo_gemm_kernel<T, BITS, MODE>;
    static bool configured = false;   // per instantiation: the dynamic shared memory past 48 KiB
    if (!configured) {
        const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kBytes);
        if (e != cudaSuccess) return e;
        configured = true;
    }
    const int64_t outputs = MODE == kGemvSwiGLU ? kWoGemmRows / 2 : kWoGemmRows;
    const int64_t tiles = (cols + outputs - 1) / outputs * ((n + kWoGemmTokens - 1) / kWoGemmTokens);
    const int64_t ktiles = (k / chunk_columns(BITS) + 3) / 4;
    if (split <= 0) split = wo_gemm_split(ctx, tiles, ktiles);
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)((cols + outputs - 1) / outputs), (unsigned)((n + kWoGemmTokens - 1) / kWoGemmTokens),
                          (unsigned)split);
    config.blockDim = dim3(kWoGemmWarps * 32);
    config.dynamicSmemBytes = Tile::kBytes;
    config.stream = ctx->stream;
    cudaLaunchAttribute attributes[2];
    attributes[0].id = cudaLaunchAttributeClusterDimension;
    attributes[0].val.clusterDim.x = 1;
    attributes[0].val.clusterDim.y = 1;
    attributes[0].val.clusterDim.z = (unsigned)split;
    attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[1].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attributes;
    config.numAttrs = ctx->pdl ? 2 : 1;
    return cudaLaunchKernelEx(&config, kernel, x, w, q, bias, n, k, cols, out, group_size);
}

template <typename T>
cudaError_t launch_wo_dequant(const petrel_context *ctx, const uint8_t *w, const WoMatrix &q, int bits, int64_t rows, int64_t k,
                              T *dst) {
    const int64_t units = rows * (k / chunk_columns(bits));
    unsigned grid = grid_for(units, 256);
    if (grid > 65536) grid = 65536;
    if (bits == 8) wo_dequant_kernel<T, 8><<<grid, 256, 0, ctx->stream>>>(w, q, rows, k, dst);
    else wo_dequant_kernel<T, 4><<<grid, 256, 0, ctx->stream>>>(w, q, rows, k, dst);
    return cudaGetLastError();
}

template <typename T, int BITS>
cudaError_t wo_gemv_modes(const petrel_context *ctx, int mode, const T *x, const uint8_t *w, const WoMatrix &q, const T *bias,
                          int64_t n, int64_t k, int64_t cols, T *out, const T *norm_w, float eps) {
    if (norm_w) {
        if (mode == kGemvSwiGLU) return launch_wo_gemv<T, BITS, kGemvSwiGLU, true>(ctx, x, w, q, bias, n, k, cols, out, norm_w, eps);
        if (mode == kGemvAdd) return cudaErrorInvalidValue;
        return launch_wo_gemv<T, BITS, kGemvBias, true>(ctx, x, w, q, bias, n, k, cols, out, norm_w, eps);
    }
    if (mode == kGemvSwiGLU) return launch_wo_gemv<T, BITS, kGemvSwiGLU, false>(ctx, x, w, q, bias, n, k, cols, out, norm_w, eps);
    if (mode == kGemvAdd) return launch_wo_gemv<T, BITS, kGemvAdd, false>(ctx, x, w, q, bias, n, k, cols, out, norm_w, eps);
    return launch_wo_gemv<T, BITS, kGemvBias, false>(ctx, x, w, q, bias, n, k, cols, out, norm_w, eps);
}

template <typename T, int BITS>
cudaError_t wo_gemm_modes(const petrel_context *ctx, int mode, const T *x, const uint8_t *w, const WoMatrix &q, int64_t group_size,
                          const T *bias, int64_t n, int64_t k, int64_t cols, T *out, int split = 0) {
    if (mode == kGemvSwiGLU) return launch_wo_gemm<T, BITS, kGemvSwiGLU>(ctx, x, w, q, group_size, bias, n, k, cols, out, split);
    if (mode == kGemvAdd) return launch_wo_gemm<T, BITS, kGemvAdd>(ctx, x, w, q, group_size, bias, n, k, cols, out, split);
    return launch_wo_gemm<T, BITS, kGemvBias>(ctx, x, w, q, group_size, bias, n, k, cols, out, split);
}

// The large-n path: the whole matrix dequantized into ctx->wo_scratch, then the fp16 path's own
// matmul with its epilogue. A step being captured into a graph cannot grow the scratch: the
// capture is abandoned (st.broken) and the step runs again uncaptured, which grows it.
int32_t wo_dequant_matmul(petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w,
                          const petrel_wo_desc &d, const WoMatrix &q, int64_t cols, const void *bias, void *out) {
    const int64_t rows = mode == kGemvSwiGLU ? 2 * cols : cols;
    const size_t bytes = (size_t)(rows * k) * 2;
    StepState &st = ctx->step;
    if (bytes > ctx->wo_scratch_bytes) {
        if (st.active && st.capturing) {
            st.broken = true;
            return PETREL_OK;
        }
        invalidate_graphs(ctx);   // graphs captured before hold the old scratch
        if (ctx->wo_scratch) CUDA_TRY(ctx, cudaFreeAsync(ctx->wo_scratch, ctx->stream));
        ctx->wo_scratch = nullptr;
        ctx->wo_scratch_bytes = 0;
        CUDA_TRY(ctx, cudaMallocAsync(&ctx->wo_scratch, bytes, ctx->stream));
        ctx->wo_scratch_bytes = bytes;
    }
    const cudaError_t e = with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        return launch_wo_dequant<T>(ctx, (const uint8_t *)w, q, d.bits, rows, k, (T *)ctx->wo_scratch);
    });
    CUDA_TRY(ctx, e);
    if (mode == kGemvSwiGLU) return petrel_matmul_swiglu_enqueue(ctx, x, n, k, ctx->wo_scratch, nullptr, cols, out);
    if (mode == kGemvAdd) return petrel_matmul_add_enqueue(ctx, x, n, k, ctx->wo_scratch, nullptr, cols, out);
    return petrel_matmul_enqueue(ctx, x, n, k, ctx->wo_scratch, nullptr, cols, bias, out);
}

}  // namespace

int32_t wo_matmul(petrel_context *ctx, int mode, const void *x, int64_t n, int64_t k, const void *w, const petrel_wo_desc &d,
                  int64_t cols, const void *bias, void *out, const void *norm_w, float eps, void *normed) {
    if (const char *problem = wo_problem(d, k, w))
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "weight-only matmul (%lld x %lld, %d bits, group %d): %s",
                    (long long)(mode == kGemvSwiGLU ? 2 * cols : cols), (long long)k, d.bits, d.group_size, problem);
    if (((uintptr_t)x & 15) || (norm_w && ((uintptr_t)norm_w & 15)))
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "weight-only matmul: activations must be 16-byte aligned");
    const WoMatrix q = wo_matrix(d, k);
    const bool fused_norm = norm_w && n <= kWoGemvMaxRows && (size_t)(n * k * 2) <= kGemvNormSmem;
    if (norm_w && !fused_norm) {   // the norm on its own into `normed`, then the matmul of that
        const int32_t status = petrel_rmsnorm_enqueue(ctx, x, norm_w, n, k, eps, normed);
        if (status != PETREL_OK) return status;
        x = normed;
        norm_w = nullptr;
    }
    if (n >= kWoCublasMinRows) return wo_dequant_matmul(ctx, mode, x, n, k, w, d, q, cols, bias, out);
    const cudaError_t e = with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T *xt = (const T *)x, *bt = (const T *)bias, *gt = (const T *)norm_w;
        const uint8_t *wt = (const uint8_t *)w;
        T *ot = (T *)out;
        if (n <= kWoGemvMaxRows)
            return d.bits == 8 ? wo_gemv_modes<T, 8>(ctx, mode, xt, wt, q, bt, n, k, cols, ot, gt, eps)
                               : wo_gemv_modes<T, 4>(ctx, mode, xt, wt, q, bt, n, k, cols, ot, gt, eps);
        return d.bits == 8 ? wo_gemm_modes<T, 8>(ctx, mode, xt, wt, q, d.group_size, bt, n, k, cols, ot)
                           : wo_gemm_modes<T, 4>(ctx, mode, xt, wt, q, d.group_size, bt, n, k, cols, ot);
    });
    CUDA_TRY(ctx, e);
    return PETREL_OK;
}

extern "C" {

int32_t petrel_buffer_upload(petrel_context *ctx, const void *host, size_t bytes, void *dst_dev) {
    if (bytes == 0) return PETREL_OK;
    CUDA_TRY(ctx, cudaMemcpyAsync(dst_dev, host, bytes, cudaMemcpyHostToDevice, ctx->stream));
    CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));   // the host bytes are only borrowed
    return PETREL_OK;
}

int32_t petrel_weights_random_wo(petrel_context *ctx, void *dst_dev, int64_t rows, int64_t k, const petrel_wo_desc *wo,
                                 uint64_t seed, float amplitude) {
    if (!wo) return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "weights_random_wo: no descriptor");
    if (const char *problem = wo_problem(*wo, k, dst_dev))
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "weights_random_wo: %s", problem);
    if (rows == 0) return PETREL_OK;
    const WoMatrix q = wo_matrix(*wo, k);
    const int64_t groups = wo->group_size ? (k + wo->group_size - 1) / wo->group_size : 1;
    const int64_t words = rows * wo->row_bytes / 4;
    unsigned grid = grid_for(words, 256);
    if (grid > 65536) grid = 65536;
    wo_random_kernel<<<grid, 256, 0, ctx->stream>>>((uint32_t *)dst_dev, words, wo->row_bytes / 4, q, groups, wo->bits, seed,
                                                    amplitude);
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}

}  // extern "C"
