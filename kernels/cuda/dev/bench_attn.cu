// dev/bench_attn.cu: the prefill attention candidate (dev/flash_prefill.cuh, FlashAttention-2 on
// mma.sync) beside the product's petrel_attention_enqueue (attention.cu), llm.c's dev/cuda style:
// every path checked against a CPU reference, then timed. Not part of the library.
//
//   bench_attn check   the candidate (4 and 8 warps a tile) and the product against a float CPU
//                      reference, and the candidate against the product on the same inputs: fp16 and
//                      bf16, head_dim 64 and 128, GQA groups 1, 4 and 8 (2 KV heads), causal fresh
//                      prefills of 1, 17, 128 and 1000 tokens, and ragged batches of 8 sequences with
//                      cached prefixes of 0, 100 and 512 tokens (1 to 300 new tokens, a never-written
//                      row between sequences), every block table a random, non-contiguous set of
//                      blocks (block size 16 or 32), unused cache blocks NaN; scores of standard
//                      deviation 1 and ~3 (peaky softmax: a mask off by one key moves a row's output by
//                      O(1)). Outputs are poisoned with NaN before each launch. Tolerance: max |gpu -
//                      ref| / max |ref| <= 5e-3 (fp16), 3e-2 (bf16); the gap rows must stay NaN; head_dim
//                      96 must be refused (cudaErrorNotSupported). Exits 1 on any failure.
//   bench_attn [bench [bf16]]
//                      Llama-2-7B's attention (32 heads, head_dim 128, fp16 unless bf16), fresh causal
//                      prefills of batch x prompt = 1x512, 16x512, 128x128, 128x512, 8x2048, block
//                      size 32: the product (its K/V write, then the tiled kernel below 256 tokens and
//                      cuBLAS from there), the K/V write alone, the candidate alone and after the K/V
//                      write (what would replace the product), for 4 and 8 warps a tile. TFLOP/s
//                      counts the causal attention's FLOPs (4 head_dim per visible query-key pair, per
//                      head); % is of a cuBLAS fp16 GEMM (8192^3) timed here. The candidate's output is
//                      compared with the product's (first 4096 rows).
//
// Timing: CUDA events around 20 back-to-back launches behind a stream hold, the median of 30 after 5.
// The product's K/V write runs before its attention; the candidate reads the cache that write left
// (no RoPE here: the kernels read rotated queries and keys the same way with or without it).
// Built by `make -C kernels/cuda bench_attn`.
#include "../attention.cu"
#include "dev_common.h"
#include "flash_prefill.cuh"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <string>

namespace {

constexpr int kWarpVariants[] = {4, 8};  // the candidate's tiles: 64 or 128 query rows

struct SeqSpec {
    int tokens, prefix;   // new tokens, tokens already in the cache
};

// A ragged batch laid out as the engine would: rows, block tables, the candidate's metadata.
struct Batch {
    int head_dim, heads, kv_heads, block_size;
    std::vector<SeqSpec> seqs;
    std::vector<int64_t> begin;                 // first qkv / out row of each sequence
    std::vector<std::vector<int32_t>> tables;   // block table of each sequence (random blocks)
    int64_t rows = 0, blocks = 0, stride = 0;   // qkv rows (gaps included), cache blocks, qkv row length
    std::vector<petrel_attn_seq> attn;          // the product's view (tables borrowed from `tables`)
    // The candidate's metadata on the device: seqs (int4 each), tables, tiles (int2 each).
    void *meta = nullptr;
    const int4 *d_seqs = nullptr;
    const int32_t *d_tables = nullptr, *d_slots = nullptr;
    const int2 *d_tiles = nullptr;
    int tile_count = 0;

    int64_t kvs() const { return (int64_t)kv_heads * head_dim; }
    int64_t out_cols() const { return (int64_t)heads * head_dim; }
    int64_t slot(int s, int64_t pos) const { return (int64_t)tables[s][pos / block_size] * block_size + pos % block_size; }
};

Batch make_batch(std::mt19937 &rng, int head_dim, int heads, int kv_heads, int block_size, const std::vector<SeqSpec> &seqs, int gap) {
    Batch b;
    b.head_dim = head_dim, b.heads = heads, b.kv_heads = kv_heads, b.block_size = block_size, b.seqs = seqs;
    b.stride = (int64_t)(heads + 2 * kv_heads) * head_dim;
    std::vector<int> need;
    for (const SeqSpec &q : seqs) {
        b.begin.push_back(b.rows);
        b.rows += q.tokens + gap;
        need.push_back((q.prefix + q.tokens + block_size - 1) / block_size);
        b.blocks += need.back();
    }
    b.blocks += 3;   // a few never used
    std::vector<int32_t> perm(b.blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    int64_t next = 0;
    for (size_t s = 0; s < seqs.size(); s++) {
        b.tables.emplace_back(perm.begin() + next, perm.begin() + next + need[s]);
        next += need[s];
    }
    for (size_t s = 0; s < seqs.size(); s++)
        b.attn.push_back({b.begin[s], seqs[s].tokens, seqs[s].prefix, b.tables[s].data(), (int64_t)b.tables[s].size()});
    return b;
}

// Uploads the candidate's metadata for tiles of `warps` warps (a new upload each call): seqs as
// petrel_attention_enqueue lays them out, the tables, every row's slot (-1 in gaps; for the K/V
// write), and the tiles, the longest context first.
void upload_meta(petrel_context *ctx, Batch &b, int warps) {
    if (b.meta) petrel_buffer_free(ctx, b.meta);
    const int tt = flash::tile_tokens(warps, b.heads, b.kv_heads);
    std::vector<int32_t> seq_part, table_part, slot_part(b.rows, -1);
    std::vector<std::pair<int, std::pair<int, int>>> tiles;   // (key_end, (sequence, first))
    for (size_t s = 0; s < b.seqs.size(); s++) {
        const SeqSpec &q = b.seqs[s];
        for (int v : {(int)b.begin[s], q.tokens, q.prefix, (int)table_part.size()}) seq_part.push_back(v);
        table_part.insert(table_part.end(), b.tables[s].begin(), b.tables[s].end());
        for (int i = 0; i < q.tokens; i++) slot_part[b.begin[s] + i] = (int32_t)b.slot((int)s, q.prefix + i);
        for (int first = 0; first < q.tokens; first += tt)
            tiles.push_back({q.prefix + std::min(q.tokens, first + tt), {(int)s, first}});
    }
    std::stable_sort(tiles.begin(), tiles.end(), [](const auto &x, const auto &y) { return x.first > y.first; });
    std::vector<int32_t> tile_part;
    for (const auto &t : tiles) tile_part.insert(tile_part.end(), {t.second.first, t.second.second});
    // Parts at 16-byte offsets: seqs, tiles, tables, slots.
    auto padded = [](size_t words) { return (words + 3) / 4 * 4; };
    std::vector<int32_t> blob(padded(seq_part.size()) + padded(tile_part.size()) + padded(table_part.size()) + slot_part.size() + 4, 0);
    int32_t *p = blob.data();
    std::copy(seq_part.begin(), seq_part.end(), p);
    int32_t *tp = p + padded(seq_part.size());
    std::copy(tile_part.begin(), tile_part.end(), tp);
    int32_t *tb = tp + padded(tile_part.size());
    std::copy(table_part.begin(), table_part.end(), tb);
    int32_t *sl = tb + padded(table_part.size());
    std::copy(slot_part.begin(), slot_part.end(), sl);
    check(petrel_buffer_alloc(ctx, blob.size() * 4, &b.meta), ctx, "alloc meta");
    check(petrel_buffer_upload(ctx, blob.data(), blob.size() * 4, b.meta), ctx, "upload meta");
    const int32_t *d = (const int32_t *)b.meta;
    b.d_seqs = (const int4 *)d;
    b.d_tiles = (const int2 *)(d + (tp - p));
    b.d_tables = d + (tb - p);
    b.d_slots = d + (sl - p);
    b.tile_count = (int)tiles.size();
}

// The candidate on the context's element type.
cudaError_t run_flash(petrel_context *ctx, const Batch &b, int warps, const void *qkv, const void *kc, const void *vc, void *out,
                      int head_dim) {
    const float scale = 1.0f / std::sqrt((float)b.head_dim);
    return with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        return flash::flash_prefill<T>(ctx->stream, warps, (const T *)qkv, b.stride, b.heads, b.kv_heads, head_dim, (const T *)kc,
                                       (const T *)vc, b.block_size, b.d_seqs, b.d_tables, b.d_tiles, b.tile_count, scale, (T *)out,
                                       b.out_cols());
    });
}

// The product's K/V write alone (attention.cu's kv_write_kernel: 2-byte elements copied as they are).
cudaError_t run_kv_write(petrel_context *ctx, const Batch &b, const void *qkv, void *kc, void *vc) {
    kv_write_kernel<<<(unsigned)b.rows, 128, 0, ctx->stream>>>((const half *)qkv, b.stride, b.heads, b.kv_heads, b.head_dim,
                                                                b.d_slots, (half *)kc, (half *)vc);
    return cudaGetLastError();
}

int32_t run_product(petrel_context *ctx, const Batch &b, void *qkv, void *kc, void *vc, void *out) {
    return petrel_attention_enqueue(ctx, qkv, b.heads, b.kv_heads, b.head_dim, kc, vc, b.block_size, b.attn.data(),
                                    (int64_t)b.attn.size(), nullptr, nullptr, 1.0f / std::sqrt((float)b.head_dim), out);
}

// Causal attention of every new token on the CPU (float dot products, double softmax), rounded to
// the element type: qkv as the host made it, the prefix K/V from the host cache.
std::vector<float> reference(const Batch &b, const std::vector<float> &qkv, const std::vector<float> &kcache,
                             const std::vector<float> &vcache, bool bf16) {
    const int hd = b.head_dim, group = b.heads / b.kv_heads;
    const int64_t kvs = b.kvs();
    const float scale = 1.0f / std::sqrt((float)hd);
    std::vector<float> out(b.rows * b.out_cols(), NAN);
    for (size_t s = 0; s < b.seqs.size(); s++) {
        const SeqSpec &q = b.seqs[s];
        const int ctx_len = q.prefix + q.tokens;
        std::vector<float> K(ctx_len * kvs), V(ctx_len * kvs);   // the sequence's keys and values in order
        for (int p = 0; p < ctx_len; p++) {
            const float *ks, *vs;
            if (p < q.prefix) {
                ks = kcache.data() + b.slot((int)s, p) * kvs;
                vs = vcache.data() + b.slot((int)s, p) * kvs;
            } else {
                ks = qkv.data() + (b.begin[s] + p - q.prefix) * b.stride + (int64_t)b.heads * hd;
                vs = ks + kvs;
            }
            std::copy(ks, ks + kvs, K.begin() + p * kvs);
            std::copy(vs, vs + kvs, V.begin() + p * kvs);
        }
        parallel_for((int64_t)q.tokens * b.heads, [&](int64_t i) {
            const int t = (int)(i / b.heads), h = (int)(i % b.heads), kvh = h / group, last = q.prefix + t;
            const float *qv = qkv.data() + (b.begin[s] + t) * b.stride + (int64_t)h * hd;
            std::vector<double> p(last + 1);
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= last; j++) {
                const float *kv = K.data() + j * kvs + kvh * hd;
                float d = 0;
                for (int e = 0; e < hd; e++) d += qv[e] * kv[e];
                p[j] = (double)d * scale;
                mx = std::max(mx, p[j]);
            }
            for (int j = 0; j <= last; j++) sum += p[j] = std::exp(p[j] - mx);
            float *o = out.data() + (b.begin[s] + t) * b.out_cols() + (int64_t)h * hd;
            std::vector<double> acc(hd, 0.0);
            for (int j = 0; j <= last; j++) {
                const float *vv = V.data() + j * kvs + kvh * hd;
                for (int e = 0; e < hd; e++) acc[e] += p[j] * vv[e];
            }
            for (int e = 0; e < hd; e++) o[e] = round_to((float)(acc[e] / sum), bf16);
        });
    }
    return out;
}

// The rows of sequences (gaps left out).
std::vector<float> live_rows(const Batch &b, const std::vector<float> &all) {
    std::vector<float> v;
    for (size_t s = 0; s < b.seqs.size(); s++)
        v.insert(v.end(), all.begin() + b.begin[s] * b.out_cols(), all.begin() + (b.begin[s] + b.seqs[s].tokens) * b.out_cols());
    return v;
}

// Whether every gap row (rows that belong to no sequence) still holds the NaN poison.
bool gaps_untouched(const Batch &b, const std::vector<float> &all) {
    std::vector<bool> live(b.rows, false);
    for (size_t s = 0; s < b.seqs.size(); s++)
        for (int i = 0; i < b.seqs[s].tokens; i++) live[b.begin[s] + i] = true;
    for (int64_t r = 0; r < b.rows; r++)
        if (!live[r])
            for (int64_t c = 0; c < b.out_cols(); c++)
                if (!std::isnan(all[r * b.out_cols() + c])) return false;
    return true;
}

std::string describe(const std::vector<SeqSpec> &seqs) {
    std::string s;
    for (const SeqSpec &q : seqs) s += (s.empty() ? "" : " ") + std::to_string(q.tokens) + (q.prefix ? "+" + std::to_string(q.prefix) : "");
    return s;
}

int check_all() {
    int failures = 0, passed = 0;
    std::mt19937 rng(17);
    std::normal_distribution<float> normal(0.f, 1.f);
    const std::vector<std::vector<SeqSpec>> batches = {
        {{1, 0}}, {{17, 0}}, {{128, 0}}, {{1000, 0}},
        {{17, 0}, {1, 100}, {128, 512}, {300, 0}, {5, 100}, {64, 0}, {1, 512}, {100, 100}},
    };
    printf("Sequences: new tokens[+cached prefix]. Errors: max |x - ref| / max |ref|; tolerance 5e-3 (fp16), 3e-2 (bf16).\n\n");
    printf("| dtype | head_dim | group | block | score sd | sequences | path | vs CPU | vs product | ok |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    int counter = 0;
    for (int dt = 0; dt < 2; dt++) {
        const bool bf16 = dt == 1;
        const float tol = bf16 ? 3e-2f : 5e-3f;
        petrel_context *ctx = nullptr;
        char error[512];
        if (petrel_context_create(0, nullptr, &ctx, error, sizeof error) != PETREL_OK) { fprintf(stderr, "%s\n", error); exit(1); }
        check(petrel_context_set_dtype(ctx, bf16 ? PETREL_DTYPE_BF16 : PETREL_DTYPE_F16), ctx, "set dtype");
        for (int hd : {64, 128})
            for (int group : {1, 4, 8})
                for (const auto &seqs : batches) {
                    const int kv_heads = 2, heads = kv_heads * group;
                    const int block_size = counter % 2 ? 16 : 32;
                    const float amp = counter % 3 == 1 ? 1.7f : 1.0f;   // Q, K entries' sd: scores of sd amp^2
                    counter++;
                    Batch b = make_batch(rng, hd, heads, kv_heads, block_size, seqs, seqs.size() > 1 ? 1 : 0);
                    const int64_t kvs = b.kvs(), qcols = (int64_t)heads * hd;
                    // qkv: queries and keys of sd amp, values of sd 1, rounded to the element type.
                    std::vector<float> qkv(b.rows * b.stride);
                    for (int64_t r = 0; r < b.rows; r++)
                        for (int64_t c = 0; c < b.stride; c++)
                            qkv[r * b.stride + c] = round_to(normal(rng) * (c < qcols + kvs ? amp : 1.0f), bf16);
                    // The cache: NaN except the prefixes (what earlier steps wrote).
                    std::vector<float> kc(b.blocks * block_size * kvs, NAN), vc(kc.size(), NAN);
                    for (size_t s = 0; s < seqs.size(); s++)
                        for (int p = 0; p < seqs[s].prefix; p++) {
                            const int64_t at = b.slot((int)s, p) * kvs;
                            for (int64_t e = 0; e < kvs; e++) {
                                kc[at + e] = round_to(normal(rng) * amp, bf16);
                                vc[at + e] = round_to(normal(rng), bf16);
                            }
                        }
                    const std::vector<float> ref = reference(b, qkv, kc, vc, bf16);
                    const std::vector<float> live_ref = live_rows(b, ref);
                    void *d_qkv = device_floats(ctx, qkv), *d_k = device_floats(ctx, kc), *d_v = device_floats(ctx, vc);
                    const std::vector<float> poison(b.rows * b.out_cols(), NAN);
                    void *d_out = device_floats(ctx, poison);
                    // The product first: it writes the new tokens' K/V into the cache.
                    check(run_product(ctx, b, d_qkv, d_k, d_v, d_out), ctx, "petrel_attention_enqueue");
                    const std::vector<float> product = live_rows(b, download(ctx, d_out, b.rows * b.out_cols()));
                    const float perr = rel_error(product, live_ref);
                    const bool pok = perr <= tol;
                    pok ? passed++ : failures++;
                    const std::string desc = describe(seqs);
                    printf("| %s | %d | %d | %d | %.1f | %s | product | %.2e | - | %s |\n", bf16 ? "bf16" : "fp16", hd, group, block_size,
                           amp * amp, desc.c_str(), perr, pok ? "ok" : "FAIL");
                    for (int warps : kWarpVariants) {
                        upload_meta(ctx, b, warps);
                        check(petrel_weights_upload(ctx, PETREL_DTYPE_F32, poison.data(), (int64_t)poison.size(), d_out), ctx, "poison");
                        check_cuda(run_flash(ctx, b, warps, d_qkv, d_k, d_v, d_out, hd), "flash_prefill");
                        check_cuda(cudaStreamSynchronize(ctx->stream), "flash_prefill (run)");
                        const std::vector<float> all = download(ctx, d_out, b.rows * b.out_cols());
                        const std::vector<float> got = live_rows(b, all);
                        const float err = rel_error(got, live_ref), diff = rel_error(got, product);
                        const bool gaps = gaps_untouched(b, all);
                        const bool ok = err <= tol && diff <= tol && gaps;
                        ok ? passed++ : failures++;
                        printf("| %s | %d | %d | %d | %.1f | %s | flash %d warps%s | %.2e | %.2e | %s |\n", bf16 ? "bf16" : "fp16", hd, group,
                               block_size, amp * amp, desc.c_str(), warps, gaps ? "" : " (wrote a gap row)", err, diff,
                               ok ? "ok" : "FAIL");
                    }
                    // Unsupported head_dim: refused before anything is launched.
                    if (hd == 128 && group == 1 && &seqs == &batches.front()) {
                        const bool refused = run_flash(ctx, b, 4, d_qkv, d_k, d_v, d_out, 96) == cudaErrorNotSupported &&
                                             run_flash(ctx, b, 8, d_qkv, d_k, d_v, d_out, 80) == cudaErrorNotSupported;
                        cudaGetLastError();
                        refused ? passed++ : failures++;
                        printf("| %s | 96, 80 | - | - | - | - | flash refuses | - | - | %s |\n", bf16 ? "bf16" : "fp16",
                               refused ? "ok" : "FAIL");
                    }
                    for (void *p : {d_qkv, d_k, d_v, d_out, b.meta}) petrel_buffer_free(ctx, p);
                }
        petrel_context_destroy(ctx);
    }
    printf("\ncheck: %d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}

// ---- the Llama-2-7B timings

int bench(bool bf16) {
    petrel_context *ctx = nullptr;
    char error[512];
    if (petrel_context_create(0, nullptr, &ctx, error, sizeof error) != PETREL_OK) { fprintf(stderr, "%s\n", error); return 1; }
    if (bf16) check(petrel_context_set_dtype(ctx, PETREL_DTYPE_BF16), ctx, "set dtype");
    char name[256];
    int64_t total = 0, free_b = 0;
    int32_t sms = 0;
    check(petrel_device_describe(ctx, name, sizeof name, &total, &free_b, &sms), ctx, "describe");
    // Back-to-back launches between the events, per launch (µs; dev_common.h).
    auto time_us = [&](const std::function<void()> &run, int reps = 30, int batch = kBatch) {
        return median_launch_us(ctx->stream, run, reps, batch);
    };
    // The matrix ceiling: an 8192^3 GEMM through cuBLAS in the context's element type, fp32 accumulation.
    double peak = 0;
    {
        const int64_t n = 8192;
        void *a, *c;
        check(petrel_buffer_alloc(ctx, n * n * 2, &a), ctx, "alloc");
        check(petrel_buffer_alloc(ctx, n * n * 2, &c), ctx, "alloc");
        check(petrel_weights_random(ctx, a, n * n, 3, 1.0f), ctx, "random");
        const float one = 1.f, zero = 0.f;
        const cudaDataType_t t = cuda_element_type(ctx);
        const double us = time_us(
            [&] {
                if (cublasGemmEx(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)n, (int)n, &one, a, t, (int)n, a, t, (int)n, &zero, c,
                                 t, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                    fprintf(stderr, "cublasGemmEx failed\n");
                    exit(1);
                }
            },
            10, 5);
        peak = 2.0 * n * n * n / (us * 1e-6) / 1e12;
        petrel_buffer_free(ctx, a);
        petrel_buffer_free(ctx, c);
    }
    printf("device: %s, %d SMs; %s; cuBLAS GEMM 8192^3: %.0f TFLOP/s\n\n", name, sms, bf16 ? "bf16" : "fp16", peak);
    printf("| batch x prompt | path | us | TFLOP/s | %% of GEMM | product / this | vs product |\n");
    printf("|---|---|---|---|---|---|---|\n");
    struct Size { int batch, prompt; };
    const Size sizes[] = {{1, 512}, {16, 512}, {128, 128}, {128, 512}, {8, 2048}};
    const int heads = 32, kv_heads = 32, hd = 128, block_size = 32;
    const float tol = bf16 ? 3e-2f : 5e-3f;
    int failures = 0;
    std::mt19937 rng(5);
    for (const Size &z : sizes) {
        Batch b = make_batch(rng, hd, heads, kv_heads, block_size, std::vector<SeqSpec>(z.batch, SeqSpec{z.prompt, 0}), 0);
        double flops = 0;   // 4 hd per visible (query, key) pair per head
        for (const SeqSpec &q : b.seqs) flops += 4.0 * hd * heads * ((double)q.tokens * (q.tokens + 1) / 2 + (double)q.tokens * q.prefix);
        void *qkv, *kc, *vc, *out_p, *out_f;
        check(petrel_buffer_alloc(ctx, b.rows * b.stride * 2, &qkv), ctx, "alloc qkv");
        check(petrel_weights_random(ctx, qkv, b.rows * b.stride, 11, 1.0f), ctx, "random qkv");
        const size_t cache_bytes = (size_t)b.blocks * block_size * b.kvs() * 2;
        check(petrel_buffer_alloc(ctx, cache_bytes, &kc), ctx, "alloc k cache");
        check(petrel_buffer_alloc(ctx, cache_bytes, &vc), ctx, "alloc v cache");
        check(petrel_buffer_alloc(ctx, b.rows * b.out_cols() * 2, &out_p), ctx, "alloc out");
        check(petrel_buffer_alloc(ctx, b.rows * b.out_cols() * 2, &out_f), ctx, "alloc out");
        const std::string shape = std::to_string(z.batch) + "x" + std::to_string(z.prompt);
        auto row = [&](const std::string &path, double us, double product_us, const std::string &diff) {
            const double tf = flops / (us * 1e-6) / 1e12;
            printf("| %s | %s | %.1f | %.1f | %.0f%% | %.2f | %s |\n", shape.c_str(), path.c_str(), us, tf, 100 * tf / peak,
                   product_us / us, diff.c_str());
        };
        const double product_us = time_us([&] { check(run_product(ctx, b, qkv, kc, vc, out_p), ctx, "petrel_attention_enqueue"); });
        row(z.prompt >= kPrefillGemmMinTokens ? "product: K/V write + cuBLAS" : "product: K/V write + tiled", product_us, product_us, "-");
        const int64_t compare_rows = std::min<int64_t>(b.rows, 4096);
        const std::vector<float> product = download(ctx, out_p, compare_rows * b.out_cols());
        upload_meta(ctx, b, 4);
        const double kv_us = time_us([&] { check_cuda(run_kv_write(ctx, b, qkv, kc, vc), "kv write"); });
        row("K/V write alone", kv_us, product_us, "-");
        for (int warps : kWarpVariants) {
            upload_meta(ctx, b, warps);
            check(petrel_buffer_fill(ctx, out_f, 0xFF, b.rows * b.out_cols() * 2), ctx, "poison");   // NaN in fp16 and bf16
            const double fl_us = time_us([&] { check_cuda(run_flash(ctx, b, warps, qkv, kc, vc, out_f, hd), "flash_prefill"); });
            const float diff = rel_error(download(ctx, out_f, compare_rows * b.out_cols()), product);
            const bool ok = diff <= tol;
            if (!ok) failures++;
            char d[64];
            snprintf(d, sizeof d, "%.1e%s", diff, ok ? "" : " FAIL");
            row("flash " + std::to_string(warps) + " warps", fl_us, product_us, d);
            const double both_us = time_us([&] {
                check_cuda(run_kv_write(ctx, b, qkv, kc, vc), "kv write");
                check_cuda(run_flash(ctx, b, warps, qkv, kc, vc, out_f, hd), "flash_prefill");
            });
            row("K/V write + flash " + std::to_string(warps) + " warps", both_us, product_us, "-");
        }
        for (void *p : {qkv, kc, vc, out_p, out_f, b.meta}) petrel_buffer_free(ctx, p);
    }
    petrel_context_destroy(ctx);
    if (failures) fprintf(stderr, "%d run(s) disagree with the product\n", failures);
    return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv) {
    const std::string mode = argc > 1 ? argv[1] : "bench";
    if (mode == "check") return check_all();
    if (mode == "bench") return bench(argc > 2 && std::string(argv[2]) == "bf16");
    fprintf(stderr, "usage: bench_attn [check | bench [bf16]]\n");
    return 2;
}
