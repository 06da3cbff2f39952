// dev/bench_wo.cu: the weight-only matmuls of weight_only.cu, llm.c's dev/cuda style: every path
// checked against a CPU reference (the matrix's bytes decoded on the host as WeightOnly.swift
// defines them, float32 dot products), then timed beside the fp16 path. Not part of the library.
//
//   bench_wo check   every format (int8 per-channel, g16, g32 + zeros; int4 g32, g64 + zeros,
//                    g128 +- zeros) x epilogue (plain, bias, add, SwiGLU, norm, norm + SwiGLU) x
//                    fp16 / bf16 through the public entry points, odd row counts, k not a multiple
//                    of the group, n from 1 to 600; the GEMV's row-count independence; exits 1 on
//                    any failure (tolerance: max |gpu - cpu| / max |cpu| <= 5e-3, bf16 4e-2)
//   bench_wo profile the bench's launches once each, untimed, for `ncu` (the device run's woprof stage)
//   bench_wo [bench] Llama-2-7B's matrices (qkv, o, gate_up + SwiGLU, down), n = 1 ... 4096, int8
//                    per-channel and int4 g128 beside fp16 (the product's gemv / cuBLAS), and the
//                    variants around the product's cut-overs: the GEMV and the GEMM for n <= 8, the
//                    GEMM with one K split, the GEMM and dequantize + cuBLAS for large n; and
//                    dev/wo_gemv_rows.cuh's warp-per-row GEMV (a candidate, n <= 4).
//
// Timing: CUDA events around 20 back-to-back launches, the median of 30 after 5, the weights rotating over enough
// copies (>= 192 MiB) that none is served from L2. GB/s counts the bytes a matmul must move
// (weights, activations in, outputs out); % is of the device-to-device copy bandwidth measured here
// (bytes read + written). Prints markdown tables.
// Built by `make -C kernels/cuda bench_wo`.
#include "../weight_only.cu"
#include "dev_common.h"
#include "wo_gemv_rows.cuh"
#include "wo_gemm2.cuh"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <thread>

namespace {

bool g_profile = false;      // `bench_wo profile`: every launch of the bench once, untimed (for Nsight Compute)

// weight_only.cu's GEMV with W warps a block and UR rounds of codes in flight (plain or SwiGLU).
template <typename T, int BITS, int W, int UR, bool PIPE = false>
cudaError_t wo_gemv_variant(const petrel_context *ctx, bool swiglu, const T *x, const uint8_t *w, const WoMatrix &q, int64_t n,
                            int64_t k, int64_t cols, T *out) {
    const dim3 grid((unsigned)((cols + 15) / 16)), block(W * 32);
    if (swiglu)
        return launch_dependent(ctx, grid, block, 0, wo_gemv_kernel<T, BITS, kGemvSwiGLU, false, W, UR, PIPE>, x, w, q, (const T *)nullptr,
                                (int)n, k, cols, out, (const T *)nullptr, 0.f);
    return launch_dependent(ctx, grid, block, 0, wo_gemv_kernel<T, BITS, kGemvBias, false, W, UR, PIPE>, x, w, q, (const T *)nullptr, (int)n,
                            k, cols, out, (const T *)nullptr, 0.f);
}

int64_t row_bytes(int bits, int gs, bool zeros, int64_t k) {
    const int64_t groups = gs ? (k + gs - 1) / gs : 1;
    return (k * bits / 8 + groups * 2 * (zeros ? 2 : 1) + 15) / 16 * 16;
}

float half_bits_to_float(uint16_t b) { return __half2float(__ushort_as_half(b)); }
uint16_t float_to_half_bits(float f) { return __half_as_ushort(__float2half(f)); }

// Row r of a weight-only matrix decoded as WeightOnly.swift defines it (WeightOnlyRow.values).
std::vector<float> decode_row(const uint8_t *row, int bits, int gs, bool zeros, int64_t k) {
    static const int eight[16] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};
    static const int four[8] = {0, 8, 16, 24, 1, 9, 17, 25};
    const int chunk = bits == 8 ? 16 : 32;
    int slot[32];   // the code slot of each column of a chunk (a byte, or a nibble of the chunk's 16 bytes)
    if (bits == 8) for (int p = 0; p < 16; p++) slot[eight[p]] = p;
    else for (int c = 0; c < 4; c++) for (int nb = 0; nb < 8; nb++) slot[2 * c + four[nb]] = 8 * c + nb;
    const int64_t groups = gs ? (k + gs - 1) / gs : 1, cb = k * bits / 8;
    std::vector<float> out(k);
    for (int64_t j = 0; j < k; j++) {
        const int64_t base = j / chunk * 16;
        const int s = slot[j % chunk];
        const int u = bits == 8 ? row[base + s] : (row[base + s / 2] >> (4 * (s % 2))) & 15;
        const int64_t g = gs ? j / gs : 0;
        uint16_t sb, zb = 0;
        memcpy(&sb, row + cb + 2 * g, 2);
        if (zeros) memcpy(&zb, row + cb + 2 * (groups + g), 2);
        const float z = zeros ? half_bits_to_float(zb) : (bits == 8 ? 128.f : 8.f);
        out[j] = ((float)u - z) * half_bits_to_float(sb);
    }
    return out;
}

// A random weight-only matrix on the host: random codes, scales in [1, 2] * amplitude / maxcode,
// zeros anywhere in [0, maxcode] with a fraction (GGUF-like; the kernels round -z s once), padding 0.
std::vector<uint8_t> random_matrix(std::mt19937 &rng, int bits, int gs, bool zeros, int64_t rows, int64_t k, float amplitude) {
    const int64_t rb = row_bytes(bits, gs, zeros, k), groups = gs ? (k + gs - 1) / gs : 1, cb = k * bits / 8;
    const float maxcode = (float)((1 << bits) - 1);
    std::uniform_real_distribution<float> uni(0.f, 1.f);
    std::vector<uint8_t> m(rows * rb, 0);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = m.data() + r * rb;
        for (int64_t i = 0; i < cb; i++) row[i] = (uint8_t)(rng() & 0xFF);
        for (int64_t g = 0; g < groups; g++) {
            const uint16_t s = float_to_half_bits(amplitude * (1 + uni(rng)) / maxcode);
            memcpy(row + cb + 2 * g, &s, 2);
            if (zeros) {
                const uint16_t z = float_to_half_bits(maxcode * uni(rng));
                memcpy(row + cb + 2 * (groups + g), &z, 2);
            }
        }
    }
    return m;
}

// The matmul's inputs on the host, and its reference on the CPU for `rows` rows of x.
struct Problem {
    int bits, gs;
    bool zeros;
    int64_t k, cols, wrows;   // wrows: 2 cols for SwiGLU
    int mode;                 // kGemvPlain, kGemvBias, kGemvAdd, kGemvSwiGLU
    bool norm;
};

std::vector<float> reference(const Problem &p, const std::vector<uint8_t> &w, const std::vector<float> &x, int64_t rows,
                             const std::vector<float> &norm, const std::vector<float> &bias, const std::vector<float> &acc,
                             bool bf16) {
    const int64_t rb = row_bytes(p.bits, p.gs, p.zeros, p.k);
    std::vector<float> xs(x.begin(), x.begin() + rows * p.k);
    if (p.norm)
        for (int64_t r = 0; r < rows; r++) {
            double ss = 0;
            for (int64_t i = 0; i < p.k; i++) ss += (double)xs[r * p.k + i] * xs[r * p.k + i];
            const float scale = 1.0f / std::sqrt((float)(ss / p.k) + 1e-5f);
            for (int64_t i = 0; i < p.k; i++) xs[r * p.k + i] = round_to(xs[r * p.k + i] * scale * norm[i], bf16);
        }
    std::vector<float> prod(rows * p.wrows);
    parallel_for(p.wrows, [&](int64_t c) {
        const std::vector<float> wr = decode_row(w.data() + c * rb, p.bits, p.gs, p.zeros, p.k);
        for (int64_t r = 0; r < rows; r++) {
            float a = 0;
            for (int64_t i = 0; i < p.k; i++) a += wr[i] * xs[r * p.k + i];
            prod[r * p.wrows + c] = a;
        }
    });
    std::vector<float> out(rows * p.cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < p.cols; c++) {
            float v = prod[r * p.wrows + c];
            if (p.mode == kGemvSwiGLU) v = v / (1.0f + std::exp(-v)) * prod[r * p.wrows + c + p.cols];
            if (p.mode == kGemvBias) v += bias[c];
            if (p.mode == kGemvAdd) v += acc[r * p.cols + c];
            out[r * p.cols + c] = round_to(v, bf16);
        }
    return out;
}

// One product call through the public entry points.
int32_t run_public(petrel_context *ctx, const Problem &p, const petrel_wo_desc &d, const void *x, int64_t n, const void *w,
                   const void *norm, const void *bias, void *normed, void *out) {
    if (p.norm)
        return p.mode == kGemvSwiGLU ? petrel_rmsnorm_matmul_swiglu_enqueue(ctx, x, norm, 1e-5f, n, p.k, w, &d, p.cols, normed, out)
                                     : petrel_rmsnorm_matmul_enqueue(ctx, x, norm, 1e-5f, n, p.k, w, &d, p.cols,
                                                                     p.mode == kGemvBias ? bias : nullptr, normed, out);
    if (p.mode == kGemvSwiGLU) return petrel_matmul_swiglu_enqueue(ctx, x, n, p.k, w, &d, p.cols, out);
    if (p.mode == kGemvAdd) return petrel_matmul_add_enqueue(ctx, x, n, p.k, w, &d, p.cols, out);
    return petrel_matmul_enqueue(ctx, x, n, p.k, w, &d, p.cols, p.mode == kGemvBias ? bias : nullptr, out);
}

const char *mode_name(const Problem &p) {
    if (p.norm) return p.mode == kGemvSwiGLU ? "norm+swiglu" : "norm";
    return p.mode == kGemvSwiGLU ? "swiglu" : p.mode == kGemvAdd ? "add" : p.mode == kGemvBias ? "bias" : "plain";
}

int check_all() {
    int failures = 0, passed = 0;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    struct Format { int bits, gs; bool zeros; };
    const Format formats[] = {{8, 0, false}, {8, 16, false}, {8, 32, true}, {4, 32, false}, {4, 64, true}, {4, 128, false}, {4, 128, true}};
    struct Shape { int64_t k, cols; };
    const Shape shapes[] = {{576, 1001}, {96, 37}, {4096, 515}, {11008, 129}};
    const int64_t ns[] = {1, 3, 4, 5, 17, 64, 300, 600};
    printf("| dtype | format | k | cols | n | epilogue | max rel error | ok |\n|---|---|---|---|---|---|---|---|\n");
    for (int dt = 0; dt < 2; dt++) {
        const bool bf16 = dt == 1;
        petrel_context *ctx = nullptr;
        char error[512];
        if (petrel_context_create(0, nullptr, &ctx, error, sizeof error) != PETREL_OK) { fprintf(stderr, "%s\n", error); exit(1); }
        check(petrel_context_set_dtype(ctx, bf16 ? PETREL_DTYPE_BF16 : PETREL_DTYPE_F16), ctx, "set dtype");
        const float tol = bf16 ? 4e-2f : 5e-3f;
        int counter = 0;
        for (const Format &f : formats)
            for (const Shape &s : shapes) {
                if (s.k % (f.bits == 8 ? 16 : 32)) continue;
                for (int64_t n : ns) {
                    if (s.k >= 4096 && n != 1 && n != 4 && n != 64 && n != 600) continue;
                    Problem p;
                    p.bits = f.bits, p.gs = f.gs, p.zeros = f.zeros, p.k = s.k, p.cols = s.cols;
                    const int which = counter++ % 6;   // every epilogue across the n's
                    p.mode = which == 0 ? kGemvPlain : which == 1 ? kGemvBias : which == 2 ? kGemvAdd : which == 3 ? kGemvSwiGLU
                                                                                         : which == 4 ? kGemvPlain : kGemvSwiGLU;
                    p.norm = which >= 4;
                    p.wrows = p.mode == kGemvSwiGLU ? 2 * p.cols : p.cols;
                    const std::vector<uint8_t> w = random_matrix(rng, f.bits, f.gs, f.zeros, p.wrows, p.k, 0.05f);
                    std::vector<float> x(n * p.k), norm(p.k), bias(p.cols), acc(n * p.cols);
                    for (auto &v : x) v = round_to(normal(rng), bf16);
                    for (auto &v : norm) v = round_to(1 + 0.2f * normal(rng), bf16);
                    for (auto &v : bias) v = round_to(normal(rng), bf16);
                    for (auto &v : acc) v = round_to(normal(rng), bf16);
                    void *dw = nullptr;
                    check(petrel_buffer_alloc(ctx, w.size(), &dw), ctx, "alloc w");
                    check(petrel_buffer_upload(ctx, w.data(), w.size(), dw), ctx, "upload w");
                    void *dx = device_floats(ctx, x), *dn = device_floats(ctx, norm), *db = device_floats(ctx, bias);
                    void *dout = device_floats(ctx, p.mode == kGemvAdd ? acc : std::vector<float>(n * p.cols, NAN));
                    void *dnormed = device_floats(ctx, std::vector<float>(n * p.k, NAN));
                    const petrel_wo_desc d = {f.bits, f.gs, f.zeros ? 1 : 0, row_bytes(f.bits, f.gs, f.zeros, p.k)};
                    check(run_public(ctx, p, d, dx, n, dw, dn, db, dnormed, dout), ctx, "matmul");
                    const std::vector<float> got = download(ctx, dout, n * p.cols);
                    const float err = rel_error(got, reference(p, w, x, n, norm, bias, acc, bf16));
                    const bool ok = err <= tol;
                    ok ? passed++ : failures++;
                    printf("| %s | int%d g%d%s | %lld | %lld | %lld | %s | %.2e | %s |\n", bf16 ? "bf16" : "fp16", f.bits, f.gs,
                           f.zeros ? " z" : "", (long long)p.k, (long long)p.cols, (long long)n, mode_name(p), err, ok ? "ok" : "FAIL");
                    // The GEMM candidate (dev/wo_gemm2.cuh) on the same inputs, for the epilogues it has.
                    if (!p.norm) {
                        void *dout2 = device_floats(ctx, p.mode == kGemvAdd ? acc : std::vector<float>(n * p.cols, NAN));
                        const WoMatrix q = wo_matrix(d, p.k);
                        const void *bp = p.mode == kGemvBias ? db : nullptr;
                        cudaError_t e;
                        if (bf16)
                            e = f.bits == 8 ? wo_gemm2<__nv_bfloat16, 8>(ctx, p.mode, (const __nv_bfloat16 *)dx, (const uint8_t *)dw, q,
                                                                         (const __nv_bfloat16 *)bp, n, p.k, p.cols, (__nv_bfloat16 *)dout2)
                                            : wo_gemm2<__nv_bfloat16, 4>(ctx, p.mode, (const __nv_bfloat16 *)dx, (const uint8_t *)dw, q,
                                                                         (const __nv_bfloat16 *)bp, n, p.k, p.cols, (__nv_bfloat16 *)dout2);
                        else
                            e = f.bits == 8 ? wo_gemm2<half, 8>(ctx, p.mode, (const half *)dx, (const uint8_t *)dw, q, (const half *)bp, n, p.k,
                                                                p.cols, (half *)dout2)
                                            : wo_gemm2<half, 4>(ctx, p.mode, (const half *)dx, (const uint8_t *)dw, q, (const half *)bp, n, p.k,
                                                                p.cols, (half *)dout2);
                        check_cuda(e, "gemm2");
                        const std::vector<float> got2 = download(ctx, dout2, n * p.cols);
                        const float err2 = rel_error(got2, reference(p, w, x, n, norm, bias, acc, bf16));
                        const bool ok2 = err2 <= tol;
                        ok2 ? passed++ : failures++;
                        printf("| %s | int%d g%d%s | %lld | %lld | %lld | %s, gemm2 (dev candidate) | %.2e | %s |\n", bf16 ? "bf16" : "fp16",
                               f.bits, f.gs, f.zeros ? " z" : "", (long long)p.k, (long long)p.cols, (long long)n, mode_name(p), err2,
                               ok2 ? "ok" : "FAIL");
                        petrel_buffer_free(ctx, dout2);
                    }
                    // The GEMV's promise: row 0 of n rows is, bit for bit, row 0 multiplied alone.
                    if (n > 1 && n <= kWoGemvMaxRows && p.mode != kGemvAdd) {
                        void *one = device_floats(ctx, std::vector<float>(p.cols, NAN));
                        check(run_public(ctx, p, d, dx, 1, dw, dn, db, dnormed, one), ctx, "matmul alone");
                        const std::vector<float> alone = download(ctx, one, p.cols);
                        const bool same = memcmp(alone.data(), got.data(), p.cols * 4) == 0;
                        same ? passed++ : failures++;
                        printf("| %s | int%d g%d%s | %lld | %lld | 1 of %lld | %s, row 0 alone | bit for bit | %s |\n",
                               bf16 ? "bf16" : "fp16", f.bits, f.gs, f.zeros ? " z" : "", (long long)p.k, (long long)p.cols,
                               (long long)n, mode_name(p), same ? "ok" : "FAIL");
                        petrel_buffer_free(ctx, one);
                    }
                    for (void *q : {dw, dx, dn, db, dout, dnormed}) petrel_buffer_free(ctx, q);
                }
            }
        // Random fill: the codes, scales and zeros it writes decode to values within the amplitude.
        for (const Format &f : formats) {
            const int64_t k = 4096, rows = 64, rb = row_bytes(f.bits, f.gs, f.zeros, k);
            const petrel_wo_desc d = {f.bits, f.gs, f.zeros ? 1 : 0, rb};
            void *dw = nullptr;
            check(petrel_buffer_alloc(ctx, rows * rb, &dw), ctx, "alloc");
            check(petrel_weights_random_wo(ctx, dw, rows, k, &d, 5, 0.05f), ctx, "random");
            std::vector<uint8_t> host(rows * rb);
            check_cuda(cudaMemcpy(host.data(), dw, host.size(), cudaMemcpyDeviceToHost), "copy back");
            float lo = 0, hi = 0, sum2 = 0;
            for (int64_t r = 0; r < rows; r++)
                for (float v : decode_row(host.data() + r * rb, f.bits, f.gs, f.zeros, k)) {
                    lo = fminf(lo, v), hi = fmaxf(hi, v), sum2 += v * v;
                }
            const float rms = std::sqrt(sum2 / (rows * k));
            const bool ok = std::isfinite(rms) && lo >= -0.1f && hi <= 0.1f && rms > 0.005f;
            ok ? passed++ : failures++;
            printf("| %s | int%d g%d%s | %lld | %lld | - | random fill: [%.3f, %.3f], rms %.4f | - | %s |\n", bf16 ? "bf16" : "fp16",
                   f.bits, f.gs, f.zeros ? " z" : "", (long long)k, (long long)rows, lo, hi, rms, ok ? "ok" : "FAIL");
            petrel_buffer_free(ctx, dw);
        }
        petrel_context_destroy(ctx);
    }
    printf("\ncheck: %d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}

// ---- the Llama-2-7B timings

struct BenchShape {
    const char *name;
    int64_t k, cols;
    bool swiglu;
};

int bench() {
    petrel_context *ctx = nullptr;
    char error[512];
    if (petrel_context_create(0, nullptr, &ctx, error, sizeof error) != PETREL_OK) { fprintf(stderr, "%s\n", error); return 1; }
    char name[256];
    int64_t total = 0, free_b = 0;
    int32_t sms = 0;
    check(petrel_device_describe(ctx, name, sizeof name, &total, &free_b, &sms), ctx, "describe");
    // Per launch, back to back (dev_common.h); `bench_wo profile`: one launch, untimed.
    auto time_us = [&](const std::function<cudaError_t()> &run, int reps = 30, int batch = kBatch) {
        if (g_profile) {
            check_cuda(run(), "launch");
            check_cuda(cudaStreamSynchronize(ctx->stream), "sync");
            return 1.0;
        }
        return median_launch_us(ctx->stream, [&] { check_cuda(run(), "launch"); }, reps, batch);
    };
    // The copy ceiling: 1 GiB device to device, bytes read + written.
    double copy_gbs = 0;
    {
        void *a, *b;
        const size_t bytes = 1ull << 30;
        check(petrel_buffer_alloc(ctx, bytes, &a), ctx, "alloc");
        check(petrel_buffer_alloc(ctx, bytes, &b), ctx, "alloc");
        check(petrel_buffer_fill(ctx, a, 1, bytes), ctx, "fill");
        const double us = time_us([&] { return cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, ctx->stream); }, 10, 1);
        copy_gbs = 2.0 * bytes / (us * 1e-6) / 1e9;
        petrel_buffer_free(ctx, a);
        petrel_buffer_free(ctx, b);
    }
    printf("device: %s, %d SMs; copy bandwidth %.0f GB/s (read + write)\n\n", name, sms, copy_gbs);
    printf("| matrix | n | weights | path | max rel error | us | GB/s | %% of copy | TFLOP/s | fp16 time / this |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    const BenchShape shapes[] = {{"qkv", 4096, 12288, false}, {"o", 4096, 4096, false}, {"gate_up+swiglu", 4096, 11008, true},
                                 {"down", 11008, 4096, false}};
    const int64_t ns[] = {1, 4, 8, 16, 32, 64, 128, 256, 512, 4096};
    int failures = 0;
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (const BenchShape &s : shapes) {
        const int64_t wrows = s.swiglu ? 2 * s.cols : s.cols;
        const int64_t nmax = 4096;
        std::vector<float> hx(8 * s.k);
        for (auto &v : hx) v = round_to(normal(rng), false);
        void *x = nullptr, *out = nullptr, *normed = nullptr;
        check(petrel_buffer_alloc(ctx, nmax * s.k * 2, &x), ctx, "alloc x");
        check(petrel_weights_random(ctx, x, nmax * s.k, 12, 1.0f), ctx, "random x");
        check(petrel_weights_upload(ctx, PETREL_DTYPE_F32, hx.data(), 8 * s.k, x), ctx, "x rows 0-7");   // the checked rows
        check(petrel_buffer_alloc(ctx, nmax * s.cols * 2, &out), ctx, "alloc out");
        check(petrel_buffer_alloc(ctx, nmax * s.k * 2, &normed), ctx, "alloc normed");
        struct Weights { int bits, gs; std::vector<void *> copies; int64_t bytes; std::vector<float> ref; };
        std::vector<Weights> sets;
        for (int bits : {16, 8, 4}) {
            Weights ws;
            ws.bits = bits;
            ws.gs = bits == 4 ? 128 : 0;
            ws.bytes = bits == 16 ? wrows * s.k * 2 : wrows * row_bytes(bits, ws.gs, false, s.k);
            const int copies = (int)std::min<int64_t>(32, std::max<int64_t>(4, ((int64_t)192 << 20) / ws.bytes + 1));
            for (int c = 0; c < copies; c++) {
                void *p = nullptr;
                check(petrel_buffer_alloc(ctx, ws.bytes, &p), ctx, "alloc w");
                if (bits == 16) {
                    check(petrel_weights_random(ctx, p, wrows * s.k, 21, 0.05f), ctx, "random w");
                } else {
                    const petrel_wo_desc d = {bits, ws.gs, 0, row_bytes(bits, ws.gs, false, s.k)};
                    check(petrel_weights_random_wo(ctx, p, wrows, s.k, &d, 21, 0.05f), ctx, "random wo");
                }
                ws.copies.push_back(p);
            }
            // The reference for activation rows 0-7 (the first copy's weights, decoded on the host).
            Problem p = {bits == 16 ? 8 : bits, ws.gs, false, s.k, s.cols, wrows, s.swiglu ? kGemvSwiGLU : kGemvPlain, false};
            std::vector<uint8_t> hw;
            if (bits == 16) {   // fp16 weights as an "8-bit per-channel" matrix would not do: decode them directly
                std::vector<float> f(wrows * s.k);
                check(petrel_tensor_download(ctx, ws.copies[0], wrows * s.k, f.data()), ctx, "download w");
                std::vector<float> prod(8 * wrows);
                parallel_for(wrows, [&](int64_t c) {
                    for (int r = 0; r < 8; r++) {
                        float a = 0;
                        for (int64_t i = 0; i < s.k; i++) a += f[c * s.k + i] * hx[r * s.k + i];
                        prod[r * wrows + c] = a;
                    }
                });
                ws.ref.resize(8 * s.cols);
                for (int r = 0; r < 8; r++)
                    for (int64_t c = 0; c < s.cols; c++) {
                        float v = prod[r * wrows + c];
                        if (s.swiglu) v = v / (1.0f + std::exp(-v)) * prod[r * wrows + c + s.cols];
                        ws.ref[r * s.cols + c] = round_to(v, false);
                    }
            } else {
                hw.resize(ws.bytes);
                check_cuda(cudaMemcpy(hw.data(), ws.copies[0], ws.bytes, cudaMemcpyDeviceToHost), "copy back");
                ws.ref = reference(p, hw, hx, 8, {}, {}, {}, false);
            }
            sets.push_back(std::move(ws));
        }
        for (int64_t n : ns) {
            double fp16_us = 0;
            for (Weights &ws : sets) {
                const petrel_wo_desc d = {ws.bits, ws.gs, 0, ws.bits == 16 ? 0 : row_bytes(ws.bits, ws.gs, false, s.k)};
                const WoMatrix q = wo_matrix(d, s.k);
                const int mode = s.swiglu ? kGemvSwiGLU : kGemvPlain;
                // (label, launch of copy c)
                std::vector<std::pair<std::string, std::function<cudaError_t(int)>>> runs;
                auto status = [](int32_t st) { return st == PETREL_OK ? cudaSuccess : cudaErrorUnknown; };
                if (ws.bits == 16) {
                    runs.push_back({"fp16 (product)", [&, n](int c) {
                        return status(s.swiglu ? petrel_matmul_swiglu_enqueue(ctx, x, n, s.k, ws.copies[c], nullptr, s.cols, out)
                                               : petrel_matmul_enqueue(ctx, x, n, s.k, ws.copies[c], nullptr, s.cols, nullptr, out));
                    }});
                } else {
                    runs.push_back({"product", [&, n, d](int c) {
                        return status(s.swiglu ? petrel_matmul_swiglu_enqueue(ctx, x, n, s.k, ws.copies[c], &d, s.cols, out)
                                               : petrel_matmul_enqueue(ctx, x, n, s.k, ws.copies[c], &d, s.cols, nullptr, out));
                    }});
                    auto gemm = [&, n, q, mode](int split) {
                        return [&, n, q, mode, split](int c) {
                            const uint8_t *w = (const uint8_t *)ws.copies[c];
                            return ws.bits == 8 ? wo_gemm_modes<half, 8>(ctx, mode, (const half *)x, w, q, ws.gs, nullptr, n, s.k, s.cols,
                                                                         (half *)out, split)
                                                : wo_gemm_modes<half, 4>(ctx, mode, (const half *)x, w, q, ws.gs, nullptr, n, s.k, s.cols,
                                                                         (half *)out, split);
                        };
                    };
                    if (n <= 8 && n > kWoGemvMaxRows) {
                        runs.push_back({"gemv", [&, n, q, mode](int c) {
                            const uint8_t *w = (const uint8_t *)ws.copies[c];
                            return ws.bits == 8 ? wo_gemv_modes<half, 8>(ctx, mode, (const half *)x, w, q, nullptr, n, s.k, s.cols,
                                                                         (half *)out, nullptr, 0.f)
                                                : wo_gemv_modes<half, 4>(ctx, mode, (const half *)x, w, q, nullptr, n, s.k, s.cols,
                                                                         (half *)out, nullptr, 0.f);
                        }});
                    }
                    if (n <= kWoGemvMaxRows) {
                        // The product's GEMV with other block shapes: warps a block x code rounds in flight.
                        auto variant = [&, n, q](auto launch) {
                            return [&, n, q, launch](int c) {
                                const uint8_t *w = (const uint8_t *)ws.copies[c];
                                return ws.bits == 8 ? launch(std::integral_constant<int, 8>(), w) : launch(std::integral_constant<int, 4>(), w);
                            };
                        };
#define WO_VARIANT(WARPS, ROUNDS, PIPE)                                                                                          \
    runs.push_back({"gemv " #WARPS " warps x " #ROUNDS " rounds" + std::string(PIPE ? ", pipelined" : ""),                     \
                    variant([&, n, q](auto bits, const uint8_t *w) {                                                              \
                        return wo_gemv_variant<half, decltype(bits)::value, WARPS, ROUNDS, PIPE>(ctx, s.swiglu, (const half *)x, w, q, \
                                                                                                n, s.k, s.cols, (half *)out);     \
                    })})
                        WO_VARIANT(4, 8, false);
                        WO_VARIANT(8, 8, false);
                        WO_VARIANT(16, 4, false);
                        WO_VARIANT(4, 4, false);
                        WO_VARIANT(8, 4, true);
                        WO_VARIANT(4, 4, true);
                        WO_VARIANT(16, 2, true);
#undef WO_VARIANT
                        runs.push_back({"rows, half2 (dev candidate)", [&, n, q](int c) {
                            const uint8_t *w = (const uint8_t *)ws.copies[c];
                            return ws.bits == 8 ? wo_gemv_rows_h2<8>(ctx, s.swiglu, (const half *)x, w, q, n, s.k, s.cols, (half *)out)
                                                : wo_gemv_rows_h2<4>(ctx, s.swiglu, (const half *)x, w, q, n, s.k, s.cols, (half *)out);
                        }});
                        runs.push_back({"rows (dev candidate)", [&, n, q](int c) {
                            const uint8_t *w = (const uint8_t *)ws.copies[c];
                            return ws.bits == 8 ? wo_gemv_rows<half, 8>(ctx, s.swiglu, (const half *)x, w, q, n, s.k, s.cols, (half *)out)
                                                : wo_gemv_rows<half, 4>(ctx, s.swiglu, (const half *)x, w, q, n, s.k, s.cols, (half *)out);
                        }});
                    }
                    if (n >= 4 && n <= 512) {
                        runs.push_back({"gemm2 (dev candidate)", [&, n, q, mode](int c) {
                            const uint8_t *w = (const uint8_t *)ws.copies[c];
                            return ws.bits == 8 ? wo_gemm2<half, 8>(ctx, mode, (const half *)x, w, q, nullptr, n, s.k, s.cols, (half *)out)
                                                : wo_gemm2<half, 4>(ctx, mode, (const half *)x, w, q, nullptr, n, s.k, s.cols, (half *)out);
                        }});
                    }
                    if (n <= kWoGemvMaxRows || n >= kWoCublasMinRows) runs.push_back({"gemm", gemm(0)});
                    if (n > kWoGemvMaxRows && n < kWoCublasMinRows) runs.push_back({"gemm, 1 split", gemm(1)});
                    if (n >= 64 && n < kWoCublasMinRows) {
                        runs.push_back({"dequant + cuBLAS", [&, n, d, q, mode](int c) {
                            return status(wo_dequant_matmul(ctx, mode, x, n, s.k, ws.copies[c], d, q, s.cols, nullptr, out));
                        }});
                    }
                }
                for (auto &entry : runs) {
                    const std::string &label = entry.first;
                    const std::function<cudaError_t(int)> &run = entry.second;
                    check(petrel_buffer_fill(ctx, out, 0xff, n * s.cols * 2), ctx, "poison out");
                    check_cuda(run(0), label.c_str());
                    const int64_t rows = std::min<int64_t>(n, 8);
                    std::vector<float> got = download(ctx, out, rows * s.cols);
                    const float err = rel_error(got, std::vector<float>(ws.ref.begin(), ws.ref.begin() + rows * s.cols));
                    const bool ok = err <= 5e-3f;
                    if (!ok) failures++;
                    int copy = 0;
                    const double us = time_us([&] { return run(copy++ % (int)ws.copies.size()); });
                    if (ws.bits == 16) fp16_us = us;
                    const double bytes = (double)ws.bytes + n * s.k * 2.0 + n * s.cols * 2.0;
                    const double gbs = bytes / (us * 1e-6) / 1e9, tflops = 2.0 * n * s.k * wrows / (us * 1e-6) / 1e12;
                    printf("| %s | %lld | %s | %s | %.1e%s | %.1f | %.0f | %.0f%% | %.1f | %.2f |\n", s.name, (long long)n,
                           ws.bits == 16 ? "fp16" : ws.bits == 8 ? "int8 per-channel" : "int4 g128", label.c_str(), err, ok ? "" : " FAIL",
                           us, gbs, 100 * gbs / copy_gbs, tflops, fp16_us / us);
                }
            }
        }
        for (Weights &ws : sets)
            for (void *p : ws.copies) petrel_buffer_free(ctx, p);
        for (void *p : {x, out, normed}) petrel_buffer_free(ctx, p);
    }
    petrel_context_destroy(ctx);
    if (failures) fprintf(stderr, "%d run(s) disagree with the CPU reference\n", failures);
    return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv) {
    const std::string mode = argc > 1 ? argv[1] : "bench";
    if (mode == "check") return check_all();
    if (mode == "bench") return bench();
    if (mode == "profile") {
        g_profile = true;
        return bench();
    }
    fprintf(stderr, "usage: bench_wo [check | bench | profile]\n");
    return 2;
}
