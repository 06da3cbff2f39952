// CUDALibrary: libpetrel_cuda.so opened at run time with dlopen and its C ABI resolved with dlsym
// into typed function pointers (Sources/CPetrelCUDA/include/petrel_cuda.h). Swift never links
// the library or the CUDA runtime, so the package builds and runs where CUDA is absent.
import CPetrelCUDA
import Compute
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the CUDA backend could not start, worded for the command line.
public struct CUDABackendError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    /// The text of a C string the library wrote into a caller-owned buffer, up to its NUL.
    init(nulTerminated chars: [CChar]) {
        self.init(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The library's functions, resolved once. Unchecked: the dlopen handle and the C function
/// pointers never change after init.
final class CUDALibrary: @unchecked Sendable {
    let path: String
    private let handle: UnsafeMutableRawPointer

    let abiVersion: petrel_abi_version_fn
    let contextCreate: petrel_context_create_fn
    let contextSetDtype: petrel_context_set_dtype_fn
    let contextDestroy: petrel_context_destroy_fn
    let contextLastError: petrel_context_last_error_fn
    let contextSynchronize: petrel_context_synchronize_fn
    let contextRecover: petrel_context_recover_fn
    let debugFailAllocAfter: petrel_debug_fail_alloc_after_fn
    let deviceDescribe: petrel_device_describe_fn
    let bufferAlloc: petrel_buffer_alloc_fn
    let bufferFree: petrel_buffer_free_fn
    let bufferFill: petrel_buffer_fill_fn
    let bufferCopy: petrel_buffer_copy_fn
    let weightsUpload: petrel_weights_upload_fn
    let weightsRandom: petrel_weights_random_fn
    let bufferUpload: petrel_buffer_upload_fn
    let weightsRandomWO: petrel_weights_random_wo_fn
    let tensorDownload: petrel_tensor_download_fn
    let embed: petrel_embed_enqueue_fn
    let rmsNorm: petrel_rmsnorm_enqueue_fn
    let matmul: petrel_matmul_enqueue_fn
    let rope: petrel_rope_enqueue_fn
    let attention: petrel_attention_enqueue_fn
    let swiglu: petrel_swiglu_enqueue_fn
    let matmulSwiGLU: petrel_matmul_swiglu_enqueue_fn
    let topCandidates: petrel_top_candidates_fn
    let deviceUUID: petrel_device_uuid_fn
    let add: petrel_add_enqueue_fn
    let gatherRows: petrel_rows_gather_enqueue_fn
    let gatherColumns: petrel_columns_gather_enqueue_fn
    let matmulAdd: petrel_matmul_add_enqueue_fn
    let rmsNormMatmul: petrel_rmsnorm_matmul_enqueue_fn
    let rmsNormMatmulSwiGLU: petrel_rmsnorm_matmul_swiglu_enqueue_fn
    let stepBegin: petrel_step_begin_fn
    let stepEnd: petrel_step_end_fn
    let graphsClear: petrel_graphs_clear_fn
    let graphCounts: petrel_graph_counts_fn

    /// libpetrel_cuda.so next to the running executable.
    static func defaultPath() -> String {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let dir = FileManager.default.fileExists(atPath: exe.path)
            ? exe.deletingLastPathComponent().path
            : URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        return dir + "/libpetrel_cuda.so"
    }

    init(path: String) throws {
        self.path = path
        guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw CUDABackendError("--device cuda: cannot load libpetrel_cuda.so (\(reason)); build kernels/cuda on a machine with CUDA (make -C kernels/cuda) and put the library next to petrel or name it in PETREL_CUDA_LIB")
        }
        handle = h
        func resolve<T>(_ name: String, _: T.Type) throws -> T {
            guard let p = dlsym(h, name) else {
                throw CUDABackendError("--device cuda: \(path) has no symbol \(name); rebuild kernels/cuda from this source tree")
            }
            return unsafeBitCast(p, to: T.self)
        }
        abiVersion = try resolve("petrel_abi_version", petrel_abi_version_fn.self)
        let version = abiVersion()
        guard version == PETREL_ABI_VERSION else {
            throw CUDABackendError("--device cuda: \(path) speaks ABI version \(version), this petrel needs \(PETREL_ABI_VERSION); rebuild kernels/cuda")
        }
        contextCreate = try resolve("petrel_context_create", petrel_context_create_fn.self)
        contextSetDtype = try resolve("petrel_context_set_dtype", petrel_context_set_dtype_fn.self)
        contextDestroy = try resolve("petrel_context_destroy", petrel_context_destroy_fn.self)
        contextLastError = try resolve("petrel_context_last_error", petrel_context_last_error_fn.self)
        contextSynchronize = try resolve("petrel_context_synchronize", petrel_context_synchronize_fn.self)
        contextRecover = try resolve("petrel_context_recover", petrel_context_recover_fn.self)
        debugFailAllocAfter = try resolve("petrel_debug_fail_alloc_after", petrel_debug_fail_alloc_after_fn.self)
        deviceDescribe = try resolve("petrel_device_describe", petrel_device_describe_fn.self)
        bufferAlloc = try resolve("petrel_buffer_alloc", petrel_buffer_alloc_fn.self)
        bufferFree = try resolve("petrel_buffer_free", petrel_buffer_free_fn.self)
        bufferFill = try resolve("petrel_buffer_fill", petrel_buffer_fill_fn.self)
        bufferCopy = try resolve("petrel_buffer_copy", petrel_buffer_copy_fn.self)
        weightsUpload = try resolve("petrel_weights_upload", petrel_weights_upload_fn.self)
        weightsRandom = try resolve("petrel_weights_random", petrel_weights_random_fn.self)
        bufferUpload = try resolve("petrel_buffer_upload", petrel_buffer_upload_fn.self)
        weightsRandomWO = try resolve("petrel_weights_random_wo", petrel_weights_random_wo_fn.self)
        tensorDownload = try resolve("petrel_tensor_download", petrel_tensor_download_fn.self)
        embed = try resolve("petrel_embed_enqueue", petrel_embed_enqueue_fn.self)
        rmsNorm = try resolve("petrel_rmsnorm_enqueue", petrel_rmsnorm_enqueue_fn.self)
        matmul = try resolve("petrel_matmul_enqueue", petrel_matmul_enqueue_fn.self)
        rope = try resolve("petrel_rope_enqueue", petrel_rope_enqueue_fn.self)
        attention = try resolve("petrel_attention_enqueue", petrel_attention_enqueue_fn.self)
        swiglu = try resolve("petrel_swiglu_enqueue", petrel_swiglu_enqueue_fn.self)
        matmulSwiGLU = try resolve("petrel_matmul_swiglu_enqueue", petrel_matmul_swiglu_enqueue_fn.self)
        topCandidates = try resolve("petrel_top_candidates", petrel_top_candidates_fn.self)
        deviceUUID = try resolve("petrel_device_uuid", petrel_device_uuid_fn.self)
        add = try resolve("petrel_add_enqueue", petrel_add_enqueue_fn.self)
        gatherRows = try resolve("petrel_rows_gather_enqueue", petrel_rows_gather_enqueue_fn.self)
        gatherColumns = try resolve("petrel_columns_gather_enqueue", petrel_columns_gather_enqueue_fn.self)
        matmulAdd = try resolve("petrel_matmul_add_enqueue", petrel_matmul_add_enqueue_fn.self)
        rmsNormMatmul = try resolve("petrel_rmsnorm_matmul_enqueue", petrel_rmsnorm_matmul_enqueue_fn.self)
        rmsNormMatmulSwiGLU = try resolve("petrel_rmsnorm_matmul_swiglu_enqueue", petrel_rmsnorm_matmul_swiglu_enqueue_fn.self)
        stepBegin = try resolve("petrel_step_begin", petrel_step_begin_fn.self)
        stepEnd = try resolve("petrel_step_end", petrel_step_end_fn.self)
        graphsClear = try resolve("petrel_graphs_clear", petrel_graphs_clear_fn.self)
        graphCounts = try resolve("petrel_graph_counts", petrel_graph_counts_fn.self)
    }
    // The handle is never closed: function pointers and buffers' deinits may outlive any owner.
}

/// One device context (stream, cuBLAS handle, memory pool). Buffers keep it alive. Unchecked:
/// the handle never changes, and its calls come from one thread at a time (a model's step holds
/// it through CausalLM.withExclusiveUse; a sharded model's rank from its own thread); `fault` is
/// behind its Mutex.
final class CUDAContext: @unchecked Sendable {
    let lib: CUDALibrary
    let handle: OpaquePointer
    /// The first failure of an op since the runner last took it (ComputeBackend.takeFault);
    /// while one is held every op is skipped.
    private let fault = Mutex<DeviceFault?>(nil)

    init(lib: CUDALibrary, device: Int, options: CUDABackend.Options) throws {
        self.lib = lib
        var ctx: OpaquePointer?
        var message = [CChar](repeating: 0, count: 1024)
        var raw = petrel_context_options(size: UInt32(MemoryLayout<petrel_context_options>.size),
                                         cuda_graphs: options.cudaGraphs ? 1 : 0, pdl: options.programmaticDependentLaunch ? 1 : 0)
        let status = lib.contextCreate(Int32(device), &raw, &ctx, &message, message.count)
        guard status == 0, let ctx else {
            throw CUDABackendError("--device cuda: no usable GPU \(device): \(String(nulTerminated: message))")
        }
        handle = ctx
    }

    deinit { lib.contextDestroy(handle) }

    var lastError: String { lib.contextLastError(handle).map { String(cString: $0) } ?? "" }

    /// Turns a failed status into a thrown error naming the operation.
    func check(_ status: Int32, _ what: @autoclosure () -> String) throws {
        if status != 0 { throw CUDABackendError("cuda \(what()): \(lastError) (status \(status))") }
    }

    /// Whether a fault is held (ops are skipped until it is taken).
    var isFaulted: Bool { fault.withLock { $0 != nil } }

    /// For ops whose protocol signature cannot throw: makes the library call unless a fault is
    /// held, and keeps its failure as the fault.
    func enqueue(_ what: @autoclosure () -> String, _ call: () -> Int32) {
        guard !isFaulted else { return }
        let status = call()
        if status != 0 { keep(DeviceFault("cuda \(what()): \(lastError) (status \(status))")) }
    }

    /// Holds `error` as the fault unless one is held already (the first one counts).
    func keep(_ error: DeviceFault) { fault.withLock { if $0 == nil { $0 = error } } }

    /// The held fault, after putting the context back in order (petrel_context_recover: an open
    /// step closed, queued work waited for): a recoverable fault is then forgotten; a lost
    /// context's is kept and returned by every later call.
    func takeFault() -> DeviceFault? {
        fault.withLock { held -> DeviceFault? in
            guard var f = held else { return nil }
            if f.contextLost { return f }
            if lib.contextRecover(handle) == Int32(PETREL_ERROR_CONTEXT_LOST) {
                f.contextLost = true
                f.message += "; \(lastError)"
                held = f
            } else {
                held = nil
            }
            return f
        }
    }
}

/// Device memory from the context's pool, returned to it when the last reference goes.
/// Unchecked: the pointer never changes; the memory is written only by the context's stream.
final class CUDABuffer: @unchecked Sendable {
    let context: CUDAContext
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    init(context: CUDAContext, byteCount: Int) throws {
        self.context = context
        self.byteCount = byteCount
        var p: UnsafeMutableRawPointer?
        try context.check(context.lib.bufferAlloc(context.handle, max(byteCount, 1), &p), "alloc \(byteCount) bytes")
        pointer = p!
    }

    deinit { context.lib.bufferFree(context.handle, pointer) }
}

/// The storage of an activation the pool could not give: no memory. Made only while a fault is
/// held, so every op that could read it is skipped, and the step that made it fails.
final class UnallocatedBuffer: Sendable {}
