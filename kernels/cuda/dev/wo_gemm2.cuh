// dev/wo_gemm2.cuh: a candidate weight-only GEMM for 5..511 activation rows (decode batches and
// small prefills), against weight_only.cu's wo_gemm_kernel (2-3x slower than fp16 cuBLAS on an
// H200 at every size it was timed). What changes:
//   - long k-tiles: 256 columns a stage, so each row contributes 256 contiguous bytes (8 bits) or
//     128 (4 bits) a stage and a warp's cp.async covers one or two rows' runs (the old kernel read
//     64 bytes a row a stage: every load of a warp touched 8 rows);
//   - no scale windows in shared memory: a lane reads its rows' scales and zeros through L1
//     (per-channel: once, before the loop);
//   - 64 weight rows x 8*NT tokens a block (NT n8 tiles, 1..8, picked from n: small batches get
//     small x tiles (and one n8 tile four stages), so two blocks fit an SM up to 32 tokens); 8 warps = 4 row tiles x 2
//     halves of the k-tile, the halves added in shared memory in a fixed order at the end;
//   - bank-conflict-free shared layouts: code rows padded to put rows g and g + 1 of a quarter-warp
//     16 banks apart; activation rows padded (8 bits) or swizzled (4 bits) so a quarter-warp's
//     16-byte reads fall in distinct banks.
// The fragments are weight_only.cu's (mma_chunk: a lane holds whole 16-byte chunks, chunk c of
// every four, and steps through their words). Split-K over a cluster with the distributed-shared-
// memory reduction of the old kernel, so every output is summed in the same order every time.
//
// Not in the library: bench_wo times it ("gemm2 (dev candidate)") and checks it against the CPU.
#pragma once

namespace {

constexpr int kG2Threads = 256;   // 8 warps
constexpr int kG2Rows = 64;       // weight rows a block (SwiGLU: 32 gate + 32 up)
constexpr int kG2Cols = 256;      // columns a k-tile
constexpr int kG2MaxSplit = 8;

template <int BITS> struct G2Layout {
    static constexpr int kChunks = kG2Cols / (BITS == 8 ? 16 : 32);   // 16-byte chunks a row a k-tile: 16 or 8
    static constexpr int kCodeStride = kChunks * 16 + 64;             // 320 or 192 bytes: 16 banks between rows
    static constexpr int kXStride = BITS == 8 ? 528 : 544;            // bytes an activation row (512 + padding)
    static constexpr int kCodeBytes = kG2Rows * kCodeStride;
    template <int NT> static __host__ __device__ constexpr int stage_bytes() { return kCodeBytes + 8 * NT * kXStride; }
    static constexpr int kOutStride = kG2Rows + 4;   // fp32 sums, [token][tile row]
    // Where 16-byte unit u of an activation row goes: 4 bits swap units in pairs in every other
    // group of eight, so the four chunks of a round (units 4c + v) spread over the banks.
    static __device__ __forceinline__ int x_unit(int u) { return BITS == 8 ? u : (u ^ ((u >> 3) & 1)); }
};

template <typename T, int BITS, int MODE, int NT, int STAGES>
__global__ void __launch_bounds__(kG2Threads) wo_gemm2_kernel(const T *__restrict__ x, const uint8_t *__restrict__ w, WoMatrix q,
                                                              const T *__restrict__ bias, int64_t n, int64_t k, int64_t cols,
                                                              T *__restrict__ out) {
    using L = G2Layout<BITS>;
    constexpr int CH = BITS == 8 ? 16 : 32, XV = CH / 8, KC = L::kChunks;
    constexpr int ROUNDS = KC / 8;   // rounds of four chunks in a warp's half of a k-tile
    constexpr bool SWIGLU = MODE == kGemvSwiGLU;
    constexpr int kOutputs = SWIGLU ? kG2Rows / 2 : kG2Rows;
    constexpr int BN = 8 * NT;
    extern __shared__ __align__(16) unsigned char smem[];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, c = lane % 4;
    const int mt = warp % 4, kh = warp / 4;
    const int64_t out0 = (int64_t)blockIdx.x * kOutputs, n0 = (int64_t)blockIdx.y * BN;
    const int64_t chunks = k / CH, ktiles = (chunks + KC - 1) / KC;
    const int64_t per_split = (ktiles + gridDim.z - 1) / gridDim.z;
    const int64_t kt0 = blockIdx.z * per_split, kt1 = kt0 + per_split < ktiles ? kt0 + per_split : ktiles;
    const int active = (int)((n - n0 + 7) / 8 < NT ? (n - n0 + 7) / 8 : NT);   // n8 tiles with tokens

    // Matrix row of tile row rho (0..63), or -1 past the matrix.
    auto weight_row = [&](int rho) -> int64_t {
        if (SWIGLU) {
            const int64_t f = out0 + (rho & 31);
            return f < cols ? f + (rho >= 32 ? cols : 0) : -1;
        }
        const int64_t r = out0 + rho;
        return r < cols ? r : -1;
    };
    auto stage_ptr = [&](int64_t kt) { return smem + (int)((kt - kt0) % STAGES) * L::template stage_bytes<NT>(); };
    auto load_codes = [&](int64_t kt) {
        unsigned char *codes = stage_ptr(kt);
#pragma unroll
        for (int i = 0; i < kG2Rows * KC / kG2Threads; i++) {
            const int unit = threadIdx.x + i * kG2Threads, rho = unit / KC, part = unit % KC;
            const int64_t r = weight_row(rho), ch = kt * KC + part;
            const bool ok = r >= 0 && ch < chunks;
            cp_async16(codes + rho * L::kCodeStride + part * 16, ok ? w + r * q.row_bytes + ch * 16 : w, ok);
        }
    };
    auto load_x = [&](int64_t kt) {
        unsigned char *xs = stage_ptr(kt) + L::kCodeBytes;
        constexpr int XU = kG2Cols / 8;   // 16-byte units an activation row
        for (int unit = threadIdx.x; unit < 8 * active * XU; unit += kG2Threads) {
            const int tok = unit / XU, u = unit % XU;
            const int64_t col = kt * kG2Cols + 8 * u;
            const bool ok = n0 + tok < n && col < k;
            cp_async16(xs + tok * L::kXStride + L::x_unit(u) * 16, ok ? x + (n0 + tok) * k + col : x, ok);
        }
    };

    // The weights are constant: their first stages are asked for before the programmatic wait.
    for (int s = 0; s < STAGES - 1; s++)
        if (kt0 + s < kt1) load_codes(kt0 + s);
    pdl_wait();
    pdl_launch_dependents();
    for (int s = 0; s < STAGES - 1; s++) {
        if (kt0 + s < kt1) load_x(kt0 + s);
        cp_async_commit();
    }

    // The lane's two rows (g and g + 8 of its row tile); rows past the matrix get s = -z s = 0, so
    // their zero-filled codes stay zeros.
    const int rho_g = 16 * mt + g;
    const int64_t rg = weight_row(rho_g), rh = weight_row(rho_g + 8);
    const uint8_t *row_g = w + (rg < 0 ? 0 : rg) * q.row_bytes, *row_h = w + (rh < 0 ? 0 : rh) * q.row_bytes;
    auto scale_of = [&](const uint8_t *row, int64_t r, int64_t grp) {
        WoScale s = {};
        if (r >= 0) s = wo_scale<T, BITS>(load_u16(row + q.code_bytes + 2 * grp), q.has_zeros ? load_u16(row + q.zero_offset + 2 * grp) : 0,
                                          q.has_zeros);
        return s;
    };
    const bool per_channel = q.chunks_per_group == 0;
    const WoScale pg = per_channel ? scale_of(row_g, rg, 0) : WoScale{}, ph = per_channel ? scale_of(row_h, rh, 0) : WoScale{};

    float d[NT][4] = {};
    for (int64_t kt = kt0; kt < kt1; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int64_t next = kt + STAGES - 1;
        if (next < kt1) {
            load_codes(next);
            load_x(next);
        }
        cp_async_commit();

        const unsigned char *codes = stage_ptr(kt), *xs = codes + L::kCodeBytes;
#pragma unroll
        for (int r = 0; r < ROUNDS; r++) {
            const int part = kh * (KC / 2) + 4 * r + c;   // the lane's chunk of the k-tile
            const int64_t ch = kt * KC + part;
            const uint4 wg = *reinterpret_cast<const uint4 *>(codes + rho_g * L::kCodeStride + part * 16);
            const uint4 wh = *reinterpret_cast<const uint4 *>(codes + (rho_g + 8) * L::kCodeStride + part * 16);
            WoScale sg = {}, sh = {};
            if (ch < chunks) {   // else the codes are zeros and so are s and -z s
                if (per_channel) {
                    sg = pg;
                    sh = ph;
                } else {
                    const int64_t grp = ch / q.chunks_per_group;
                    sg = scale_of(row_g, rg, grp);
                    sh = scale_of(row_h, rh, grp);
                }
            }
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= active) break;
                uint4 xv[XV];
                const unsigned char *xr = xs + (8 * t + g) * L::kXStride;
#pragma unroll
                for (int j = 0; j < XV; j++) xv[j] = *reinterpret_cast<const uint4 *>(xr + L::x_unit(part * XV + j) * 16);
                mma_chunk<T, BITS>(d[t], wg, wh, sg, sh, xv);
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();

    // The two halves of each row tile, added in a fixed order: [token][tile row] fp32.
    float *staged = reinterpret_cast<float *>(smem);
    auto at = [&](int t, int i) -> float & {   // d[t][i]'s place
        const int tok = 8 * t + 2 * c + (i & 1), rho = rho_g + 8 * (i >> 1);
        return staged[tok * L::kOutStride + rho];
    };
    if (kh == 1)
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int i = 0; i < 4; i++) at(t, i) = d[t][i];
    __syncthreads();
    if (kh == 0)
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int i = 0; i < 4; i++) at(t, i) = d[t][i] + at(t, i);

    cg::cluster_group cluster = cg::this_cluster();
    const unsigned split = gridDim.z, rank = blockIdx.z;
    if (split > 1) cluster.sync(); else __syncthreads();
    const int outputs = 8 * active * kOutputs;
    const int share = (outputs + split - 1) / split, first = rank * share, last = first + share < outputs ? first + share : outputs;
    for (int i = first + threadIdx.x; i < last; i += kG2Threads) {
        const int tok = i / kOutputs, o = i % kOutputs;
        const int64_t col = out0 + o;
        if (n0 + tok >= n || col >= cols) continue;
        float v = 0.f, up = 0.f;
        for (unsigned b = 0; b < split; b++) {
            const float *src = split > 1 ? cluster.map_shared_rank(staged, b) : staged;
            v += src[tok * L::kOutStride + o];
            if (SWIGLU) up += src[tok * L::kOutStride + 32 + o];
        }
        store_output<T, MODE>(out, (n0 + tok) * cols + col, v, up, bias, col);
    }
    if (split > 1) cluster.sync();   // no block leaves while another reads its shared memory
}

template <typename T, int BITS, int MODE, int NT>
cudaError_t launch_wo_gemm2(const petrel_context *ctx, const T *x, const uint8_t *w, const WoMatrix &q, const T *bias, int64_t n,
                            int64_t k, int64_t cols, T *out, int split) {
    using L = G2Layout<BITS>;
    constexpr int STAGES = NT <= 1 ? 4 : 3;
    constexpr int kStaged = 8 * NT * L::kOutStride * 4;
    constexpr int kSmem = STAGES * L::template stage_bytes<NT>() > kStaged ? STAGES * L::template stage_bytes<NT>() : kStaged;
    auto kernel = wo_gemm2_kernel<T, BITS, MODE, NT, STAGES>;
    static bool configured = false;   // per instantiation
    if (!configured) {
        const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
        if (e != cudaSuccess) return e;
        configured = true;
    }
    const int64_t outputs = MODE == kGemvSwiGLU ? kG2Rows / 2 : kG2Rows;
    const int64_t tiles = (cols + outputs - 1) / outputs * ((n + 8 * NT - 1) / (8 * NT));
    const int64_t ktiles = (k / (BITS == 8 ? 16 : 32) + L::kChunks - 1) / L::kChunks;
    if (split <= 0) {
        // Enough blocks to fill every SM as often as its shared memory allows, each split at least
        // two k-tiles.
        const int64_t per_sm = (227 * 1024) / (kSmem + 1024) < 1 ? 1 : (227 * 1024) / (kSmem + 1024);
        int64_t s = (per_sm * ctx->sm_count + tiles - 1) / tiles;
        if (s > ktiles / 2) s = ktiles / 2;
        if (s > kG2MaxSplit) s = kG2MaxSplit;
        split = s < 1 ? 1 : (int)s;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)((cols + outputs - 1) / outputs), (unsigned)((n + 8 * NT - 1) / (8 * NT)), (unsigned)split);
    config.blockDim = dim3(kG2Threads);
    config.dynamicSmemBytes = kSmem;
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
    return cudaLaunchKernelEx(&config, kernel, x, w, q, bias, n, k, cols, out);
}

// n8 tiles a block from n: the fewest that hold min(n, 64) tokens (1, 2, 4 or 8).
template <typename T, int BITS, int MODE>
cudaError_t wo_gemm2_nt(const petrel_context *ctx, const T *x, const uint8_t *w, const WoMatrix &q, const T *bias, int64_t n, int64_t k,
                        int64_t cols, T *out, int split) {
    if (n <= 8) return launch_wo_gemm2<T, BITS, MODE, 1>(ctx, x, w, q, bias, n, k, cols, out, split);
    if (n <= 16) return launch_wo_gemm2<T, BITS, MODE, 2>(ctx, x, w, q, bias, n, k, cols, out, split);
    if (n <= 32) return launch_wo_gemm2<T, BITS, MODE, 4>(ctx, x, w, q, bias, n, k, cols, out, split);
    return launch_wo_gemm2<T, BITS, MODE, 8>(ctx, x, w, q, bias, n, k, cols, out, split);
}

template <typename T, int BITS>
cudaError_t wo_gemm2(const petrel_context *ctx, int mode, const T *x, const uint8_t *w, const WoMatrix &q, const T *bias, int64_t n,
                     int64_t k, int64_t cols, T *out, int split = 0) {
    if (k % (BITS == 8 ? 16 : 32) != 0) return cudaErrorInvalidValue;
    if (mode == kGemvSwiGLU) return wo_gemm2_nt<T, BITS, kGemvSwiGLU>(ctx, x, w, q, bias, n, k, cols, out, split);
    if (mode == kGemvAdd) return wo_gemm2_nt<T, BITS, kGemvAdd>(ctx, x, w, q, bias, n, k, cols, out, split);
    return wo_gemm2_nt<T, BITS, kGemvBias>(ctx, x, w, q, bias, n, k, cols, out, split);
}

}  // namespace
