// context.cu: contexts, errors, the stream-ordered memory pool, staging, and the host <-> device
// copies (weights converted to the context's element type, fp16 or bf16, on upload; tensors of
// that type to float32 on download).
#include "internal.h"

static const size_t kArenaBytes = 64u << 20;            // pinned staging and device scratch, each
static const size_t kCublasWorkspaceBytes = 32u << 20;

int32_t fail(petrel_context *ctx, int32_t status, const char *format, ...) {
    if (ctx) {
        va_list args;
        va_start(args, format);
        vsnprintf(ctx->error, sizeof ctx->error, format, args);
        va_end(args);
    }
    return status;
}

void reset_arena(petrel_context *ctx) {
    ctx->arena_used = 0;
    ctx->positions_cache.dev = nullptr;
    ctx->inv_freq_cache.dev = nullptr;
    ctx->attention_cache.dev = nullptr;
}

int32_t reserve_arena(petrel_context *ctx, size_t bytes) {
    if (ctx->arena_used + bytes > ctx->arena_bytes) {
        CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));
        reset_arena(ctx);
    }
    return PETREL_OK;
}

int32_t upload_scratch(petrel_context *ctx, const void *host, size_t bytes, void **out) {
    size_t rounded = (bytes + 255) & ~(size_t)255;
    if (rounded > ctx->arena_bytes)
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "a per-call input of %zu bytes exceeds the %zu-byte staging arena",
                    bytes, ctx->arena_bytes);
    if (ctx->arena_used + rounded > ctx->arena_bytes) {
        // The arena is full: wait for the queued copies that read it, then start over.
        CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));
        reset_arena(ctx);
    }
    size_t offset = ctx->arena_used;
    ctx->arena_used += rounded;
    if (bytes > 0) {
        memcpy(ctx->staging + offset, host, bytes);
        CUDA_TRY(ctx, cudaMemcpyAsync(ctx->scratch + offset, ctx->staging + offset, bytes, cudaMemcpyHostToDevice, ctx->stream));
    }
    *out = ctx->scratch + offset;
    return PETREL_OK;
}

int32_t upload_cached(petrel_context *ctx, UploadCache &cache, const void *host, size_t bytes, void **out) {
    if (cache.dev && cache.bytes.size() == bytes && memcmp(cache.bytes.data(), host, bytes) == 0) {
        *out = cache.dev;
        return PETREL_OK;
    }
    int32_t status = upload_scratch(ctx, host, bytes, out);
    if (status != PETREL_OK) return status;
    cache.bytes.assign((const unsigned char *)host, (const unsigned char *)host + bytes);
    cache.dev = *out;
    return PETREL_OK;
}

extern "C" {

int32_t petrel_abi_version(void) { return PETREL_ABI_VERSION; }

int32_t petrel_context_create(int32_t device, const petrel_context_options *options, petrel_context **out, char *error,
                              size_t error_capacity) {
    *out = nullptr;
    petrel_context_options o = {sizeof(petrel_context_options), 1, 1};   // the defaults
    if (options) {
        if (options->size < sizeof options->size) {
            if (error && error_capacity) snprintf(error, error_capacity, "context_create: options of %u bytes", options->size);
            return PETREL_ERROR_INVALID_ARGUMENT;
        }
        memcpy(&o, options, options->size < sizeof o ? options->size : sizeof o);
    }
    petrel_context *ctx = new petrel_context();
    ctx->device = device;
    int32_t status = PETREL_OK;
    cudaDeviceProp props;
    uint64_t threshold = UINT64_MAX;
    auto check = [&](cudaError_t e, const char *what) {
        if (e != cudaSuccess && status == PETREL_OK)
            status = fail(ctx, PETREL_ERROR_CUDA, "%s: %s", what, cudaGetErrorString(e));
        return e == cudaSuccess;
    };
    if (check(cudaSetDevice(device), "cudaSetDevice") &&
        check(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties") &&
        check(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "cudaStreamCreate") &&
        check(cudaDeviceGetDefaultMemPool(&ctx->pool, device), "cudaDeviceGetDefaultMemPool") &&
        // Keep freed memory in the pool: activations are allocated and freed every forward pass.
        check(cudaMemPoolSetAttribute(ctx->pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute") &&
        check(cudaHostAlloc((void **)&ctx->staging, kArenaBytes, cudaHostAllocDefault), "cudaHostAlloc") &&
        check(cudaMalloc((void **)&ctx->scratch, kArenaBytes), "cudaMalloc(scratch)") &&
        check(cudaMalloc(&ctx->cublas_workspace, kCublasWorkspaceBytes), "cudaMalloc(cublas workspace)")) {
        ctx->arena_bytes = kArenaBytes;
        ctx->sm_count = props.multiProcessorCount;
        ctx->pdl = o.pdl != 0;
        ctx->step.enabled = o.cuda_graphs != 0;
        if (cublasCreate(&ctx->cublas) != CUBLAS_STATUS_SUCCESS ||
            cublasSetStream(ctx->cublas, ctx->stream) != CUBLAS_STATUS_SUCCESS ||
            cublasSetWorkspace(ctx->cublas, ctx->cublas_workspace, kCublasWorkspaceBytes) != CUBLAS_STATUS_SUCCESS) {
            status = fail(ctx, PETREL_ERROR_CUBLAS, "cublasCreate / cublasSetStream / cublasSetWorkspace failed");
        }
    }
    if (status != PETREL_OK) {
        if (error && error_capacity) snprintf(error, error_capacity, "%s", ctx->error);
        petrel_context_destroy(ctx);
        return status;
    }
    *out = ctx;
    return PETREL_OK;
}

void petrel_context_destroy(petrel_context *ctx) {
    if (!ctx) return;
    if (ctx->stream) cudaStreamSynchronize(ctx->stream);
    destroy_step_state(ctx);
    if (ctx->cublas) cublasDestroy(ctx->cublas);
    if (ctx->cublas_workspace) cudaFree(ctx->cublas_workspace);
    if (ctx->scratch) cudaFree(ctx->scratch);
    if (ctx->decode_partials) cudaFree(ctx->decode_partials);
    if (ctx->decode_counters) cudaFree(ctx->decode_counters);
    if (ctx->prefill_scratch) cudaFree(ctx->prefill_scratch);
    if (ctx->wo_scratch) cudaFree(ctx->wo_scratch);
    if (ctx->staging) cudaFreeHost(ctx->staging);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    delete ctx;
}

int32_t petrel_context_set_dtype(petrel_context *ctx, int32_t dtype) {
    if (!ctx) return PETREL_ERROR_INVALID_ARGUMENT;
    if (dtype != PETREL_DTYPE_F16 && dtype != PETREL_DTYPE_BF16)
        return fail(ctx, PETREL_ERROR_UNSUPPORTED, "context_set_dtype: dtype %d (supported: %d = fp16, %d = bf16)", dtype,
                    PETREL_DTYPE_F16, PETREL_DTYPE_BF16);
    ctx->dtype = dtype;
    return PETREL_OK;
}

const char *petrel_context_last_error(petrel_context *ctx) { return ctx ? ctx->error : "no context"; }

int32_t petrel_context_synchronize(petrel_context *ctx) {
    CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));
    reset_arena(ctx);
    return PETREL_OK;
}

int32_t petrel_context_recover(petrel_context *ctx) {
    if (!ctx) return PETREL_ERROR_INVALID_ARGUMENT;
    abandon_step(ctx);
    cudaGetLastError();   // a recoverable error is cleared here; a sticky one stays and fails the calls below
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess)
        return fail(ctx, PETREL_ERROR_CONTEXT_LOST, "the CUDA context is lost: %s", cudaGetErrorString(e));
    reset_arena(ctx);
    return PETREL_OK;
}

void petrel_debug_fail_alloc_after(petrel_context *ctx, int64_t count) {
    if (ctx) ctx->debug_allocs_before_failure = count < 0 ? -1 : count;
}

int32_t petrel_device_uuid(petrel_context *ctx, char *uuid, size_t capacity) {
    if (!uuid || capacity < 41) return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "device_uuid: need 41 bytes");
    cudaDeviceProp props;
    CUDA_TRY(ctx, cudaGetDeviceProperties(&props, ctx->device));
    const unsigned char *b = (const unsigned char *)props.uuid.bytes;
    snprintf(uuid, capacity, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return PETREL_OK;
}

int32_t petrel_device_describe(petrel_context *ctx, char *name, size_t name_capacity, int64_t *total_bytes,
                               int64_t *free_bytes, int32_t *sm_count) {
    cudaDeviceProp props;
    CUDA_TRY(ctx, cudaGetDeviceProperties(&props, ctx->device));
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(ctx, cudaMemGetInfo(&free_b, &total_b));
    if (name && name_capacity) snprintf(name, name_capacity, "%s", props.name);
    if (total_bytes) *total_bytes = (int64_t)total_b;
    if (free_bytes) *free_bytes = (int64_t)free_b;
    if (sm_count) *sm_count = props.multiProcessorCount;
    return PETREL_OK;
}

// ---- memory

int32_t petrel_buffer_alloc(petrel_context *ctx, size_t bytes, void **out) {
    *out = nullptr;
    if (bytes == 0) bytes = 256;
    if (ctx->debug_allocs_before_failure >= 0 && ctx->debug_allocs_before_failure-- == 0)
        return fail(ctx, PETREL_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes of device memory: injected by petrel_debug_fail_alloc_after",
                    bytes);
    cudaError_t e = cudaMallocFromPoolAsync(out, bytes, ctx->pool, ctx->stream);
    if (e == cudaErrorMemoryAllocation) {
        // Give cached blocks back to the driver and try once more.
        cudaGetLastError();
        cudaStreamSynchronize(ctx->stream);
        cudaMemPoolTrimTo(ctx->pool, 0);
        e = cudaMallocFromPoolAsync(out, bytes, ctx->pool, ctx->stream);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return fail(ctx, PETREL_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes of device memory (%zu of %zu free): %s",
                    bytes, free_b, total_b, cudaGetErrorString(e));
    }
    return PETREL_OK;
}

void petrel_buffer_free(petrel_context *ctx, void *dev) {
    if (ctx && dev) cudaFreeAsync(dev, ctx->stream);
}

int32_t petrel_buffer_fill(petrel_context *ctx, void *dev, int32_t value, size_t bytes) {
    CUDA_TRY(ctx, cudaMemsetAsync(dev, value, bytes, ctx->stream));
    return PETREL_OK;
}

int32_t petrel_buffer_copy(petrel_context *ctx, void *dst_dev, const void *src_dev, size_t bytes) {
    CUDA_TRY(ctx, cudaMemcpyAsync(dst_dev, src_dev, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
    return PETREL_OK;
}

}  // extern "C"

// ---- conversions (T: the context's element type, half or __nv_bfloat16; math in fp32)

template <typename T>
__global__ void convert_f32_kernel(const float *src, T *dst, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_float<T>(src[i]);
}

// bf16 bits -> T (exact as a float; a bf16 context copies bf16 weights as they are instead).
template <typename T>
__global__ void convert_bf16_kernel(const uint16_t *src, T *dst, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_float<T>(__uint_as_float((uint32_t)src[i] << 16));
}

// fp16 -> T (a bf16 context; an fp16 context copies fp16 weights as they are).
template <typename T>
__global__ void convert_f16_kernel(const half *src, T *dst, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_float<T>(__half2float(src[i]));
}

// GGML block formats, 32 elements a block: Q8_0 {half d; int8 q[32]}, Q4_0 {half d; uint8 q[16]}
// (value (nibble - 8) d), Q4_1 {half d, m; uint8 q[16]} (value nibble d + m); element j < 16 in
// the low nibble of byte j, element j + 16 in its high nibble.
template <typename T>
__global__ void convert_quant_kernel(const unsigned char *src, int32_t dtype, T *dst, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = i / 32;
        int j = (int)(i % 32);
        float v;
        if (dtype == PETREL_DTYPE_Q8_0) {
            const unsigned char *blk = src + b * 34;
            float d = __half2float(*(const half *)blk);
            v = d * (float)(int8_t)blk[2 + j];
        } else if (dtype == PETREL_DTYPE_Q4_0) {
            const unsigned char *blk = src + b * 18;
            float d = __half2float(*(const half *)blk);
            int byte = blk[2 + (j & 15)];
            v = d * (float)((j < 16 ? byte & 15 : byte >> 4) - 8);
        } else {
            const unsigned char *blk = src + b * 20;
            float d = __half2float(*(const half *)blk), m = __half2float(*(const half *)(blk + 2));
            int byte = blk[4 + (j & 15)];
            v = d * (float)(j < 16 ? byte & 15 : byte >> 4) + m;
        }
        dst[i] = from_float<T>(v);
    }
}

template <typename T>
__global__ void random_kernel(T *dst, int64_t count, uint64_t seed, float amplitude) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);   // splitmix64
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float u = (float)(z >> 40) * (1.0f / 16777216.0f);             // [0, 1)
        dst[i] = from_float<T>((2.0f * u - 1.0f) * amplitude);
    }
}

template <typename T>
__global__ void to_float_kernel(const T *src, float *dst, int64_t count) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = to_float(src[i]);
}

extern "C" {

int32_t petrel_weights_upload(petrel_context *ctx, int32_t dtype, const void *host, int64_t count, void *dst_dev) {
    size_t raw;
    switch (dtype) {
    case PETREL_DTYPE_F32: raw = (size_t)count * 4; break;
    case PETREL_DTYPE_F16: case PETREL_DTYPE_BF16: raw = (size_t)count * 2; break;
    case PETREL_DTYPE_Q8_0: raw = (size_t)count / 32 * 34; break;
    case PETREL_DTYPE_Q4_0: raw = (size_t)count / 32 * 18; break;
    case PETREL_DTYPE_Q4_1: raw = (size_t)count / 32 * 20; break;
    default: return fail(ctx, PETREL_ERROR_UNSUPPORTED, "weights_upload: unknown dtype %d", dtype);
    }
    if (dtype != PETREL_DTYPE_F32 && dtype != PETREL_DTYPE_F16 && dtype != PETREL_DTYPE_BF16 && count % 32 != 0)
        return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "weights_upload: %lld elements is not a whole number of blocks", (long long)count);
    if (count == 0) return PETREL_OK;
    if (dtype == ctx->dtype) {   // fp16 into an fp16 context, bf16 into a bf16 one: the bytes as they are
        CUDA_TRY(ctx, cudaMemcpyAsync(dst_dev, host, raw, cudaMemcpyHostToDevice, ctx->stream));
        CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));   // the host bytes are only borrowed
        return PETREL_OK;
    }
    void *tmp = nullptr;
    int32_t status = petrel_buffer_alloc(ctx, raw, &tmp);
    if (status != PETREL_OK) return status;
    CUDA_TRY(ctx, cudaMemcpyAsync(tmp, host, raw, cudaMemcpyHostToDevice, ctx->stream));
    unsigned grid = grid_for(count, 256);
    if (grid > 65536) grid = 65536;
    with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        T *dst = (T *)dst_dev;
        if (dtype == PETREL_DTYPE_F32) convert_f32_kernel<T><<<grid, 256, 0, ctx->stream>>>((const float *)tmp, dst, count);
        else if (dtype == PETREL_DTYPE_BF16) convert_bf16_kernel<T><<<grid, 256, 0, ctx->stream>>>((const uint16_t *)tmp, dst, count);
        else if (dtype == PETREL_DTYPE_F16) convert_f16_kernel<T><<<grid, 256, 0, ctx->stream>>>((const half *)tmp, dst, count);
        else convert_quant_kernel<T><<<grid, 256, 0, ctx->stream>>>((const unsigned char *)tmp, dtype, dst, count);
        return 0;
    });
    cudaError_t launched = cudaGetLastError();
    petrel_buffer_free(ctx, tmp);
    if (launched != cudaSuccess)
        return fail(ctx, PETREL_ERROR_CUDA, "weights_upload: conversion launch: %s", cudaGetErrorString(launched));
    CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));
    return PETREL_OK;
}

int32_t petrel_weights_random(petrel_context *ctx, void *dst_dev, int64_t count, uint64_t seed, float amplitude) {
    if (count == 0) return PETREL_OK;
    unsigned grid = grid_for(count, 256);
    if (grid > 65536) grid = 65536;
    with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        random_kernel<T><<<grid, 256, 0, ctx->stream>>>((T *)dst_dev, count, seed, amplitude);
        return 0;
    });
    LAUNCH_CHECK(ctx);
    return PETREL_OK;
}

int32_t petrel_tensor_download(petrel_context *ctx, const void *src_dev, int64_t count, float *host) {
    if (count == 0) return petrel_context_synchronize(ctx);
    void *tmp = nullptr;
    int32_t status = petrel_buffer_alloc(ctx, (size_t)count * 4, &tmp);
    if (status != PETREL_OK) return status;
    unsigned grid = grid_for(count, 256);
    if (grid > 65536) grid = 65536;
    with_element_type(ctx, [&](auto tag) {
        using T = typename decltype(tag)::type;
        to_float_kernel<T><<<grid, 256, 0, ctx->stream>>>((const T *)src_dev, (float *)tmp, count);
        return 0;
    });
    LAUNCH_CHECK(ctx);
    CUDA_TRY(ctx, cudaMemcpyAsync(host, tmp, (size_t)count * 4, cudaMemcpyDeviceToHost, ctx->stream));
    petrel_buffer_free(ctx, tmp);
    return petrel_context_synchronize(ctx);
}

}  // extern "C"
