// sampling.cu: token selection on the device, so that a step's logits (rows x vocab) need not
// cross to the host. top_candidates_kernel finds each row's k best logits in order (value
// descending, then index ascending: the host sampler's tie rule), one thread block per row: k
// rounds of a block-wide argmax, each over the elements that rank below the previous round's
// pick. Greedy decoding is k = 1. Rows with penalties or masks are first copied to fp32 with the
// host's edits applied (edit_kernel), and selection reads that copy. Logits are of the context's
// element type (fp16 or bf16); comparisons and sums are fp32.
#include "internal.h"

#include <climits>

namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// The warp's best (value, index) in every lane.
__device__ __forceinline__ void warp_best(float &bv, int &bi) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
}

__device__ __forceinline__ float load_logit(const half *p) { return __half2float(*p); }
__device__ __forceinline__ float load_logit(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load_logit(const float *p) { return *p; }

// out (rows, vocab) fp32 = logits as floats.
template <typename T>
__global__ void widen_kernel(const T *logits, int64_t count, float *out) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = to_float(logits[i]);
}

// One thread per edit, in place on the fp32 copy. Explicitly rounded operations: no contraction
// into fused multiply-adds, so the result is the host sampler's to the bit.
__global__ void edit_kernel(float *rows, int64_t vocab, const petrel_logit_edit *edits, int64_t count) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= count) return;
    const petrel_logit_edit e = edits[i];
    float *p = rows + (int64_t)e.row * vocab + e.id;
    if (e.masked) {
        *p = -INFINITY;
        return;
    }
    float v = *p;
    if (e.repetition != 1.f) v = v > 0.f ? __fdiv_rn(v, e.repetition) : __fmul_rn(v, e.repetition);
    if (e.subtract != 0.f) v = __fsub_rn(v, e.subtract);
    *p = v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) top_candidates_kernel(const T *logits, int64_t vocab, int k, int32_t *ids,
                                                                  float *values, const float *inv_temperature,
                                                                  float *log_sum_exp) {
    __shared__ float shared_v[32];
    __shared__ int shared_i[32];
    const T *row = logits + (int64_t)blockIdx.x * vocab;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    float pv = INFINITY;
    int pi = -1;
    for (int r = 0; r < k; r++) {
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const float v = load_logit(row + i);
            const bool ranks_below = v < pv || (v == pv && i > pi);
            if (ranks_below && better(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
        warp_best(bv, bi);
        if (lane == 0) {
            shared_v[warp] = bv;
            shared_i[warp] = bi;
        }
        __syncthreads();
        if (warp == 0) {
            bv = lane < warps ? shared_v[lane] : -INFINITY;
            bi = lane < warps ? shared_i[lane] : INT_MAX;
            warp_best(bv, bi);
            if (lane == 0) {
                shared_v[0] = bv;
                shared_i[0] = bi;
                ids[(int64_t)blockIdx.x * k + r] = bi == INT_MAX ? -1 : bi;
                values[(int64_t)blockIdx.x * k + r] = bv;
            }
        }
        __syncthreads();
        pv = shared_v[0];
        pi = shared_i[0];
        __syncthreads();   // shared_v[0] is rewritten by the next round
        if (r == 0 && log_sum_exp) {
            // log sum exp of logits / temperature over the row, around its maximum (the first pick).
            const float it = inv_temperature ? inv_temperature[blockIdx.x] : 1.f;
            float sum = 0.f;
            if (isfinite(pv))
                for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += __expf((load_logit(row + i) - pv) * it);
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            if (lane == 0) shared_v[warp] = sum;
            __syncthreads();
            if (threadIdx.x == 0) {
                float total = 0.f;
                for (int w = 0; w < warps; w++) total += shared_v[w];
                log_sum_exp[blockIdx.x] = isfinite(pv) ? pv * it + logf(total) : pv;
            }
            __syncthreads();
        }
    }
}

}  // namespace

extern "C" int32_t petrel_top_candidates(petrel_context *ctx, const void *logits, int64_t rows, int64_t vocab, int32_t k,
                                         const float *inv_temperature, const petrel_logit_edit *edits, int64_t edit_count,
                                         int32_t *ids, float *values, float *log_sum_exp) {
    if (rows == 0) return PETREL_OK;
    if (k < 1 || k > 1024 || k > vocab || vocab > INT_MAX)
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "top_candidates: k = %d over a vocabulary of %lld", k, (long long)vocab);
    if (edit_count < 0 || (edit_count > 0 && !edits))
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "top_candidates: %lld edits", (long long)edit_count);
    for (int64_t i = 0; i < edit_count; i++)
        if (edits[i].row < 0 || edits[i].row >= rows || edits[i].id < 0 || edits[i].id >= vocab)
            return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "top_candidates: edit %lld at row %d, id %d is outside (%lld, %lld)",
                        (long long)i, edits[i].row, edits[i].id, (long long)rows, (long long)vocab);
    const size_t count = (size_t)(rows * k);
    void *dev_inv_t = nullptr;
    if (inv_temperature) {
        int32_t status = upload_scratch(ctx, inv_temperature, (size_t)rows * 4, &dev_inv_t);
        if (status != PETREL_OK) return status;
    }
    // One allocation: ids, values, log-sum-exps, then (with edits) the fp32 copy of the rows and
    // the edits themselves (copied straight from the caller's memory: the call waits for the
    // stream before it returns, so the borrowed array outlives the copy).
    const size_t widened = edit_count > 0 ? (size_t)(rows * vocab) * 4 : 0;
    const size_t edit_bytes = (size_t)edit_count * sizeof(petrel_logit_edit);
    void *dev = nullptr;
    CUDA_TRY(ctx, cudaMallocAsync(&dev, count * 8 + (size_t)rows * 4 + widened + edit_bytes, ctx->stream));
    int32_t *dev_ids = (int32_t *)dev;
    float *dev_values = (float *)(dev_ids + count), *dev_lse = dev_values + count;
    float *dev_rows = dev_lse + rows;   // fp32 edited copy (only with edits)
    petrel_logit_edit *dev_edits = (petrel_logit_edit *)(dev_rows + (edit_count > 0 ? rows * vocab : 0));
    if (edit_count > 0) {
        cudaError_t copied = cudaMemcpyAsync(dev_edits, edits, edit_bytes, cudaMemcpyHostToDevice, ctx->stream);
        if (copied != cudaSuccess) {
            cudaFreeAsync(dev, ctx->stream);
            return fail(ctx, PETREL_ERROR_CUDA, "top_candidates: copying %lld edits: %s", (long long)edit_count,
                        cudaGetErrorString(copied));
        }
        const unsigned widen_grid = grid_for(rows * vocab, 256) < 4096 ? grid_for(rows * vocab, 256) : 4096;
        with_element_type(ctx, [&](auto tag) {
            using T = typename decltype(tag)::type;
            widen_kernel<T><<<widen_grid, 256, 0, ctx->stream>>>((const T *)logits, rows * vocab, dev_rows);
            return 0;
        });
        edit_kernel<<<grid_for(edit_count, 256), 256, 0, ctx->stream>>>(dev_rows, vocab, dev_edits, edit_count);
        top_candidates_kernel<float><<<(unsigned)rows, kThreads, 0, ctx->stream>>>(
            dev_rows, vocab, k, dev_ids, dev_values, (const float *)dev_inv_t, log_sum_exp ? dev_lse : nullptr);
    } else {
        with_element_type(ctx, [&](auto tag) {
            using T = typename decltype(tag)::type;
            top_candidates_kernel<T><<<(unsigned)rows, kThreads, 0, ctx->stream>>>(
                (const T *)logits, vocab, k, dev_ids, dev_values, (const float *)dev_inv_t, log_sum_exp ? dev_lse : nullptr);
            return 0;
        });
    }
    cudaError_t launch = cudaGetLastError();
    if (launch == cudaSuccess) {
        cudaMemcpyAsync(ids, dev_ids, count * 4, cudaMemcpyDeviceToHost, ctx->stream);
        cudaMemcpyAsync(values, dev_values, count * 4, cudaMemcpyDeviceToHost, ctx->stream);
        if (log_sum_exp) cudaMemcpyAsync(log_sum_exp, dev_lse, (size_t)rows * 4, cudaMemcpyDeviceToHost, ctx->stream);
    }
    cudaFreeAsync(dev, ctx->stream);
    if (launch != cudaSuccess) return fail(ctx, PETREL_ERROR_CUDA, "top_candidates launch: %s", cudaGetErrorString(launch));
    CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));
    reset_arena(ctx);
    return PETREL_OK;
}
