// GRPCFrontendOptions: what `petrel serve` passes to the gRPC endpoint on 8001, named after
// Triton's flags (--grpc-address, --grpc-port, --exit-timeout-secs).

import Telemetry

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
    /// The server's log: the LogSettings RPC reads and changes its settings; with verbose
    /// level 1 each RPC is logged.
    public var log: ServerLog

    public init(host: String = "0.0.0.0", port: Int = 8001, maxRequestMessageBytes: Int = Int(Int32.max),
                shutdownGracePeriod: Duration = .seconds(30), alwaysSendEmptyFinalResponse: Bool = false,
                log: ServerLog = ServerLog()) {
        self.host = host
        self.port = port
        self.maxRequestMessageBytes = maxRequestMessageBytes
        self.shutdownGracePeriod = shutdownGracePeriod
        self.alwaysSendEmptyFinalResponse = alwaysSendEmptyFinalResponse
        self.log = log
    }
}
