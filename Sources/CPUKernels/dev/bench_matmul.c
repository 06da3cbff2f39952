// dev/bench_matmul.c: the CPU matmuls of kernels.c on a Llama-2-7B gate matrix (11008 x 4096), in
// llm.c's dev/cuda style: every weight type is first checked against a double reference on small
// shapes (both paths), then timed. Not part of the library (Package.swift excludes dev/).
//
//   cc -O3 -ffp-contract=fast -fno-math-errno -mavx2 -mfma -mf16c -ISources/CPUKernels/include
//      -o .build/bench_matmul Sources/CPUKernels/dev/bench_matmul.c Sources/CPUKernels/threadpool.c -lm -lpthread
//   .build/bench_matmul [threads] [check]     (check: stop after the checks)
//
// Weights are random codes with small fp16 scales. Timing: the best of 20 calls after one; GB/s =
// weight bytes / time. Prints a markdown table; exits 1 if a check fails: exact path relative error
// over 1e-5, fast path over 2e-2 (8-bit activations), or a token's result depending on the batch.
#include "../kernels.c"

#include <stdio.h>
#include <time.h>

typedef struct { const char *name; int type, bits, gs, hz; } bench_case;   // type < 0: weight-only

static const bench_case cases[] = {
    { "Q8_0", PK_TYPE_Q8_0, 0, 0, 0 }, { "Q4_0", PK_TYPE_Q4_0, 0, 0, 0 }, { "Q4_1", PK_TYPE_Q4_1, 0, 0, 0 },
    { "w8 per-row", -1, 8, 0, 0 }, { "w8 g16", -1, 8, 16, 0 }, { "w8 g32", -1, 8, 32, 0 }, { "w8 g32 z", -1, 8, 32, 1 },
    { "w4 g32", -1, 4, 32, 0 }, { "w4 g32 z", -1, 4, 32, 1 }, { "w4 g128", -1, 4, 128, 0 }, { "w4 g128 z", -1, 4, 128, 1 },
};

static uint64_t rng_state = 1;
static uint32_t rnd32(void) { rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL; return (uint32_t)(rng_state >> 32); }
static float rndf(void) { return (float)rnd32() / 4294967296.0f; }   // [0, 1)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (double)t.tv_sec + t.tv_nsec * 1e-9; }

static size_t case_row_bytes(const bench_case *c, int64_t k) {
    if (c->type >= 0) return pk_row_bytes(c->type, k);
    int64_t groups = c->gs ? (k + c->gs - 1) / c->gs : 1;
    return ((size_t)(k * c->bits / 8) + (size_t)groups * 2 * (c->hz ? 2 : 1) + 15) / 16 * 16;
}

// Random weights: random code bytes, then every scale (and zero) set to a small fp16 value.
static uint8_t *make_weights(const bench_case *c, int64_t m, int64_t k) {
    size_t rb = case_row_bytes(c, k);
    uint8_t *w = malloc(rb * (size_t)m);
    for (size_t i = 0; i < rb * (size_t)m; i++) w[i] = (uint8_t)rnd32();
    for (int64_t r = 0; r < m; r++) {
        uint8_t *row = w + (size_t)r * rb;
        if (c->type >= 0) {
            size_t bs = pk_row_bytes(c->type, 32), halves = c->type == PK_TYPE_Q4_1 ? 2 : 1;
            for (size_t b = 0; b < rb; b += bs)
                for (size_t h = 0; h < halves; h++) { uint16_t v = (uint16_t)(0x1C00 + rnd32() % 0x400); memcpy(row + b + 2 * h, &v, 2); }
        } else {
            int64_t groups = c->gs ? (k + c->gs - 1) / c->gs : 1;
            uint16_t *sc = (uint16_t *)(row + k * c->bits / 8);
            for (int64_t g = 0; g < groups; g++) sc[g] = (uint16_t)(0x1C00 + rnd32() % 0x400);   // 2^-8 .. 2^-7
            for (int64_t g = 0; c->hz && g < groups; g++) sc[groups + g] = (uint16_t)(0x5000 + rnd32() % 0x1000);   // 32 .. 128
        }
    }
    return w;
}

// Row r as floats: pk_dequantize_row, or the weight-only layout read as WeightOnly.swift defines it.
static void reference_row(const bench_case *c, const uint8_t *w, int64_t k, int64_t r, float *dst) {
    const uint8_t *row = w + (size_t)r * case_row_bytes(c, k);
    if (c->type >= 0) { pk_dequantize_row(c->type, row, dst, k); return; }
    int64_t gs = c->gs ? c->gs : k, groups = (k + gs - 1) / gs;
    const uint16_t *sc = (const uint16_t *)(row + k * c->bits / 8);
    static const int order8[16] = { 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15 }, offsets4[8] = { 0, 8, 16, 24, 1, 9, 17, 25 };
    for (int64_t col = 0; col < k; col++) {
        int u = 0;
        if (c->bits == 8) {
            for (int p = 0; p < 16; p++) if (order8[p] == col % 16) u = row[col / 16 * 16 + p];
        } else {
            for (int word = 0; word < 4; word++)
                for (int n = 0; n < 8; n++)
                    if (2 * word + offsets4[n] == col % 32) {
                        uint32_t v; memcpy(&v, row + col / 32 * 16 + 4 * word, 4);
                        u = (int)((v >> (4 * n)) & 0xF);
                    }
        }
        int64_t g = col / gs;
        float z = c->hz ? fp16_to_f32(sc[groups + g]) : c->bits == 8 ? 128.0f : 8.0f;
        dst[col] = ((float)u - z) * fp16_to_f32(sc[g]);
    }
}

static void run_case(const bench_case *c, const float *x, int64_t n, int64_t k, const void *w, int64_t m, const float *bias, float *out, int exact) {
    if (c->type >= 0) pk_matmul(x, n, k, w, c->type, m, bias, out, exact);
    else pk_matmul_wo(x, n, k, w, c->bits, c->gs, c->hz, case_row_bytes(c, k), m, bias, out, exact);
}

// Both paths against a double reference on a 37 x k matrix, 21 tokens; each token also alone.
static int check_case(const bench_case *c, int64_t k) {
    const int64_t m = 37, n = 21;
    uint8_t *w = make_weights(c, m, k);
    float *deq = malloc(sizeof(float) * (size_t)(m * k)), *x = malloc(sizeof(float) * (size_t)(n * k));
    float *bias = malloc(sizeof(float) * (size_t)m), *out = malloc(sizeof(float) * (size_t)(n * m)), *one = malloc(sizeof(float) * (size_t)m);
    for (int64_t r = 0; r < m; r++) reference_row(c, w, k, r, deq + r * k);
    for (int64_t i = 0; i < n * k; i++) x[i] = 2 * rndf() - 1;
    for (int64_t i = 0; i < m; i++) bias[i] = rndf() - 0.5f;
    int failed = 0;
    for (int exact = 1; exact >= 0; exact--) {
        run_case(c, x, n, k, w, m, bias, out, exact);
        double num = 0, den = 0;
        for (int64_t t = 0; t < n; t++) {
            for (int64_t r = 0; r < m; r++) {
                double s = bias[r];
                for (int64_t i = 0; i < k; i++) s += (double)deq[r * k + i] * x[t * k + i];
                num += (out[t * m + r] - s) * (out[t * m + r] - s); den += s * s;
            }
            run_case(c, x + t * k, 1, k, w, m, bias, one, exact);
            if (memcmp(one, out + t * m, sizeof(float) * (size_t)m) != 0) { printf("%s k=%lld exact=%d: token %lld depends on the batch\n", c->name, (long long)k, exact, (long long)t); failed = 1; }
        }
        double err = sqrt(num / den);
        if (err > (exact ? 1e-5 : 2e-2)) { printf("%s k=%lld exact=%d: relative error %.3g\n", c->name, (long long)k, exact, err); failed = 1; }
    }
    free(w); free(deq); free(x); free(bias); free(out); free(one);
    return failed;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    pk_set_threads(threads);
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    int failed = 0;
    for (int ci = 0; ci < ncases; ci++)
        for (int64_t k = 96; k <= 1536; k *= 4) failed |= check_case(&cases[ci], k);   // 96, 384, 1536
    if (failed) return 1;
    if (argc > 2 && strcmp(argv[2], "check") == 0) { printf("checked\n"); return 0; }

    const int64_t m = 11008, k = 4096, max_n = 32;
    float *x = malloc(sizeof(float) * (size_t)(max_n * k)), *out = malloc(sizeof(float) * (size_t)(max_n * m));
    for (int64_t i = 0; i < max_n * k; i++) x[i] = 2 * rndf() - 1;
    printf("checked: every type, exact and fast, k = 96 / 384 / 1536\n\n");
    printf("| weights | bytes/weight | tokens | threads | ms | weight GB/s | GMAC/s |\n|---|---|---|---|---|---|---|\n");
    for (int ci = 0; ci < ncases; ci++) {
        const bench_case *c = &cases[ci];
        uint8_t *w = make_weights(c, m, k);
        size_t bytes = case_row_bytes(c, k) * (size_t)m;
        for (int64_t n = 1; n <= max_n; n *= 32) {
            double best = 1e30;
            for (int rep = 0; rep < 21; rep++) {
                double t0 = now();
                run_case(c, x, n, k, w, m, NULL, out, 0);
                double dt = now() - t0;
                if (rep > 0 && dt < best) best = dt;
            }
            printf("| %s | %.3f | %lld | %d | %.2f | %.1f | %.1f |\n", c->name, (double)bytes / (double)(m * k), (long long)n, threads,
                   best * 1e3, (double)bytes / best / 1e9, (double)(n * m * k) / best / 1e9);
        }
        free(w);
    }
    return 0;
}
