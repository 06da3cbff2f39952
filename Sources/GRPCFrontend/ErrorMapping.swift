// ErrorMapping: Serving's HTTP-style statuses -> gRPC status codes, the way Triton maps its
// TRITONSERVER_Error codes on the gRPC endpoint.
import GRPCCore
import Serving

enum ErrorMapping {
    /// 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND,
    /// 409 ALREADY_EXISTS, 413 RESOURCE_EXHAUSTED, 501 UNIMPLEMENTED, 503 UNAVAILABLE,
    /// anything else INTERNAL.
    static func code(for status: ServingError.Status) -> RPCError.Code {
        switch status {
        case .badRequest: return .invalidArgument
        case .unauthorized: return .unauthenticated
        case .forbidden: return .permissionDenied
        case .notFound: return .notFound
        case .conflict: return .alreadyExists
        case .payloadTooLarge: return .resourceExhausted
        case .notImplemented: return .unimplemented
        case .unavailable: return .unavailable
        case .internalError: return .internalError
        }
    }

    static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let e as RPCError: return e
        case let e as ServingError: return RPCError(code: code(for: e.status), message: e.message)
        case let e as RequestDecodingError: return RPCError(code: code(for: e.status), message: e.message)
        case is CancellationError: return RPCError(code: .cancelled, message: "the request was cancelled")
        default: return RPCError(code: .internalError, message: String(describing: error))
        }
    }

    /// The text of an in-band stream error (`ModelStreamInferResponse.error_message`).
    static func message(_ error: any Error) -> String {
        switch error {
        case let e as RPCError: return e.message
        case let e as ServingError: return e.message
        case let e as RequestDecodingError: return e.message
        case is CancellationError: return "the request was cancelled"
        default: return String(describing: error)
        }
    }
}
