// bench_gemv.cu: the decode matmuls of Llama-2-7B (fp16) on the streaming GEMV and on cuBLAS,
// n = 1..64 activation rows, timed with CUDA events (median of 50 after warm-up; weights rotate
// over four copies so no matrix is served from L2). Prints a markdown table: microseconds and
// weight bytes per second for each path. Built and run by scripts/cuda-device-run.sh (stage gemv).
#include "internal.h"

#include <algorithm>
#include <vector>

static void check(int32_t status, petrel_context *ctx, const char *what) {
    if (status != PETREL_OK) {
        fprintf(stderr, "%s: %s\n", what, petrel_context_last_error(ctx));
        exit(1);
    }
}

int main() {
    petrel_context *ctx = nullptr;
    char error[512];
    if (petrel_context_create(0, &ctx, error, sizeof error) != PETREL_OK) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    struct Shape { const char *name; int64_t k, m; bool swiglu; };
    const Shape shapes[] = {{"qkv", 4096, 12288, false}, {"o", 4096, 4096, false}, {"gate_up+swiglu", 4096, 11008, true},
                            {"down", 11008, 4096, false}, {"head", 4096, 32000, false}};
    const int ns[] = {1, 2, 4, 8, 16, 32, 64};
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    printf("| matrix | k | m | n | GEMV us | GEMV GB/s | cuBLAS us | cuBLAS GB/s | GEMV / cuBLAS time |\n|---|---|---|---|---|---|---|---|---|\n");
    for (const Shape &s : shapes) {
        const int64_t rows = s.swiglu ? 2 * s.m : s.m;
        const size_t wbytes = (size_t)rows * s.k * 2;
        void *w[4], *x, *out;
        for (auto &p : w) {
            check(petrel_buffer_alloc(ctx, wbytes, &p), ctx, "alloc w");
            check(petrel_weights_random(ctx, p, rows * s.k, 11, 0.05f), ctx, "random w");
        }
        check(petrel_buffer_alloc(ctx, 64 * s.k * 2, &x), ctx, "alloc x");
        check(petrel_weights_random(ctx, x, 64 * s.k, 12, 1.0f), ctx, "random x");
        check(petrel_buffer_alloc(ctx, 64 * rows * 2, &out), ctx, "alloc out");
        for (int n : ns) {
            double us[2] = {0, 0};
            for (int path = 0; path < 2; path++) {
                ctx->gemv_max_rows = path == 0 ? kGemvMaxRows : 0;
                if (path == 0 && n > kGemvMaxRows) { us[0] = 0; continue; }
                std::vector<float> times;
                for (int it = 0; it < 60; it++) {
                    cudaEventRecord(start, ctx->stream);
                    if (s.swiglu) check(petrel_matmul_swiglu_enqueue(ctx, x, n, s.k, w[it % 4], s.m, out), ctx, "swiglu");
                    else check(petrel_matmul_enqueue(ctx, x, n, s.k, w[it % 4], s.m, nullptr, out), ctx, "matmul");
                    cudaEventRecord(stop, ctx->stream);
                    cudaEventSynchronize(stop);
                    float ms = 0;
                    cudaEventElapsedTime(&ms, start, stop);
                    if (it >= 10) times.push_back(ms);
                }
                std::sort(times.begin(), times.end());
                us[path] = times[times.size() / 2] * 1000.0;
            }
            auto gbs = [&](double t) { return t > 0 ? wbytes / (t * 1e-6) / 1e9 : 0.0; };
            if (us[0] > 0)
                printf("| %s | %lld | %lld | %d | %.1f | %.0f | %.1f | %.0f | %.2f |\n", s.name, (long long)s.k, (long long)s.m, n,
                       us[0], gbs(us[0]), us[1], gbs(us[1]), us[0] / us[1]);
            else
                printf("| %s | %lld | %lld | %d | - | - | %.1f | %.0f | - |\n", s.name, (long long)s.k, (long long)s.m, n, us[1], gbs(us[1]));
        }
        for (auto &p : w) petrel_buffer_free(ctx, p);
        petrel_buffer_free(ctx, x);
        petrel_buffer_free(ctx, out);
    }
    petrel_context_destroy(ctx);
    return 0;
}
