// Shared helpers: run the endpoint on a live socket (HummingbirdTesting) or as an HTTPServer on
// loopback, and read JSON answers with Foundation's parser (independent of the one under test).
import Foundation
import HTTPFrontend
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

let quietLogger: Logger = {
    var l = Logger(label: "petrel.http.test")
    l.logLevel = .critical
    return l
}()

/// Runs `test` against the endpoint serving `service` on a live socket.
func withApp<T: Sendable>(_ service: FakeService = FakeService(), options: HTTPFrontendOptions = HTTPFrontendOptions(),
                          _ test: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
    try await makeHTTPApplication(service: service, options: options, logger: quietLogger).test(.live, test)
}

/// Runs an HTTPServer on 127.0.0.1 (ephemeral port) for `test`, then shuts it down.
func withServer<T: Sendable>(_ service: FakeService = FakeService(), options: HTTPFrontendOptions = HTTPFrontendOptions(),
                             _ test: @Sendable (HTTPServer, Int) async throws -> T) async throws -> T {
    var options = options
    options.host = "127.0.0.1"
    options.port = 0
    let server = HTTPServer(service: service, options: options, logger: quietLogger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        let port = await server.boundPorts()["http"]!
        do {
            let value = try await test(server, port)
            await server.shutdown()
            try await group.waitForAll()
            return value
        } catch {
            await server.shutdown()
            group.cancelAll()
            throw error
        }
    }
}

func jsonObject(_ body: ByteBuffer) throws -> [String: Any] {
    try jsonObject(Array(body.readableBytesView))
}

func jsonObject(_ bytes: [UInt8]) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    return try #require(value as? [String: Any], "not a JSON object: \(String(decoding: bytes, as: UTF8.self))")
}

func jsonArray(_ body: ByteBuffer) throws -> [Any] {
    let value = try JSONSerialization.jsonObject(with: Data(Array(body.readableBytesView)))
    return try #require(value as? [Any])
}

func text(_ body: ByteBuffer) -> String { String(buffer: body) }

func post(_ client: any TestClientProtocol, _ uri: String, _ body: String, headers: HTTPFields = [:]) async throws -> TestResponse {
    try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body))
}

/// The `error` message of a JSON error answer.
func errorMessage(_ r: TestResponse) throws -> String {
    #expect(r.headers[.contentType] == "application/json")
    return try #require(try jsonObject(r.body)["error"] as? String)
}

/// Little-endian bytes of fixed-width values, and BYTES elements with their length prefix.
func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

func bytesElements(_ strings: [String]) -> [UInt8] {
    strings.flatMap { s in le([UInt32(s.utf8.count)]) + Array(s.utf8) }
}
