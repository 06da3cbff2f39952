// GRPCFrontendOptions: what `petrel serve` passes to the gRPC endpoint on 8001, named after
// Triton's flags (--grpc-address, --grpc-port, --exit-timeout-secs).

/// Triton's logging settings as the LogSettings RPC reads and writes them. Petrel keeps them
/// in memory and reports changes to `GRPCFrontendOptions.onLoggingChange`; applying them is the
/// executable's business.
public struct GRPCLoggingSettings: Sendable, Equatable {
    public var logFile = ""
    public var logInfo = true
    public var logWarning = true
    public var logError = true
    public var logVerboseLevel: UInt32 = 0
    /// "default" or "ISO8601".
    public var logFormat = "default"
    public init() {}
}

public struct GRPCFrontendOptions: Sendable {
    public var host: String
    public var port: Int
    /// Largest accepted request message in bytes. Triton accepts up to 2 GiB - 1 (INT32_MAX);
    /// so does Petrel by default.
    public var maxRequestMessageBytes: Int
    /// How long in-flight RPCs (open streams included) may run after shutdown starts before
    /// they are cancelled (Triton's --exit-timeout-secs, default 30 s).
    public var shutdownGracePeriod: Duration
    /// Decoupled models on ModelStreamInfer: send the empty final response flagged
    /// `triton_final_response: true` to every request, not only to those that ask for it with
    /// the `triton_enable_empty_final_response` request parameter (Triton's behaviour, the default).
    public var alwaysSendEmptyFinalResponse: Bool
    public var initialLogging: GRPCLoggingSettings
    public var onLoggingChange: (@Sendable (GRPCLoggingSettings) -> Void)?

    public init(host: String = "0.0.0.0", port: Int = 8001, maxRequestMessageBytes: Int = Int(Int32.max),
                shutdownGracePeriod: Duration = .seconds(30), alwaysSendEmptyFinalResponse: Bool = false,
                initialLogging: GRPCLoggingSettings = GRPCLoggingSettings(),
                onLoggingChange: (@Sendable (GRPCLoggingSettings) -> Void)? = nil) {
        self.host = host
        self.port = port
        self.maxRequestMessageBytes = maxRequestMessageBytes
        self.shutdownGracePeriod = shutdownGracePeriod
        self.alwaysSendEmptyFinalResponse = alwaysSendEmptyFinalResponse
        self.initialLogging = initialLogging
        self.onLoggingChange = onLoggingChange
    }
}
