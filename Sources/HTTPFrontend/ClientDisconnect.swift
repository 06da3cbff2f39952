// ClientDisconnect: notices a client going away while its request is still being served, so
// that the request is cancelled (and the Serving layer frees its KV blocks) instead of running
// to completion for nobody. A channel handler sees the connection's input close (FIN) or the
// connection drop; handlers register a callback for the duration of their work.
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

final class ClientDisconnectObserver: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny

    private struct State {
        var closed = false
        var nextToken = 0
        var callbacks: [Int: @Sendable () -> Void] = [:]
    }
    private let state = Mutex(State())

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { clientGone() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientGone()
        context.fireChannelInactive()
    }

    private func clientGone() {
        let callbacks = state.withLock { s -> [@Sendable () -> Void] in
            s.closed = true
            defer { s.callbacks = [:] }
            return Array(s.callbacks.values)
        }
        for f in callbacks { f() }
    }

    /// Calls `onGone` once when the client goes away (at once if it already has) until the
    /// returned token is passed to `remove`.
    func register(_ onGone: @escaping @Sendable () -> Void) -> Int {
        let (token, closed) = state.withLock { s -> (Int, Bool) in
            s.nextToken += 1
            if !s.closed { s.callbacks[s.nextToken] = onGone }
            return (s.nextToken, s.closed)
        }
        if closed { onGone() }
        return token
    }

    func remove(_ token: Int) {
        _ = state.withLock { $0.callbacks.removeValue(forKey: token) }
    }
}

extension ClientDisconnectObserver {
    /// The observer installed on `channel`, if any.
    static func on(_ channel: any Channel) async -> ClientDisconnectObserver? {
        try? await channel.pipeline.handler(type: ClientDisconnectObserver.self).get()
    }

    /// Cancels `pump` (a streaming response's producer) when the client on `channel` goes away;
    /// returns the closure that cancels it and stops watching, for the end of the response.
    static func cancelling(_ pump: Task<Void, Never>, on channel: any Channel) async -> @Sendable () -> Void {
        let observer = await on(channel)
        let token = observer?.register { pump.cancel() }
        return {
            pump.cancel()
            if let token { observer?.remove(token) }
        }
    }

    /// Runs `operation` in a task that is cancelled when the client goes away or when the
    /// caller is cancelled.
    func run<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await operation() }
        let token = register { task.cancel() }
        defer { remove(token) }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }
}

/// Answers `Expect: 100-continue` at once, so clients that ask (curl and libcurl, which
/// perf_analyzer uses, for larger bodies) send their body without first waiting a second.
final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data),
           head.headerFields[.expect]?.lowercased() == "100-continue" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }
}
