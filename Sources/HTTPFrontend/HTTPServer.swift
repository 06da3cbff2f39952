// HTTPServer: the Hummingbird applications of `petrel serve` (KServe v2 on 8000, Prometheus
// metrics on 8002) and a runner that stops them gracefully: stop accepting connections, let
// in-flight requests finish for the grace period, then cancel what is left.
import Hummingbird
import Logging
import NIOCore
import Serving
import ServiceLifecycle
import Synchronization

/// The KServe v2 HTTP endpoint as a Hummingbird application (a swift-service-lifecycle
/// `Service`). `onServerRunning` receives the bound port (useful with port 0).
public func makeHTTPApplication(service: any InferenceService, options: HTTPFrontendOptions = HTTPFrontendOptions(),
                                logger: Logger = Logger(label: "petrel.http"),
                                onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
    Application(
        responder: KServeResponder(service: service, options: options),
        server: .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler(), ClientDisconnectObserver()],
                                            idleTimeout: options.idleTimeout.map(TimeAmount.init))),
        configuration: ApplicationConfiguration(address: .hostname(options.host, port: options.port),
                                                serverName: options.serverName),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? options.port) },
        logger: logger
    )
}

/// The Prometheus endpoint: `GET /metrics` answers `render()` as text exposition format 0.0.4.
public func makeMetricsApplication(options: MetricsEndpointOptions = MetricsEndpointOptions(),
                                   logger: Logger = Logger(label: "petrel.metrics"),
                                   onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
                                   render: @escaping @Sendable () -> String) -> some ApplicationProtocol {
    Application(
        responder: MetricsResponder(render: render),
        configuration: ApplicationConfiguration(address: .hostname(options.host, port: options.port)),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? options.port) },
        logger: logger
    )
}

struct MetricsResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let render: @Sendable () -> String

    func respond(to request: Request, context: Context) async throws -> Response {
        guard request.method == .get else { return KServeResponder.error(.methodNotAllowed, "Method Not Allowed") }
        guard request.uri.path == "/metrics" else { return KServeResponder.error(.notFound, "Not Found") }
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: render())))
    }
}

/// Runs the HTTP endpoint (and optionally the metrics endpoint) until `shutdown()`, a signal
/// (when asked to handle them) or cancellation of `run()`.
public final class HTTPServer: Sendable {
    private let group: ServiceGroup
    private let listening: Listening

    /// - Parameters:
    ///   - metrics: where to serve `/metrics` and how to render it; nil serves no metrics.
    ///   - handleSignals: SIGTERM and SIGINT start a graceful shutdown.
    public init(service: any InferenceService, options: HTTPFrontendOptions = HTTPFrontendOptions(),
                metrics: (options: MetricsEndpointOptions, render: @Sendable () -> String)? = nil,
                handleSignals: Bool = false, logger: Logger = Logger(label: "petrel.http")) {
        let listening = Listening(expected: metrics == nil ? 1 : 2)
        var services: [any Service] = [
            makeHTTPApplication(service: service, options: options, logger: logger) { listening.record("http", $0) },
        ]
        if let metrics {
            services.append(makeMetricsApplication(options: metrics.options, logger: logger,
                                                   onServerRunning: { listening.record("metrics", $0) },
                                                   render: metrics.render))
        }
        var configuration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = options.shutdownGracePeriod
        self.group = ServiceGroup(configuration: configuration)
        self.listening = listening
    }

    /// Serves until shut down; returns once every connection is closed.
    public func run() async throws {
        try await group.run()
    }

    /// Stops accepting connections; in-flight requests get the grace period, then are cancelled.
    /// Returns at once; `run()` returns when the server has stopped.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
    }

    /// Waits until every endpoint is listening, then returns the bound ports (`http`, and
    /// `metrics` when served). Never returns if an endpoint fails to bind.
    public func boundPorts() async -> [String: Int] {
        await listening.wait()
    }
}

/// Bound ports, reported by each endpoint once it listens.
private final class Listening: Sendable {
    private struct State {
        var ports: [String: Int] = [:]
        var waiters: [CheckedContinuation<[String: Int], Never>] = []
    }
    private let state = Mutex(State())
    private let expected: Int

    init(expected: Int) { self.expected = expected }

    func record(_ name: String, _ port: Int) {
        let (ports, waiters) = state.withLock { s -> ([String: Int], [CheckedContinuation<[String: Int], Never>]) in
            s.ports[name] = port
            guard s.ports.count == expected else { return (s.ports, []) }
            defer { s.waiters = [] }
            return (s.ports, s.waiters)
        }
        for w in waiters { w.resume(returning: ports) }
    }

    func wait() async -> [String: Int] {
        await withCheckedContinuation { c in
            let ready = state.withLock { s -> [String: Int]? in
                if s.ports.count == expected { return s.ports }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
