// dev/wo_gemv_rows.cuh: a candidate decode GEMV for weight-only matrices, shaped like gemv.cu's fp16
// GEMV (74% of the copy bandwidth on an H200, where weight_only.cu's wo_gemv_kernel reaches 26-46%):
// one warp per output column (weight row), the lanes striding over the row's 16-byte chunks
// (lane l takes chunks l, l + 32, ...: each warp load covers 512 contiguous bytes), every chunk of
// a lane loaded before any is used, dequantized in fp32 and dotted with each activation row, then
// a butterfly sum across the warp. No tensor cores: at n <= 4 the fp32 work (a bit op, a subtract
// and one FMA per activation row per code) stays under the memory time.
//
// Dequantization: a code u goes into the low bits of 2^23 as a float (0x4B000000 | u is 8388608 + u
// exactly), and subtracting 8388608 + z gives u - z exactly; the chunk's sum of (u - z) * x is
// scaled by its group's s once (a chunk never straddles a group: groups are whole chunks).
// Column of a code in the chunk order (WeightOnly.swift): 8-bit, byte b of word c: 2c + (b & 1) +
// 8 (b >> 1); 4-bit, nibble j of word c: 2c + (j >> 2) + 8 (j & 3).
//
// Not in the library: bench_wo times it beside the product (path "rows") and checks it against the
// CPU reference; the plain and SwiGLU epilogues only, k a multiple of the chunk's columns, no norm.
#pragma once

namespace {

constexpr int kRowsWarps = 8;   // output columns per block, one per warp

template <typename T, int BITS, int MT>
__global__ void __launch_bounds__(kRowsWarps * 32, 2) wo_gemv_rows_kernel(const T *__restrict__ x, const uint8_t *__restrict__ w,
                                                                      WoMatrix q, int n, int64_t k, int64_t cols,
                                                                      T *__restrict__ out) {
    constexpr int CH = BITS == 8 ? 16 : 32;   // columns a chunk
    constexpr int XV = CH / 8;                // activation vectors a chunk
    constexpr int U = 8 / MT;                 // chunks a lane loads at once, per weight row
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t col = (int64_t)blockIdx.x * kRowsWarps + warp;
    if (col >= cols) return;
    const uint8_t *rows[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) rows[t] = w + (col + t * cols) * q.row_bytes;
    const int64_t chunks = k / CH;
    float acc[MT][kWoGemvMaxRows] = {};

    for (int64_t base = lane; base < chunks; base += 32 * U) {
        uint4 wv[MT][U];
        float scale[MT][U], zero[MT][U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t ch = base + 32 * u;
            const bool ok = ch < chunks;
            const int64_t grp = q.chunks_per_group ? ch / q.chunks_per_group : 0;
#pragma unroll
            for (int t = 0; t < MT; t++) {
                wv[t][u] = ok ? load_streaming<uint4>(rows[t] + ch * 16) : make_uint4(0, 0, 0, 0);
                scale[t][u] = ok ? __half2float(__ushort_as_half(load_u16(rows[t] + q.code_bytes + 2 * grp))) : 0.f;
                zero[t][u] = q.has_zeros && ok ? __half2float(__ushort_as_half(load_u16(rows[t] + q.zero_offset + 2 * grp)))
                                               : (float)(1 << (BITS - 1));
            }
        }
        pdl_wait();   // the first round's loads are out before the previous kernel's end; later calls return at once
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t ch = base + 32 * u;
            if (ch >= chunks) break;
#pragma unroll
            for (int r = 0; r < kWoGemvMaxRows; r++) {
                if (r >= n) break;
                float xf[CH];
                const uint4 *xp = reinterpret_cast<const uint4 *>(x + r * k + ch * CH);
#pragma unroll
                for (int v = 0; v < XV; v++) {
                    const uint4 xv = __ldg(xp + v);
                    const uint32_t e[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
                    for (int p = 0; p < 4; p++) {
                        const float2 f = to_float2(as_pair<T>(e[p]));
                        xf[v * 8 + 2 * p] = f.x;
                        xf[v * 8 + 2 * p + 1] = f.y;
                    }
                }
#pragma unroll
                for (int t = 0; t < MT; t++) {
                    const float bias = 8388608.f + zero[t][u];
                    const uint32_t words[4] = {wv[t][u].x, wv[t][u].y, wv[t][u].z, wv[t][u].w};
                    float sum = 0.f;
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        if constexpr (BITS == 8) {
#pragma unroll
                            for (int b = 0; b < 4; b++) {
                                const float d = __int_as_float(0x4B000000 | ((words[c] >> (8 * b)) & 0xFF)) - bias;
                                sum = fmaf(d, xf[2 * c + (b & 1) + 8 * (b >> 1)], sum);
                            }
                        } else {
#pragma unroll
                            for (int j = 0; j < 8; j++) {
                                const float d = __int_as_float(0x4B000000 | ((words[c] >> (4 * j)) & 0xF)) - bias;
                                sum = fmaf(d, xf[2 * c + (j >> 2) + 8 * (j & 3)], sum);
                            }
                        }
                    }
                    acc[t][r] = fmaf(scale[t][u], sum, acc[t][r]);
                }
            }
        }
    }
    pdl_launch_dependents();
#pragma unroll
    for (int r = 0; r < kWoGemvMaxRows; r++) {
        if (r >= n) break;
        float v[MT];
#pragma unroll
        for (int t = 0; t < MT; t++) v[t] = warp_sum(acc[t][r]);
        if (lane == 0) {
            float o = v[0];
            if constexpr (MT == 2) o = o / (1.0f + __expf(-o)) * v[1];
            out[r * cols + col] = from_float<T>(o);
        }
    }
}

// The same warp-per-row stream with packed half math (fp16 activations only): a code pair becomes
// a half2 of (u - z) exactly (prmt / and-or into the mantissa of 1024, then one subtraction: 1024 + z
// is exact for the symmetric z = 8 or 128; with stored zeros, u first, then minus z), multiplied
// with the activation pair and summed in half2 over one 16-byte chunk (8 or 16 products a half),
// then in fp32 times the group's scale. Against the fp32 variant: about 1.5 instead of 4 ALU
// operations an element and no conversion of the activations; the price is the chunk's partial
// sum rounded to fp16 (a relative error near 2^-11 of a partial, well inside the checks' 5e-3).
template <int BITS>
__device__ __forceinline__ void rows_h2_pairs(uint32_t word, bool zeros, uint32_t z2, uint32_t (&p)[BITS == 8 ? 2 : 4]) {
    if constexpr (BITS == 8) {
        const uint32_t lo = __byte_perm(word, 0x64646464u, 0x4140), hi = __byte_perm(word, 0x64646464u, 0x4342);
        if (zeros) {
            p[0] = sub2<half>(sub2<half>(lo, 0x64006400u), z2);
            p[1] = sub2<half>(sub2<half>(hi, 0x64006400u), z2);
        } else {
            p[0] = sub2<half>(lo, 0x64806480u);   // 1024 + 128
            p[1] = sub2<half>(hi, 0x64806480u);
        }
    } else {
        const uint32_t w8 = word >> 8;
        const uint32_t sixteenth = 0x2C002C00u;   // (1/16, 1/16)
        const uint32_t a = (word & 0x000F000Fu) | 0x64006400u, b = (word & 0x00F000F0u) | 0x64006400u;
        const uint32_t c = (w8 & 0x000F000Fu) | 0x64006400u, d = (w8 & 0x00F000F0u) | 0x64006400u;
        if (zeros) {
            const uint32_t minus64 = 0xD400D400u;   // (-64, -64)
            p[0] = sub2<half>(sub2<half>(a, 0x64006400u), z2);
            p[1] = sub2<half>(fma2<half>(b, sixteenth, minus64), z2);
            p[2] = sub2<half>(sub2<half>(c, 0x64006400u), z2);
            p[3] = sub2<half>(fma2<half>(d, sixteenth, minus64), z2);
        } else {
            const uint32_t minus72 = 0xD480D480u;   // -(64 + 8)
            p[0] = sub2<half>(a, 0x64086408u);      // 1024 + 8
            p[1] = fma2<half>(b, sixteenth, minus72);
            p[2] = sub2<half>(c, 0x64086408u);
            p[3] = fma2<half>(d, sixteenth, minus72);
        }
    }
}

template <int BITS, int MT>
__global__ void __launch_bounds__(kRowsWarps * 32, 2) wo_gemv_rows_h2_kernel(const half *__restrict__ x, const uint8_t *__restrict__ w,
                                                                         WoMatrix q, int n, int64_t k, int64_t cols,
                                                                         half *__restrict__ out) {
    constexpr int CH = BITS == 8 ? 16 : 32;   // columns a chunk
    constexpr int XV = CH / 8;                // activation vectors a chunk
    constexpr int P = BITS == 8 ? 2 : 4;      // pairs a code word
    constexpr int U = 8 / MT;                 // chunks a lane loads at once, per weight row
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t col = (int64_t)blockIdx.x * kRowsWarps + warp;
    if (col >= cols) return;
    const uint8_t *rows[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) rows[t] = w + (col + t * cols) * q.row_bytes;
    const int64_t chunks = k / CH;
    const bool zeros = q.has_zeros;
    float acc[MT][kWoGemvMaxRows] = {};

    for (int64_t base = lane; base < chunks; base += 32 * U) {
        uint4 wv[MT][U];
        uint16_t sbits[MT][U], zbits[MT][U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t ch = base + 32 * u;
            const bool ok = ch < chunks;
            const int64_t grp = q.chunks_per_group ? ch / q.chunks_per_group : 0;
#pragma unroll
            for (int t = 0; t < MT; t++) {
                wv[t][u] = ok ? load_streaming<uint4>(rows[t] + ch * 16) : make_uint4(0, 0, 0, 0);
                sbits[t][u] = ok ? load_u16(rows[t] + q.code_bytes + 2 * grp) : 0;
                zbits[t][u] = ok && zeros ? load_u16(rows[t] + q.zero_offset + 2 * grp) : 0;
            }
        }
        pdl_wait();
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t ch = base + 32 * u;
            if (ch >= chunks) break;
            uint32_t pairs[MT][4][P];
#pragma unroll
            for (int t = 0; t < MT; t++) {
                const uint32_t z2 = (uint32_t)zbits[t][u] * 0x10001u;
                const uint32_t words[4] = {wv[t][u].x, wv[t][u].y, wv[t][u].z, wv[t][u].w};
#pragma unroll
                for (int c = 0; c < 4; c++) rows_h2_pairs<BITS>(words[c], zeros, z2, pairs[t][c]);
            }
#pragma unroll
            for (int r = 0; r < kWoGemvMaxRows; r++) {
                if (r >= n) break;
                uint4 xv[XV];
                const uint4 *xp = reinterpret_cast<const uint4 *>(x + r * k + ch * CH);
#pragma unroll
                for (int v = 0; v < XV; v++) xv[v] = __ldg(xp + v);
#pragma unroll
                for (int t = 0; t < MT; t++) {
                    uint32_t h = 0;
#pragma unroll
                    for (int c = 0; c < 4; c++) {
#pragma unroll
                        for (int j = 0; j < P; j++) {
                            const uint32_t xw[4] = {xv[j].x, xv[j].y, xv[j].z, xv[j].w};
                            h = fma2<half>(pairs[t][c][j], xw[c], h);
                        }
                    }
                    const float2 f = __half22float2(as_pair<half>(h));
                    acc[t][r] = fmaf(__half2float(__ushort_as_half(sbits[t][u])), f.x + f.y, acc[t][r]);
                }
            }
        }
    }
    pdl_launch_dependents();
#pragma unroll
    for (int r = 0; r < kWoGemvMaxRows; r++) {
        if (r >= n) break;
        float v[MT];
#pragma unroll
        for (int t = 0; t < MT; t++) v[t] = warp_sum(acc[t][r]);
        if (lane == 0) {
            float o = v[0];
            if constexpr (MT == 2) o = o / (1.0f + __expf(-o)) * v[1];
            out[r * cols + col] = __float2half(o);
        }
    }
}

template <int BITS>
cudaError_t wo_gemv_rows_h2(const petrel_context *ctx, bool swiglu, const half *x, const uint8_t *w, const WoMatrix &q, int64_t n,
                            int64_t k, int64_t cols, half *out) {
    if (n > kWoGemvMaxRows || k % (BITS == 8 ? 16 : 32) != 0) return cudaErrorInvalidValue;
    const dim3 grid((unsigned)((cols + kRowsWarps - 1) / kRowsWarps)), block(kRowsWarps * 32);
    if (swiglu) return launch_dependent(ctx, grid, block, 0, wo_gemv_rows_h2_kernel<BITS, 2>, x, w, q, (int)n, k, cols, out);
    return launch_dependent(ctx, grid, block, 0, wo_gemv_rows_h2_kernel<BITS, 1>, x, w, q, (int)n, k, cols, out);
}

// SwiGLU (gate rows, then up rows) or plain; n <= kWoGemvMaxRows.
template <typename T, int BITS>
cudaError_t wo_gemv_rows(const petrel_context *ctx, bool swiglu, const T *x, const uint8_t *w, const WoMatrix &q, int64_t n,
                         int64_t k, int64_t cols, T *out) {
    if (n > kWoGemvMaxRows || k % (BITS == 8 ? 16 : 32) != 0) return cudaErrorInvalidValue;
    const dim3 grid((unsigned)((cols + kRowsWarps - 1) / kRowsWarps)), block(kRowsWarps * 32);
    if (swiglu)
        return launch_dependent(ctx, grid, block, 0, wo_gemv_rows_kernel<T, BITS, 2>, x, w, q, (int)n, k, cols, out);
    return launch_dependent(ctx, grid, block, 0, wo_gemv_rows_kernel<T, BITS, 1>, x, w, q, (int)n, k, cols, out);
}

}  // namespace
