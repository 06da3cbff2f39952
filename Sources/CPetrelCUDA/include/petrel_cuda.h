// petrel_cuda.h: the C ABI of libpetrel_cuda.so (kernels/cuda), Petrel's CUDA backend.
//
// Plain C only: opaque handles, sized integers, int status codes (0 = success). No C++ type or
// exception crosses this boundary. Swift never links the library: CUDACompute dlopens it and
// resolves every function below by name into the matching `<name>_fn` pointer type.
//
// Ownership: a `petrel_context *` is created by petrel_context_create and owned by the caller
// until petrel_context_destroy. Device pointers (`void *dev`, `const void *dev`) are addresses in
// GPU memory handed out by petrel_buffer_alloc; the caller owns each one until it passes it to
// petrel_buffer_free on the same context. Host pointers are borrowed for the duration of the
// call only: the library copies what it needs before returning and never keeps them. Strings
// returned by the library are owned by the library (the context) and valid until the next call
// on that context.
//
// Streams: every `_enqueue` function only queues work on the context's one stream and returns;
// petrel_context_synchronize and petrel_tensor_download wait for it. A context is not
// thread-safe except petrel_buffer_free, which may be called from any thread.
//
// Element types: every device tensor of a context (weights after upload, activations, the KV
// cache, logits) is of the context's element type: IEEE fp16 (the default) or bf16, chosen once
// by petrel_context_set_dtype right after the context is created. Both are 2 bytes an element;
// arithmetic inside the kernels is fp32 either way. Shapes are row-major; `(n, k)` means n rows
// of k elements.
#ifndef PETREL_CUDA_H
#define PETREL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PETREL_EXPORT __attribute__((visibility("default")))
#else
#define PETREL_EXPORT
#endif

// Declares `ret name args;` and the pointer type `name##_fn` that dlsym results are cast to.
#define PETREL_FN(ret, name, args) \
    typedef ret (*name##_fn) args;  \
    PETREL_EXPORT ret name args;

// 5: petrel_context_set_dtype (bf16 contexts).
// 6: decode steps as CUDA graphs (petrel_step_begin / petrel_step_end).
// 7: petrel_matmul_add_enqueue, petrel_rmsnorm_matmul_enqueue,
//    petrel_rmsnorm_matmul_swiglu_enqueue.
// 8: petrel_context_create takes petrel_context_options; the library reads no environment.
// 9: petrel_add_rmsnorm_enqueue removed (no caller: the residual add is in the matmul's epilogue).
// 10: weight-only matrices: the five matmuls take a `const petrel_wo_desc *`; petrel_buffer_upload,
//     petrel_weights_random_wo.
// 11: device faults: petrel_context_recover, PETREL_ERROR_CONTEXT_LOST; petrel_debug_fail_alloc_after
//     (the self-test's injected allocation failure).
// 12: petrel_columns_gather_enqueue (GPTQ act-order inputs gathered on the device).
#define PETREL_ABI_VERSION 12

enum {
    PETREL_OK = 0,
    PETREL_ERROR_CUDA = 1,          // a CUDA runtime call failed (message: petrel_context_last_error)
    PETREL_ERROR_CUBLAS = 2,        // a cuBLAS call failed
    PETREL_ERROR_OUT_OF_MEMORY = 3,
    PETREL_ERROR_INVALID_ARGUMENT = 4,
    PETREL_ERROR_UNSUPPORTED = 5,   // a dtype or shape this build has no kernel for
    PETREL_ERROR_CONTEXT_LOST = 6,  // a sticky CUDA error (a kernel fault): the context can never be used again
};

// Weight element types accepted by petrel_weights_upload (and, F16 or BF16, by
// petrel_context_set_dtype); values match GGML / Compute.DType.
enum {
    PETREL_DTYPE_F32 = 0,
    PETREL_DTYPE_F16 = 1,
    PETREL_DTYPE_Q4_0 = 2,
    PETREL_DTYPE_Q4_1 = 3,
    PETREL_DTYPE_Q8_0 = 8,
    PETREL_DTYPE_BF16 = 30,
};

typedef struct petrel_context petrel_context;  // opaque: device, stream, cuBLAS handle, pools

// A weight-only quantized matrix (W8A16 / W4A16), as Compute.WeightOnlyFormat lays it out
// (Sources/Compute/WeightOnly.swift defines it): each of its rows is `row_bytes` bytes: k * bits / 8
// bytes of unsigned codes u in chunk order, G = ceil(k / group_size) fp16 scales s (G = 1 when
// group_size is 0), G fp16 zeros z when has_zeros (else z = 128 for 8 bits, 8 for 4 bits), zero
// padding to a multiple of 16. Column j is (u - z) * s with the s and z of group j / group_size.
// k is a multiple of 16 (8 bits) or 32 (4 bits), group_size 0 or a multiple of that.
typedef struct {
    int32_t bits;         // 8 or 4
    int32_t group_size;   // columns per scale (and zero); 0: one per row
    int32_t has_zeros;    // nonzero: the zeros follow the scales
    int64_t row_bytes;    // bytes per row, WeightOnlyFormat.rowBytes(columns: k)
} petrel_wo_desc;

// What a context is created with, fixed for its life. The caller sets `size` to
// sizeof(petrel_context_options) as it was compiled: the library reads only the fields that fit in
// `size` and takes the default for any other, so fields can be added at the end.
typedef struct {
    uint32_t size;
    int32_t cuda_graphs;   // nonzero (default): decode steps captured and replayed as CUDA graphs (petrel_step_begin)
    int32_t pdl;           // nonzero (default): programmatic dependent launch between the decode chain's kernels
} petrel_context_options;

// One sequence of a ragged attention batch (mirrors Compute.AttentionSequence).
typedef struct {
    int64_t token_begin;         // first row of this sequence in qkv / out
    int64_t token_count;         // new tokens of this sequence in this step
    int64_t context_before;      // tokens already in the cache
    const int32_t *block_table;  // host, borrowed for the call: blocks covering the whole context
    int64_t block_count;         // entries in block_table
} petrel_attn_seq;

// One change to one logit before token selection (penalties and masks, computed by the host,
// mirrors Compute.LogitEdit): masked != 0 → -inf; else v → (v > 0 ? v / repetition : v * repetition)
// when repetition != 1, then v - subtract; fp32, correctly rounded, in this order.
typedef struct {
    int32_t row;
    int32_t id;
    float repetition;
    float subtract;
    int32_t masked;
} petrel_logit_edit;

// ---- versions, contexts, errors

// The ABI version this library was built with (PETREL_ABI_VERSION).
PETREL_FN(int32_t, petrel_abi_version, (void))
// Creates a context on CUDA device `device` with `options` (borrowed; NULL: the defaults): one
// stream, a cuBLAS handle, a stream-ordered memory pool, pinned staging memory. *out receives a
// context the caller must destroy. On failure *out is NULL and `error` (caller-owned,
// `error_capacity` bytes) holds a message.
PETREL_FN(int32_t, petrel_context_create, (int32_t device, const petrel_context_options *options, petrel_context **out,
                                           char *error, size_t error_capacity))
// Waits for queued work, then frees everything the context owns. NULL is allowed.
PETREL_FN(void, petrel_context_destroy, (petrel_context *ctx))
// Sets the context's element type: PETREL_DTYPE_F16 (the default) or PETREL_DTYPE_BF16; any other
// value fails with PETREL_ERROR_UNSUPPORTED (and a message). Call it right after
// petrel_context_create, before any buffer is made: from then on every device tensor of the
// context, and every function below that reads or writes one, is of that type (buffers made
// before the call are not converted).
PETREL_FN(int32_t, petrel_context_set_dtype, (petrel_context *ctx, int32_t dtype))
// Message of the last failure on this context (owned by the context; "" when none).
PETREL_FN(const char *, petrel_context_last_error, (petrel_context *ctx))
// Waits until all queued work is done; reports asynchronous kernel errors.
PETREL_FN(int32_t, petrel_context_synchronize, (petrel_context *ctx))
// After a failed call: closes a decode step left open (its capture dropped), clears a
// recoverable CUDA error and waits for queued work. PETREL_OK: the context can be used again.
// PETREL_ERROR_CONTEXT_LOST (with a message): the CUDA context holds a sticky error, every later
// call fails, and with the CUDA runtime the device is lost to this process until it exits.
PETREL_FN(int32_t, petrel_context_recover, (petrel_context *ctx))
// For `petrel selftest` only (never called by the server): the petrel_buffer_alloc call after the
// next `count` successful ones fails once with PETREL_ERROR_OUT_OF_MEMORY, as if the device memory
// had run out; a negative count disarms it.
PETREL_FN(void, petrel_debug_fail_alloc_after, (petrel_context *ctx, int64_t count))
// Device facts: its name into `name` (caller-owned, `name_capacity` bytes), total and free
// memory in bytes, multiprocessor count.
PETREL_FN(int32_t, petrel_device_describe, (petrel_context *ctx, char *name, size_t name_capacity,
                                            int64_t *total_bytes, int64_t *free_bytes, int32_t *sm_count))

// The device's UUID as nvidia-smi and Triton's gpu_uuid label print it ("GPU-xxxxxxxx-xxxx-...")
// into `uuid` (caller-owned, `capacity` bytes, at least 41). Safe to call from any thread.
PETREL_FN(int32_t, petrel_device_uuid, (petrel_context *ctx, char *uuid, size_t capacity))

// ---- memory

// *out receives `bytes` of device memory (256-byte aligned) from the context's pool, ordered on
// its stream; the caller owns it until petrel_buffer_free.
PETREL_FN(int32_t, petrel_buffer_alloc, (petrel_context *ctx, size_t bytes, void **out))
// Returns a buffer to the pool (stream-ordered: queued work that uses it finishes first).
PETREL_FN(void, petrel_buffer_free, (petrel_context *ctx, void *dev))
// Sets `bytes` bytes at dev to `value` (queued).
PETREL_FN(int32_t, petrel_buffer_fill, (petrel_context *ctx, void *dev, int32_t value, size_t bytes))
// Copies `bytes` between device buffers (queued; the ranges must not overlap).
PETREL_FN(int32_t, petrel_buffer_copy, (petrel_context *ctx, void *dst_dev, const void *src_dev, size_t bytes))

// ---- host <-> device

// Converts `count` elements of `dtype` at `host` (borrowed; quantized types: count is a
// multiple of 32, blocks as in GGML) to the context's element type (fp16 or bf16) at dst_dev
// (count elements): fp16 into an fp16 context and bf16 into a bf16 one are copied exactly, every
// other conversion rounds to nearest even. Returns after the host bytes have been read.
PETREL_FN(int32_t, petrel_weights_upload, (petrel_context *ctx, int32_t dtype, const void *host, int64_t count, void *dst_dev))
// Fills `count` elements of the context's element type (fp16 or bf16) at dst_dev with uniform
// values in [-amplitude, amplitude] from a counter-based generator keyed by `seed` (the same
// values for either type, then rounded to it; queued). For speed measurements with random weights.
PETREL_FN(int32_t, petrel_weights_random, (petrel_context *ctx, void *dst_dev, int64_t count, uint64_t seed, float amplitude))
// Copies `bytes` bytes at `host` (borrowed) to dst_dev as they are: a weight-only matrix's rows
// (rows x petrel_wo_desc.row_bytes). Returns after the host bytes have been read.
PETREL_FN(int32_t, petrel_buffer_upload, (petrel_context *ctx, const void *host, size_t bytes, void *dst_dev))
// Fills a weight-only matrix of `rows` rows of k columns in the layout `wo` (borrowed) at dst_dev
// (rows x wo->row_bytes bytes) with random codes from a counter-based generator keyed by `seed`,
// scales in [amplitude, 2 amplitude] / maxcode (so values stay near [-amplitude, amplitude]), and,
// with has_zeros, integer zeros in the middle half of the code range (queued). For speed
// measurements with random weights.
PETREL_FN(int32_t, petrel_weights_random_wo, (petrel_context *ctx, void *dst_dev, int64_t rows, int64_t k,
                                              const petrel_wo_desc *wo, uint64_t seed, float amplitude))
// Waits for queued work, then writes `count` elements of the context's element type (fp16 or
// bf16) at src_dev to `host` (caller-owned, `count` floats) as float32.
PETREL_FN(int32_t, petrel_tensor_download, (petrel_context *ctx, const void *src_dev, int64_t count, float *host))

// ---- operations (all queued on the context's stream; device pointers are of the context's
// element type, fp16 or bf16, unless stated)
//
// The matmuls' weights: with `wo` NULL, w (m, k) is of the context's element type; otherwise w is
// a weight-only matrix of m rows laid out as *wo says (borrowed for the call), 16-byte aligned, and
// the same operation runs on its dequantized values (fp32 accumulation; each weight is (u - z) * s
// in the element type, within a unit or two of it rounded once): a tensor-core GEMV for up to kWoGemvMaxRows = 4 rows (the same
// row-count independence as the fp16 GEMV), a tensor-core GEMM dequantizing in its main loop for
// mid-size batches, and a dequantization to a scratch of the context's type plus cuBLAS for large n.

// out (count, dim) = rows ids[i] of table (vocab, dim). ids: host, borrowed.
PETREL_FN(int32_t, petrel_embed_enqueue, (petrel_context *ctx, const int32_t *ids, int64_t count,
                                          const void *table, int64_t vocab, int64_t dim, void *out))
// out (n, d) = x * rsqrt(mean(x^2) + eps) * weight (d), per row, fp32 math. out may equal x.
PETREL_FN(int32_t, petrel_rmsnorm_enqueue, (petrel_context *ctx, const void *x, const void *weight,
                                            int64_t n, int64_t d, float eps, void *out))
// out (n, m) = x (n, k) . w (m, k)^T [+ bias (m)], fp32 accumulation: a streaming GEMV (one warp
// per output column) for n <= 4 rows, else a cuBLAS GEMM (fp16 or bf16 operands, fp32 compute).
// bias may be NULL. out must not alias x or w. wo: see above.
PETREL_FN(int32_t, petrel_matmul_enqueue, (petrel_context *ctx, const void *x, int64_t n, int64_t k,
                                           const void *w, const petrel_wo_desc *wo, int64_t m, const void *bias, void *out))
// Rotate-half RoPE in place on the first `heads` heads (head_dim each) of every row of x
// (n, row_stride). positions (n) and inv_freq (head_dim / 2): host, borrowed.
PETREL_FN(int32_t, petrel_rope_enqueue, (petrel_context *ctx, void *x, int64_t n, int64_t row_stride,
                                         int64_t heads, int64_t head_dim, const int32_t *positions,
                                         const float *inv_freq))
// Writes each new token's K and V (from qkv rows: heads q, kv_heads k, kv_heads v, head_dim
// each) into the paged cache, then causal attention of every new token over its sequence's
// context. With `positions` (n, host, borrowed) and `inv_freq` (head_dim / 2, host, borrowed),
// rotate-half RoPE is applied on the way: the query heads of qkv in place and the keys as they
// are written (qkv's key part is left as it was); both NULL: no rotation. k_cache / v_cache: one
// layer, (blocks, block_size, kv_heads, head_dim). seqs (seq_count): host, borrowed.
// out (n, heads * head_dim). head_dim <= 192, even.
PETREL_FN(int32_t, petrel_attention_enqueue, (petrel_context *ctx, void *qkv, int64_t heads,
                                              int64_t kv_heads, int64_t head_dim, void *k_cache, void *v_cache,
                                              int64_t block_size, const petrel_attn_seq *seqs, int64_t seq_count,
                                              const int32_t *positions, const float *inv_freq,
                                              float scale, void *out))
// out (n, f) = silu(x . gate^T) * (x . up^T), where w_gate_up (2 f, k) holds the gate rows then
// the up rows: one streaming pass for a few rows, else a cuBLAS GEMM and the SwiGLU kernel.
PETREL_FN(int32_t, petrel_matmul_swiglu_enqueue, (petrel_context *ctx, const void *x, int64_t n, int64_t k,
                                                  const void *w_gate_up, const petrel_wo_desc *wo, int64_t f, void *out))
// acc (n, m) += x (n, k) . w (m, k)^T, the fp32 sum of the product and acc rounded once (the
// streaming GEMV for a few rows, else cuBLAS with beta 1). acc must not alias x or w.
PETREL_FN(int32_t, petrel_matmul_add_enqueue, (petrel_context *ctx, const void *x, int64_t n, int64_t k, const void *w,
                                               const petrel_wo_desc *wo, int64_t m, void *acc))
// out (n, m) = rmsnorm(x) . w (m, k)^T [+ bias (m)], rmsnorm(x) = x * rsqrt(mean(x^2) + eps) * norm_w (k)
// per row, rounded to the element type. For a few rows the streaming GEMV normalises x itself (each
// block into shared memory) and `normed` is left alone; otherwise rmsnorm(x) is written to `normed`
// (n, k; scratch, not x) and multiplied from there. out must not alias x, normed or w.
PETREL_FN(int32_t, petrel_rmsnorm_matmul_enqueue, (petrel_context *ctx, const void *x, const void *norm_w, float eps,
                                                   int64_t n, int64_t k, const void *w, const petrel_wo_desc *wo, int64_t m,
                                                   const void *bias, void *normed, void *out))
// out (n, f) = silu(h . gate^T) * (h . up^T) with h = rmsnorm(x) as in petrel_rmsnorm_matmul_enqueue
// (`normed` likewise) and w_gate_up (2 f, k) as in petrel_matmul_swiglu_enqueue.
PETREL_FN(int32_t, petrel_rmsnorm_matmul_swiglu_enqueue, (petrel_context *ctx, const void *x, const void *norm_w,
                                                          float eps, int64_t n, int64_t k, const void *w_gate_up,
                                                          const petrel_wo_desc *wo, int64_t f, void *normed, void *out))
// out (n, f) = silu(gate_up[:, :f]) * gate_up[:, f:].
PETREL_FN(int32_t, petrel_swiglu_enqueue, (petrel_context *ctx, const void *gate_up, int64_t n, int64_t f, void *out))
// acc += x, `count` elements.
PETREL_FN(int32_t, petrel_add_enqueue, (petrel_context *ctx, void *acc, const void *x, int64_t count))
// out (count, d) = rows rows[i] of x (., d). rows: host, borrowed.
PETREL_FN(int32_t, petrel_rows_gather_enqueue, (petrel_context *ctx, const void *x, int64_t d,
                                                const int32_t *rows, int64_t count, void *out))
// out (n, k) = the columns order[j] of x (n, d): out[r, j] = x[r, order[j]], elements copied bit
// for bit (the input of a matrix whose columns are kept in another order: GPTQ act-order). order:
// device, k int32 values in [0, d), uploaded once by the caller (petrel_buffer_upload); nothing is
// read from the host, so a decode step's graph may hold the call. out must not alias x.
PETREL_FN(int32_t, petrel_columns_gather_enqueue, (petrel_context *ctx, const void *x, int64_t n, int64_t d,
                                                   const int32_t *order, int64_t k, void *out))

// ---- sampling on the device

// For each of `rows` rows of logits (rows, vocab; the context's element type), after `edits`
// (edit_count entries, host, borrowed; at most one per row and id; NULL when edit_count is 0: the
// rows are then read as they are, else from an fp32 copy with the edits applied — `logits` itself
// is never changed): its k best entries in order (value descending, ties to the lower id): ids
// into `ids` and values into `values` (host, caller-owned, rows * k each), and, unless NULL, each
// row's log(sum(exp(logits * inv_temperature[row]))) into `log_sum_exp` (rows; inv_temperature:
// host, borrowed, rows values, or NULL for 1). Waits for the stream: this is a step's only copy
// back when every row is sampled on the device.
PETREL_FN(int32_t, petrel_top_candidates, (petrel_context *ctx, const void *logits, int64_t rows, int64_t vocab,
                                           int32_t k, const float *inv_temperature, const petrel_logit_edit *edits,
                                           int64_t edit_count, int32_t *ids, float *values, float *log_sum_exp))

// ---- decode steps as CUDA graphs

// What petrel_step_begin tells the caller to do.
enum {
    PETREL_STEP_REPLAYED = 0,     // the step's graph was launched: enqueue nothing, do not call petrel_step_end
    PETREL_STEP_ENQUEUE = 1,      // enqueue the step's operations, then call petrel_step_end
    PETREL_STEP_INELIGIBLE = 2,   // not a step a graph can serve (or graphs are off): run it as usual
};

// Opens a decode step: every sequence has one new token (token_begin = its index, token_count =
// 1), `rows` (row_count, the rows whose logits are wanted) index them. Uploads the step's inputs
// (ids, positions, seqs with their block tables, inv_freq of head_dim / 2, rows; all host,
// borrowed) in one copy; until petrel_step_end, petrel_embed_enqueue, petrel_rows_gather_enqueue
// and petrel_attention_enqueue read them from that upload (their host arrays must hold the same
// values) and every other enqueue must get the same device buffers whenever `owner` (any number
// naming the caller's set of buffers) is the same. The first step of a shape runs its operations;
// the second is captured into a CUDA graph and launched by petrel_step_end; later steps of the
// shape launch that graph here (*action = PETREL_STEP_REPLAYED). A context created with
// cuda_graphs = 0, or a step that is not pure decode, gives PETREL_STEP_INELIGIBLE.
PETREL_FN(int32_t, petrel_step_begin, (petrel_context *ctx, uint64_t owner, const int32_t *ids, const int32_t *positions,
                                       int64_t n, const petrel_attn_seq *seqs, int64_t seq_count, int64_t block_size,
                                       int64_t heads, int64_t kv_heads, int64_t head_dim, const float *inv_freq,
                                       const int32_t *rows, int64_t row_count, int32_t *action))
// Closes the step opened with PETREL_STEP_ENQUEUE: when it was being captured, instantiates the
// graph and launches it. *rerun = 1: the capture could not be used and nothing ran; enqueue the
// same operations once more, then call petrel_step_end again.
PETREL_FN(int32_t, petrel_step_end, (petrel_context *ctx, int32_t *rerun))
// Drops every step graph (call before freeing or replacing buffers a graph's owner used).
PETREL_FN(void, petrel_graphs_clear, (petrel_context *ctx))
// Graphs captured and replays launched on this context so far.
PETREL_FN(void, petrel_graph_counts, (petrel_context *ctx, int64_t *captured, int64_t *replayed))

#ifdef __cplusplus
}
#endif
#endif
