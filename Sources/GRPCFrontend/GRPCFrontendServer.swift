// GRPCFrontendServer: Triton's gRPC endpoint (inference.GRPCInferenceService and
// grpc.health.v1.Health, HTTP/2 plaintext, port 8001 by default) over an InferenceService.
//
//   let grpc = GRPCFrontendServer(service: server, options: GRPCFrontendOptions(port: 8001))
//   async let serving: Void = grpc.run()   // returns when the endpoint has stopped
//   ...
//   grpc.shutdown()                         // graceful; see shutdownGracePeriod
//
// Shutdown stops accepting connections and new RPCs, lets in-flight RPCs (open streams
// included) finish for `shutdownGracePeriod`, then cancels what is left (which cancels their
// Serving requests).
import GRPCCore
import GRPCNIOTransportHTTP2
import Serving
import Synchronization
import Telemetry

public final class GRPCFrontendServer: Sendable {
    public let options: GRPCFrontendOptions
    private let transport: HTTP2ServerTransport.Posix
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let draining: DrainFlag
    private let shutdownSignal = AsyncStream<Void>.makeStream()

    public init(service: any InferenceService, options: GRPCFrontendOptions = GRPCFrontendOptions()) {
        self.options = options
        let draining = DrainFlag()
        self.draining = draining
        let transport = HTTP2ServerTransport.Posix(
            address: GRPCFrontendServer.socketAddress(host: options.host, port: options.port),
            transportSecurity: .plaintext,
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = options.maxRequestMessageBytes
                // Clients may compress requests with gzip or deflate (tritonclient's
                // compression_algorithm), as Triton accepts.
                config.compression.enabledAlgorithms = .all
            })
        self.transport = transport
        let services: [any RegistrableRPCService] = [
            InferenceRPCService(service: service, options: options, draining: draining),
            HealthRPCService(service: service, draining: { draining.isSet }),
        ]
        self.server = GRPCServer(transport: transport, services: services, interceptors: [RequestLogging(log: options.log)])
    }

    /// "0.0.0.0", "127.0.0.1": IPv4; "::", "::1" (anything with a colon): IPv6;
    /// "localhost": 127.0.0.1; "unix:PATH": a Unix domain socket.
    static func socketAddress(host: String, port: Int) -> GRPCNIOTransportCore.SocketAddress {
        if host.hasPrefix("unix:") { return .unixDomainSocket(path: String(host.dropFirst(5))) }
        if host == "localhost" { return .ipv4(host: "127.0.0.1", port: port) }
        var h = host
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        return h.contains(":") ? .ipv6(host: h, port: port) : .ipv4(host: h, port: port)
    }

    /// Serves until `shutdown()` has run its course or the calling task is cancelled (which
    /// stops at once, cancelling in-flight RPCs). Throws when the address cannot be bound.
    /// Call it once.
    public func run() async throws {
        if draining.isSet { return }
        let server = self.server
        let signal = shutdownSignal.stream
        let grace = options.shutdownGracePeriod
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            group.addTask {
                for await _ in signal {}
                // Shutdown began: the grace period, then whatever still runs is cancelled.
                try await Task.sleep(for: grace)
            }
            defer { group.cancelAll() }
            _ = try await group.next()
        }
    }

    /// The bound port (useful with port 0); waits until the endpoint listens. Throws if it
    /// failed to bind or has stopped.
    public func boundPort() async throws -> Int {
        let address = try await transport.listeningAddress
        if let ipv4 = address.ipv4 { return ipv4.port }
        if let ipv6 = address.ipv6 { return ipv6.port }
        return options.port
    }

    /// Starts a graceful shutdown; returns at once (`run()` returns when it is done). Health
    /// checks answer NOT_SERVING from now on. Idempotent.
    public func shutdown() {
        guard draining.set() else { return }
        server.beginGracefulShutdown()
        shutdownSignal.continuation.finish()
    }
}

/// Logs each RPC at verbose level 1, as Triton's gRPC endpoint does.
struct RequestLogging: ServerInterceptor {
    let log: ServerLog

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        log.verbose(1, "gRPC request: \(context.descriptor.fullyQualifiedMethod)")
        return try await next(request, context)
    }
}

/// Set once, when shutdown begins.
final class DrainFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    /// Sets the flag; true if this call set it.
    func set() -> Bool {
        state.withLock { s in
            defer { s = true }
            return !s
        }
    }
}
