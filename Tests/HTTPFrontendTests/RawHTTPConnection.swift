// A raw HTTP/1.1 client over a POSIX socket, for what a high-level client hides: sending a
// body exactly as curl does, reading a chunked SSE body event by event, and hanging up in the
// middle of a response. Blocking calls run on threads of their own.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct RawHTTPError: Error, CustomStringConvertible {
    let description: String
}

/// Unchecked: a connection is used by one test task at a time (its socket and buffer are never
/// touched concurrently).
final class RawHTTPConnection: @unchecked Sendable {
    private var fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int, timeoutSeconds: Int = 10) throws {
        #if os(Linux)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw RawHTTPError(description: "socket() failed") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { _ = close(fd); throw RawHTTPError(description: "connect() failed") }
    }

    deinit { hangUp() }

    /// Closes the connection (the server sees the client go away).
    func hangUp() {
        if fd >= 0 { _ = close(fd); fd = -1 }
    }

    /// Runs a blocking socket call on a thread of its own: neither the Swift concurrency pool
    /// nor Dispatch's (which grows slowly on Linux) is held up while a test waits for the server.
    private func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            Thread { c.resume(with: Result { try work() }) }.start()
        }
    }

    func write(_ text: String) async throws { try await write(Array(text.utf8)) }

    func write(_ bytes: [UInt8]) async throws {
        try await blocking { [self] in
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw RawHTTPError(description: "send() failed") }
                offset += n
            }
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    private func fill() async throws -> Bool {
        let chunk: [UInt8] = try await blocking { [self] in
            var tmp = [UInt8](repeating: 0, count: 65536)
            let n = tmp.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw RawHTTPError(description: "recv() failed or timed out (errno \(errno))") }
            return Array(tmp[0..<n])
        }
        buffer.append(contentsOf: chunk)
        return !chunk.isEmpty
    }

    private func readLine() async throws -> String {
        while true {
            if let i = buffer.firstIndex(of: 0x0A) {
                let line = buffer[..<i]
                buffer.removeFirst(i + 1)
                return String(decoding: line.last == 0x0D ? line.dropLast() : line[...], as: UTF8.self)
            }
            guard try await fill() else { throw RawHTTPError(description: "connection closed mid-line") }
        }
    }

    private func readExactly(_ n: Int) async throws -> [UInt8] {
        while buffer.count < n {
            guard try await fill() else { throw RawHTTPError(description: "connection closed mid-body") }
        }
        let out = Array(buffer[..<n])
        buffer.removeFirst(n)
        return out
    }

    struct Head {
        var status: Int
        var headers: [String: String]  // lowercased names
    }

    func readHead() async throws -> Head {
        let statusLine = try await readLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw RawHTTPError(description: "bad status line '\(statusLine)'") }
        var headers: [String: String] = [:]
        while true {
            let line = try await readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Head(status: status, headers: headers)
    }

    /// The next chunk of a chunked body, nil after the last.
    func readChunk() async throws -> [UInt8]? {
        let sizeLine = try await readLine()
        guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else {
            throw RawHTTPError(description: "bad chunk size '\(sizeLine)'")
        }
        if size == 0 {
            _ = try await readLine()
            return nil
        }
        let data = try await readExactly(size)
        _ = try await readLine()
        return data
    }

    /// The whole body of a response with this head.
    func readBody(_ head: Head) async throws -> [UInt8] {
        if let length = head.headers["content-length"].flatMap({ Int($0) }) { return try await readExactly(length) }
        var body: [UInt8] = []
        while let chunk = try await readChunk() { body += chunk }
        return body
    }

    /// Sends a request and returns the head and body of the response.
    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = []) async throws -> (Head, [UInt8]) {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        try await write(Array(text.utf8) + body)
        let head = try await readHead()
        return (head, try await readBody(head))
    }
}

/// Splits a Server-Sent Events body into the payloads of its `data:` events.
struct SSEReader {
    private var pending: [UInt8] = []

    /// Adds bytes; returns the events completed by them.
    mutating func feed(_ bytes: [UInt8]) -> [String] {
        pending += bytes
        var events: [String] = []
        while let end = pending.indices.dropLast().first(where: { pending[$0] == 0x0A && pending[$0 + 1] == 0x0A }) {
            let event = String(decoding: pending[..<end], as: UTF8.self)
            pending.removeFirst(end + 2)
            precondition(event.hasPrefix("data: "), "SSE event without data: \(event)")
            events.append(String(event.dropFirst(6)))
        }
        return events
    }

    var isEmpty: Bool { pending.isEmpty }
}
