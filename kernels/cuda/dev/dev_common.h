// dev/dev_common.h: what the dev/ programs share: exits on a failed call, the comparison with the
// CPU reference (max |gpu - cpu| / max |cpu|; a non-finite value is infinitely wrong), rounding to
// the element type, a host thread pool, uploads and downloads, and the stream hold for timing.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "../internal.h"

inline void check(int32_t status, petrel_context *ctx, const char *what) {
    if (status != PETREL_OK) {
        fprintf(stderr, "%s: %s\n", what, petrel_context_last_error(ctx));
        exit(1);
    }
}

inline void check_cuda(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}

inline float rel_error(const std::vector<float> &got, const std::vector<float> &want) {
    float diff = 0, ref = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (!std::isfinite(got[i])) return INFINITY;
        diff = fmaxf(diff, fabsf(got[i] - want[i]));
        ref = fmaxf(ref, fabsf(want[i]));
    }
    return diff / fmaxf(ref, 1e-20f);
}

// v rounded to the element type (fp16, or bf16), as the device stores it.
inline float round_to(float v, bool bf16) { return bf16 ? __bfloat162float(__float2bfloat16_rn(v)) : __half2float(__float2half(v)); }

// f(i) for i in [0, count) on up to 16 host threads.
template <typename F> void parallel_for(int64_t count, F f) {
    const int threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
        pool.emplace_back([&, t] {
            for (int64_t i = t; i < count; i += threads) f(i);
        });
    for (auto &th : pool) th.join();
}

// v on the device as the context's element type (a new buffer the caller frees).
inline void *device_floats(petrel_context *ctx, const std::vector<float> &v) {
    void *p = nullptr;
    check(petrel_buffer_alloc(ctx, std::max<size_t>(v.size(), 1) * 2, &p), ctx, "alloc");
    if (!v.empty()) check(petrel_weights_upload(ctx, PETREL_DTYPE_F32, v.data(), (int64_t)v.size(), p), ctx, "upload");
    return p;
}

// count elements of the context's element type at p, as floats (waits for the stream).
inline std::vector<float> download(petrel_context *ctx, const void *p, int64_t count) {
    std::vector<float> v(count);
    check(petrel_tensor_download(ctx, p, count, v.data()), ctx, "download");
    return v;
}

namespace {
// Holds the stream for ns nanoseconds, so that the host has queued the timed launches before the
// first one starts: the events then time the card, not the launch rate.
__global__ void hold_stream(long long ns) {
    long long t0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    for (;;) {
        long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        if (t - t0 > ns) break;
        __nanosleep(1000);
    }
}

constexpr int kBatch = 20;   // launches timed together

// The median time of one launch of `run` in µs: `batch` launches queued behind hold_stream between
// two events (as a decode step's graph runs them back to back), reps + 5 times, the first 5 dropped.
template <typename Run>
double median_launch_us(cudaStream_t stream, Run &&run, int reps = 30, int batch = kBatch) {
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    std::vector<float> times;
    for (int it = 0; it < reps + 5; it++) {
        hold_stream<<<1, 1, 0, stream>>>(batch > 1 ? 200000 : 0);
        cudaEventRecord(start, stream);
        for (int b = 0; b < batch; b++) run();
        cudaEventRecord(stop, stream);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        if (it >= 5) times.push_back(ms / batch);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(times.begin(), times.end());
    return times[times.size() / 2] * 1000.0;
}
}  // namespace
