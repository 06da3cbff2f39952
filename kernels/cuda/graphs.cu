// graphs.cu: decode steps as CUDA graphs. A decode step (every sequence one new token) is a fixed
// chain of ~260 launches for a given shape; only the values it reads change from step to step
// (token ids, positions, cache slots, block tables, the split-K partition size). petrel_step_begin
// uploads all of those in one copy to a buffer of the context (ctx->step), and between it and
// petrel_step_end the enqueue functions read them from there instead of their host arrays. Then:
//   - the first step of a shape runs as usual (a warm-up that also grows every scratch buffer the
//     step needs, since a graph cannot allocate);
//   - the second is captured into a graph, which is instantiated and launched;
//   - every later step of the shape launches that graph after the one upload: no host work per
//     kernel, and the launches go to the GPU as one unit.
// The shape (StepKey): the caller's buffers (owner), rows, sequences, block-table capacity (a power
// of two), split-K partitions (a power of two; blocks past a sequence's own return at once), the
// attention shape and the cache's block size. Anything else that would change the launches (a
// scratch buffer regrown, a context created with cuda_graphs = 0) drops or bypasses the graphs.
#include "internal.h"

namespace {

constexpr size_t kMaxGraphs = 256;

int64_t pow2_at_least(int64_t v, int64_t floor) {
    int64_t p = floor;
    while (p < v) p *= 2;
    return p;
}

// Grows the step's device buffer and pinned staging to `bytes` (dropping the graphs, which hold
// the old addresses).
int32_t ensure_step_buffers(petrel_context *ctx, size_t bytes) {
    StepState &st = ctx->step;
    if (!st.copied) CUDA_TRY(ctx, cudaEventCreateWithFlags(&st.copied, cudaEventDisableTiming));
    if (bytes <= st.capacity) return PETREL_OK;
    invalidate_graphs(ctx);
    CUDA_TRY(ctx, cudaStreamSynchronize(ctx->stream));
    if (st.dev) cudaFree(st.dev);
    if (st.host) cudaFreeHost(st.host);
    st.dev = nullptr;
    st.host = nullptr;
    st.capacity = 0;
    const size_t grow = (bytes * 2 + 4095) / 4096 * 4096;
    CUDA_TRY(ctx, cudaMalloc(&st.dev, grow));
    CUDA_TRY(ctx, cudaHostAlloc((void **)&st.host, grow, cudaHostAllocDefault));
    st.capacity = grow;
    return PETREL_OK;
}

}  // namespace

void invalidate_graphs(petrel_context *ctx) {
    StepState &st = ctx->step;
    if (!st.graphs.empty() && !st.capturing) cudaStreamSynchronize(ctx->stream);   // none still running
    for (auto &entry : st.graphs) cudaGraphExecDestroy(entry.second);
    st.graphs.clear();
    st.warmed.clear();
}

void abandon_step(petrel_context *ctx) {
    StepState &st = ctx->step;
    if (!st.active) return;
    if (st.capturing) {
        cudaGraph_t graph = nullptr;
        if (cudaStreamEndCapture(ctx->stream, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    }
    st.warmed.erase(st.key);   // the shape warms up again (its scratch buffers may not have grown)
    st.capturing = false;
    st.active = false;
    st.broken = false;
}

void destroy_step_state(petrel_context *ctx) {
    StepState &st = ctx->step;
    invalidate_graphs(ctx);
    if (st.gate_up) cudaFree(st.gate_up);
    if (st.dev) cudaFree(st.dev);
    if (st.host) cudaFreeHost(st.host);
    if (st.copied) cudaEventDestroy(st.copied);
    st = StepState();
}

extern "C" {

int32_t petrel_step_begin(petrel_context *ctx, uint64_t owner, const int32_t *ids, const int32_t *positions, int64_t n,
                          const petrel_attn_seq *seqs, int64_t seq_count, int64_t block_size, int64_t heads,
                          int64_t kv_heads, int64_t head_dim, const float *inv_freq, const int32_t *rows,
                          int64_t row_count, int32_t *action) {
    StepState &st = ctx->step;
    *action = PETREL_STEP_INELIGIBLE;
    if (st.active) return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "step_begin: a step is already open");
    if (!st.enabled || n <= 0 || seq_count != n || row_count <= 0 || row_count > n || block_size <= 0 ||
        !step_attention_applies(heads, kv_heads, head_dim))
        return PETREL_OK;
    // Every sequence must be one decode token, in order.
    int64_t max_blocks = 1;
    std::vector<int64_t> contexts((size_t)n);
    for (int64_t s = 0; s < n; s++) {
        const petrel_attn_seq &q = seqs[s];
        if (q.token_count != 1 || q.token_begin != s) return PETREL_OK;
        if (q.block_count * block_size < q.context_before + 1 || positions[s] < 0)
            return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "step_begin: sequence %lld's block table is too short", (long long)s);
        max_blocks = max_blocks > q.block_count ? max_blocks : q.block_count;
        contexts[(size_t)s] = q.context_before + 1;
    }
    for (int64_t r = 0; r < row_count; r++)
        if (rows[r] < 0 || rows[r] >= n) return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "step_begin: row %d out of range", rows[r]);
    int part_keys = 0, max_parts = 0;
    decode_partition(ctx, contexts, kv_heads, &part_keys, &max_parts);
    const int64_t table_cap = pow2_at_least(max_blocks, 4), parts_cap = pow2_at_least(max_parts, 1);
    const int64_t half_dim = head_dim / 2;

    // Layout (int32 words): seqs (4 each, 16-byte aligned first) | ids | positions | slots | rows |
    // decode indices | dyn (4) | inv_freq (float bits) | tables (table_cap each).
    const int64_t words = 4 * n + 4 * n + row_count + 4 + half_dim + n * table_cap;
    int32_t status = ensure_step_buffers(ctx, (size_t)words * 4);
    if (status == PETREL_OK) status = ensure_decode_scratch(ctx, n, heads, kv_heads, head_dim, parts_cap);
    if (status != PETREL_OK) return status;
    CUDA_TRY(ctx, cudaEventSynchronize(st.copied));   // the previous step's upload has left `host`
    int32_t *w = (int32_t *)st.host;
    int32_t *seq_w = w, *id_w = seq_w + 4 * n, *pos_w = id_w + n, *slot_w = pos_w + n, *row_w = slot_w + n;
    int32_t *dec_w = row_w + row_count, *dyn_w = dec_w + n, *freq_w = dyn_w + 4, *table_w = freq_w + half_dim;
    memset(table_w, 0, (size_t)(n * table_cap) * 4);
    for (int64_t s = 0; s < n; s++) {
        const petrel_attn_seq &q = seqs[s];
        seq_w[4 * s + 0] = (int32_t)s;
        seq_w[4 * s + 1] = 1;
        seq_w[4 * s + 2] = (int32_t)q.context_before;
        seq_w[4 * s + 3] = (int32_t)(s * table_cap);
        memcpy(table_w + s * table_cap, q.block_table, (size_t)q.block_count * 4);
        const int64_t pos = q.context_before;
        slot_w[s] = (int32_t)(q.block_table[pos / block_size] * block_size + pos % block_size);
        dec_w[s] = (int32_t)s;
    }
    memcpy(id_w, ids, (size_t)n * 4);
    memcpy(pos_w, positions, (size_t)n * 4);
    memcpy(row_w, rows, (size_t)row_count * 4);
    dyn_w[0] = part_keys;
    dyn_w[1] = decode_prefetch(contexts, kv_heads, head_dim);
    dyn_w[2] = dyn_w[3] = 0;
    memcpy(freq_w, inv_freq, (size_t)half_dim * 4);
    CUDA_TRY(ctx, cudaMemcpyAsync(st.dev, st.host, (size_t)words * 4, cudaMemcpyHostToDevice, ctx->stream));
    CUDA_TRY(ctx, cudaEventRecord(st.copied, ctx->stream));
    const int32_t *d = (const int32_t *)st.dev;
    st.seqs = (const int4 *)d;
    st.ids = d + 4 * n;
    st.positions = st.ids + n;
    st.slots = st.positions + n;
    st.rows = st.slots + n;
    st.decode = st.rows + row_count;
    st.dyn = st.decode + n;
    st.inv_freq = (const float *)(st.dyn + 4);
    st.tables = (const int32_t *)(st.inv_freq + half_dim);
    st.n = n;
    st.row_count = row_count;
    st.max_parts = parts_cap;
    st.half_dim = half_dim;
    st.key = StepKey(owner, n, row_count, table_cap, parts_cap, heads, kv_heads, head_dim, block_size);
    st.broken = false;

    auto graph = st.graphs.find(st.key);
    if (graph != st.graphs.end()) {
        CUDA_TRY(ctx, cudaGraphLaunch(graph->second, ctx->stream));
        st.replayed++;
        *action = PETREL_STEP_REPLAYED;
        return PETREL_OK;
    }
    st.active = true;
    st.capturing = false;
    if (st.warmed.count(st.key) && !st.failed.count(st.key)) {
        // Relaxed: other threads (a metrics scrape reading free memory) may call the runtime meanwhile.
        const cudaError_t e = cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeRelaxed);
        if (e == cudaSuccess) st.capturing = true;
        else cudaGetLastError();
    } else {
        st.warmed.insert(st.key);
    }
    *action = PETREL_STEP_ENQUEUE;
    return PETREL_OK;
}

int32_t petrel_step_end(petrel_context *ctx, int32_t *rerun) {
    StepState &st = ctx->step;
    *rerun = 0;
    if (!st.active) return fail(ctx, PETREL_ERROR_INVALID_ARGUMENT, "step_end: no step is open");
    if (!st.capturing) {
        st.active = false;
        return PETREL_OK;
    }
    st.capturing = false;
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(ctx->stream, &graph);
    cudaGraphExec_t exec = nullptr;
    if (e == cudaSuccess && !st.broken) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess || st.broken || !exec) {
        // Nothing ran: the caller enqueues the step once more, uncaptured (the scratch buffers grow
        // then), and this shape is captured again on its next step unless capturing itself failed.
        cudaGetLastError();
        if (exec) cudaGraphExecDestroy(exec);
        if (e != cudaSuccess) st.failed.insert(st.key);
        st.broken = false;
        *rerun = 1;   // st.active stays set: the rerun reads the same upload
        return PETREL_OK;
    }
    st.active = false;
    // A server whose batch sizes wander keeps at most kMaxGraphs; past that it starts over.
    if (st.graphs.size() >= kMaxGraphs) invalidate_graphs(ctx);
    st.graphs[st.key] = exec;
    st.captured++;
    CUDA_TRY(ctx, cudaGraphLaunch(exec, ctx->stream));
    return PETREL_OK;
}

void petrel_graphs_clear(petrel_context *ctx) {
    if (ctx) invalidate_graphs(ctx);
}

void petrel_graph_counts(petrel_context *ctx, int64_t *captured, int64_t *replayed) {
    *captured = ctx->step.captured;
    *replayed = ctx->step.replayed;
}

}  // extern "C"
