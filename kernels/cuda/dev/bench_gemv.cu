// dev/bench_gemv.cu: the decode matmul of gemv.cu on Llama-2-7B's matrices (fp16), llm.c's
// dev/cuda style: each variant is checked against a CPU reference, then timed beside cuBLAS. Not
// part of the library; variants the product does not take live only here.
//
//   bench_gemv          the product: gemv_enqueue (1-4 rows) and cuBLAS (1-64 rows)
//   bench_gemv rows     5-8 rows on the GEMV (the product hands them to cuBLAS: kGemvMaxRows)
//   bench_gemv slices   1, 2 and 4 warps a column for every matrix (the product: slices_for)
//   bench_gemv norm     the RMSNorm inside the GEMV (the product) or a norm kernel, then the GEMV
//
// Timing: CUDA events around one launch, the median of 50 after 10, the weights rotating over
// four copies so that no matrix is served from L2. GB/s = weight bytes / time. Prints a markdown
// table; exits 1 if any variant's max |gpu - cpu| / max |cpu| exceeds 5e-3.
// Built by `make -C kernels/cuda bench_gemv` (scripts/cuda-device-run.sh, stage gemv).
#include "../gemv.cu"
#include "dev_common.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

namespace {

// gemv_kernel<half, n, MODE, S, NORM> for any n of 1..8 and any S of 1, 2, 4 (the product's
// launch_split takes n <= kGemvMaxRows and S = slices_for(cols)).
template <int MODE, bool NORM>
cudaError_t launch_variant(const petrel_context *ctx, int n, int slices, const half *x, const half *w, int64_t k,
                           int64_t cols, half *out, const half *norm_w) {
    const size_t smem = NORM ? (size_t)(n * k * 2) : 0;
    auto go = [&](auto kernel, int s) {
        const int per_block = kWarps / s;
        return launch_dependent(ctx, dim3((unsigned)((cols + per_block - 1) / per_block)), dim3(kWarps * 32), smem, kernel, x,
                                w, (const half *)nullptr, k, cols, out, norm_w, 1e-5f);
    };
#define CASE(N)                                                              \
    case N:                                                                  \
        if (slices == 4) return go(gemv_kernel<half, N, MODE, 4, NORM>, 4); \
        if (slices == 2) return go(gemv_kernel<half, N, MODE, 2, NORM>, 2); \
        return go(gemv_kernel<half, N, MODE, 1, NORM>, 1);
    switch (n) { CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) }
#undef CASE
    return cudaErrorInvalidValue;
}

struct Shape {
    const char *name;
    int64_t k, m;   // out (n, m) = x (n, k) . w^T; SwiGLU: w holds 2 m rows (gate, then up)
    bool swiglu;
    bool normed;    // a matrix the model multiplies by a normalised x (qkv, gate_up)
};

float half_round(float v) { return __half2float(__float2half(v)); }

// The CPU reference for `rows` rows of x (and, with `norm`, x normalised and rounded to fp16 as the
// kernels do): fp32 dot products, SwiGLU as silu(gate) * up, each output rounded to fp16.
std::vector<float> reference(const Shape &s, const std::vector<float> &w, const std::vector<float> &x, int rows,
                             const std::vector<float> *norm) {
    std::vector<float> xs(x.begin(), x.begin() + rows * s.k);
    if (norm) {
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int64_t i = 0; i < s.k; i++) ss += (double)xs[r * s.k + i] * xs[r * s.k + i];
            const float scale = 1.0f / std::sqrt((float)(ss / s.k) + 1e-5f);
            for (int64_t i = 0; i < s.k; i++) xs[r * s.k + i] = half_round(xs[r * s.k + i] * scale * (*norm)[i]);
        }
    }
    std::vector<float> out((size_t)rows * s.m);
    for (int r = 0; r < rows; r++)
        for (int64_t c = 0; c < s.m; c++) {
            auto dot = [&](int64_t row) {
                float acc = 0;
                const float *a = &w[row * s.k], *b = &xs[r * s.k];
                for (int64_t i = 0; i < s.k; i++) acc += a[i] * b[i];
                return acc;
            };
            float v = dot(c);
            if (s.swiglu) v = v / (1.0f + std::exp(-v)) * dot(c + s.m);
            out[r * s.m + c] = half_round(v);
        }
    return out;
}

}  // namespace

int main(int argc, char **argv) {
    const std::string mode = argc > 1 ? argv[1] : "product";
    if (mode != "product" && mode != "rows" && mode != "slices" && mode != "norm") {
        fprintf(stderr, "usage: bench_gemv [product | rows | slices | norm]\n");
        return 2;
    }
    petrel_context *ctx = nullptr;
    char error[512];
    if (petrel_context_create(0, nullptr, &ctx, error, sizeof error) != PETREL_OK) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    const Shape shapes[] = {{"qkv", 4096, 12288, false, true},
                            {"o", 4096, 4096, false, false},
                            {"gate_up+swiglu", 4096, 11008, true, true},
                            {"down", 11008, 4096, false, false},
                            {"head", 4096, 32000, false, true}};
    cudaEvent_t start, stop;
    check_cuda(cudaEventCreate(&start), "event");
    check_cuda(cudaEventCreate(&stop), "event");
    int failures = 0;
    printf("| matrix | k | m | rows | variant | max rel error | us | GB/s | / cuBLAS time |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (const Shape &s : shapes) {
        if (mode == "norm" && !s.normed) continue;
        const int64_t rows = s.swiglu ? 2 * s.m : s.m;
        const size_t wbytes = (size_t)rows * s.k * 2;
        void *w[4], *x, *g, *normed, *out, *gate_up;
        for (auto &p : w) {   // four identical copies (same seed)
            check(petrel_buffer_alloc(ctx, wbytes, &p), ctx, "alloc w");
            check(petrel_weights_random(ctx, p, rows * s.k, 11, 0.05f), ctx, "random w");
        }
        check(petrel_buffer_alloc(ctx, 64 * s.k * 2, &x), ctx, "alloc x");
        check(petrel_weights_random(ctx, x, 64 * s.k, 12, 1.0f), ctx, "random x");
        check(petrel_buffer_alloc(ctx, s.k * 2, &g), ctx, "alloc norm weight");
        check(petrel_weights_random(ctx, g, s.k, 13, 1.0f), ctx, "random norm weight");
        check(petrel_buffer_alloc(ctx, 64 * s.k * 2, &normed), ctx, "alloc normed");
        check(petrel_buffer_alloc(ctx, 64 * s.m * 2, &out), ctx, "alloc out");
        check(petrel_buffer_alloc(ctx, 64 * rows * 2, &gate_up), ctx, "alloc gate_up");
        std::vector<float> hw((size_t)rows * s.k), hx((size_t)8 * s.k), hg(s.k);
        check(petrel_tensor_download(ctx, w[0], rows * s.k, hw.data()), ctx, "download w");
        check(petrel_tensor_download(ctx, x, 8 * s.k, hx.data()), ctx, "download x");
        check(petrel_tensor_download(ctx, g, s.k, hg.data()), ctx, "download norm weight");
        const std::vector<float> ref = reference(s, hw, hx, 8, nullptr);
        const std::vector<float> ref_norm = s.normed ? reference(s, hw, hx, 4, &hg) : std::vector<float>();

        // Checks the first `checked` rows `run` writes against `want`, then times it: (error, us).
        auto measure = [&](int checked, const std::vector<float> &want, const std::function<cudaError_t(const void *)> &run) {
            check(petrel_buffer_fill(ctx, out, 0xff, 64 * s.m * 2), ctx, "poison out");   // NaN
            check_cuda(run(w[0]), "launch");
            std::vector<float> got((size_t)checked * s.m);
            check(petrel_tensor_download(ctx, out, checked * s.m, got.data()), ctx, "download out");
            const float err = rel_error(got, std::vector<float>(want.begin(), want.begin() + (size_t)checked * s.m));
            if (!(err <= 5e-3f)) failures++;
            std::vector<float> times;
            for (int it = 0; it < 60; it++) {
                cudaEventRecord(start, ctx->stream);
                check_cuda(run(w[it % 4]), "launch");
                cudaEventRecord(stop, ctx->stream);
                cudaEventSynchronize(stop);
                float ms = 0;
                cudaEventElapsedTime(&ms, start, stop);
                if (it >= 10) times.push_back(ms);
            }
            std::sort(times.begin(), times.end());
            return std::make_pair(err, times[times.size() / 2] * 1000.0);
        };
        auto row = [&](int n, const std::string &variant, std::pair<float, double> r, double cublas_us) {
            char ratio[16] = "-";
            if (cublas_us > 0) snprintf(ratio, sizeof ratio, "%.2f", r.second / cublas_us);
            printf("| %s | %lld | %lld | %d | %s | %.1e%s | %.1f | %.0f | %s |\n", s.name, (long long)s.k, (long long)s.m, n,
                   variant.c_str(), r.first, r.first <= 5e-3f ? "" : " FAIL", r.second, wbytes / (r.second * 1e-6) / 1e9, ratio);
        };
        // cuBLAS as the product runs it past kGemvMaxRows rows (GEMM, then the SwiGLU kernel).
        auto cublas = [&](int n) {
            return [&, n](const void *wc) {
                const float alpha = 1.0f, beta = 0.0f;
                if (cublasGemmEx(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, n, (int)s.k, &alpha, wc, CUDA_R_16F, (int)s.k,
                                 x, CUDA_R_16F, (int)s.k, &beta, s.swiglu ? gate_up : out, CUDA_R_16F, (int)rows,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
                    return cudaErrorUnknown;
                if (s.swiglu && petrel_swiglu_enqueue(ctx, gate_up, n, s.m, out) != PETREL_OK) return cudaErrorUnknown;
                return cudaSuccess;
            };
        };
        // The GEMV kernel for n rows and `slices` warps a column, of x (or, with_norm, of
        // rmsnorm(x) computed by the kernel itself).
        auto gemv = [&](int n, int slices, bool with_norm, const void *input) {
            return [&, n, slices, with_norm, input](const void *wc) {
                const half *xh = (const half *)input, *wh = (const half *)wc, *gh = with_norm ? (const half *)g : nullptr;
                if (with_norm)
                    return s.swiglu ? launch_variant<kGemvSwiGLU, true>(ctx, n, slices, xh, wh, s.k, s.m, (half *)out, gh)
                                    : launch_variant<kGemvPlain, true>(ctx, n, slices, xh, wh, s.k, s.m, (half *)out, gh);
                return s.swiglu ? launch_variant<kGemvSwiGLU, false>(ctx, n, slices, xh, wh, s.k, s.m, (half *)out, gh)
                                : launch_variant<kGemvPlain, false>(ctx, n, slices, xh, wh, s.k, s.m, (half *)out, gh);
            };
        };

        if (mode == "product") {
            for (int n : {1, 2, 4, 8, 16, 32, 64}) {
                const int checked = n < 8 ? n : 8;   // the reference has 8 rows
                const auto c = measure(checked, ref, cublas(n));
                if (n <= kGemvMaxRows) {
                    const int gemv_mode = s.swiglu ? kGemvSwiGLU : kGemvPlain;
                    row(n, "gemv (product)", measure(n, ref, [&, n, gemv_mode](const void *wc) {
                            return gemv_enqueue(ctx, gemv_mode, x, n, s.k, wc, s.m, nullptr, out) == PETREL_OK ? cudaSuccess
                                                                                                            : cudaErrorUnknown;
                        }),
                        c.second);
                }
                row(n, n <= kGemvMaxRows ? "cuBLAS" : "cuBLAS (product)", c, 0);
            }
        } else if (mode == "rows") {
            for (int n = 1; n <= 8; n++) {
                const auto c = measure(n, ref, cublas(n));
                row(n, n <= kGemvMaxRows ? "gemv (product)" : "gemv", measure(n, ref, gemv(n, slices_for(s.m), false, x)), c.second);
                row(n, n <= kGemvMaxRows ? "cuBLAS" : "cuBLAS (product)", c, 0);
            }
        } else if (mode == "slices") {
            for (int n : {1, 4}) {
                const auto c = measure(n, ref, cublas(n));
                for (int slices : {1, 2, 4})
                    row(n, std::to_string(slices) + " warps a column" + (slices == slices_for(s.m) ? " (product)" : ""),
                        measure(n, ref, gemv(n, slices, false, x)), c.second);
            }
        } else {   // norm
            for (int n = 1; n <= kGemvMaxRows; n++) {
                const auto fused = measure(n, ref_norm, gemv(n, slices_for(s.m), true, x));
                const auto plain = gemv(n, slices_for(s.m), false, normed);
                const auto apart = measure(n, ref_norm, [&, n, plain](const void *wc) {
                    if (petrel_rmsnorm_enqueue(ctx, x, g, n, s.k, 1e-5f, normed) != PETREL_OK) return cudaErrorUnknown;
                    return plain(wc);
                });
                row(n, "norm inside the gemv (product)", fused, 0);
                row(n, "norm kernel, then the gemv", apart, 0);
            }
        }
        for (auto &p : w) petrel_buffer_free(ctx, p);
        for (void *p : {x, g, normed, out, gate_up}) petrel_buffer_free(ctx, p);
    }
    petrel_context_destroy(ctx);
    if (failures) fprintf(stderr, "%d variant(s) disagree with the CPU reference\n", failures);
    return failures ? 1 : 0;
}
