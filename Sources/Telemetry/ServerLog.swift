// ServerLog: the server's log, which Triton's logging extension (GET/POST /v2/logging, the
// LogSettings RPC) reads and changes at run time: info, warning and error lines, each kind on
// or off, and verbose lines up to a level, written to standard error in Triton's formats.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import Synchronization

/// What the log writes and how (Triton's --log-* options and logging settings).
public struct LogSettings: Sendable, Equatable {
    public enum Format: String, Sendable {
        /// `I1207 12:34:56.789012 4242 Serve.swift:69] message` (UTC).
        case `default` = "default"
        /// `2026-12-07T12:34:56Z I 4242 Serve.swift:69] message`.
        case iso8601 = "ISO8601"
    }

    /// Where lines go: "" is standard error (the only destination Petrel writes).
    public var file = ""
    public var info = true
    public var warning = true
    public var error = true
    /// Verbose lines of a level up to this one are written; 0: none.
    public var verboseLevel: UInt32 = 0
    public var format = Format.default

    public init() {}
}

public final class ServerLog: Sendable {
    public enum Severity: Character, Sendable {
        case info = "I", warning = "W", error = "E", verbose = "V"
    }

    private let state: Mutex<LogSettings>
    private let write: @Sendable (String) -> Void

    /// `write` receives whole lines, newline included (default: standard error).
    public init(_ settings: LogSettings = LogSettings(), write: @escaping @Sendable (String) -> Void = ServerLog.standardError) {
        state = Mutex(settings)
        self.write = write
    }

    /// Each line with one write(2) where the kernel allows, so lines of several threads do not mix.
    public static let standardError: @Sendable (String) -> Void = { line in
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = writeStandardError(b.baseAddress! + done, b.count - done)
                if n <= 0 { return }
                done += n
            }
        }
    }

    public var settings: LogSettings { state.withLock { $0 } }

    /// Applies `change` to the settings as one step (a throwing change leaves them as they
    /// were); returns the settings now in force.
    @discardableResult
    public func update(_ change: (inout LogSettings) throws -> Void) rethrows -> LogSettings {
        try state.withLock { s in
            var next = s
            try change(&next)
            s = next
            return next
        }
    }

    public func isVerbose(_ level: UInt32) -> Bool { level >= 1 && state.withLock { $0.verboseLevel >= level } }

    public func info(_ message: @autoclosure () -> String, file: String = #fileID, line: Int = #line) {
        log(.info, message, file: file, line: line)
    }

    public func warning(_ message: @autoclosure () -> String, file: String = #fileID, line: Int = #line) {
        log(.warning, message, file: file, line: line)
    }

    public func error(_ message: @autoclosure () -> String, file: String = #fileID, line: Int = #line) {
        log(.error, message, file: file, line: line)
    }

    /// Written while the verbose level is `level` (>= 1) or more.
    public func verbose(_ level: UInt32, _ message: @autoclosure () -> String, file: String = #fileID, line: Int = #line) {
        guard isVerbose(level) else { return }
        log(.verbose, message, file: file, line: line)
    }

    private func log(_ severity: Severity, _ message: () -> String, file: String, line: Int) {
        let s = settings
        switch severity {
        case .info: guard s.info else { return }
        case .warning: guard s.warning else { return }
        case .error: guard s.error else { return }
        case .verbose: break
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let source = (file.split(separator: "/").last.map(String.init) ?? file) + ":\(line)"
        write(Self.line(severity, message(), source: source, format: s.format,
                        seconds: Int(now.tv_sec), microseconds: Int(now.tv_nsec) / 1000, pid: Int(getpid())))
    }

    /// One line in `format`, the time in UTC.
    static func line(_ severity: Severity, _ message: String, source: String, format: LogSettings.Format,
                     seconds: Int, microseconds: Int, pid: Int) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let clock = "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))"
        switch format {
        case .default:
            let micros = String(microseconds)
            let padded = String(repeating: "0", count: max(0, 6 - micros.count)) + micros
            return "\(severity.rawValue)\(two(tm.tm_mon + 1))\(two(tm.tm_mday)) \(clock).\(padded) \(pid) \(source)] \(message)\n"
        case .iso8601:
            return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(clock)Z \(severity.rawValue) \(pid) \(source)] \(message)\n"
        }
    }
}

private func writeStandardError(_ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(2, bytes, count)
}
