// HTTPFrontendOptions: what `petrel serve` passes to the HTTP endpoint on 8000, named after
// Triton's flags (--http-address, --http-port, --http-max-input-size, --http-restricted-api,
// --exit-timeout-secs).
import Telemetry

/// Triton's API groups, as spelled in `--http-restricted-api`.
public enum APIGroup: String, Sendable, CaseIterable, Hashable {
    case health
    case metadata
    case inference
    case sharedMemory = "shared-memory"
    case modelConfig = "model-config"
    case modelRepository = "model-repository"
    case statistics
    case trace
    case logging
}

/// A set of API groups that answer 403 unless the request carries `headerName: headerValue`.
public struct RestrictedAPI: Sendable, Equatable {
    public var groups: Set<APIGroup>
    /// Compared case-insensitively, as HTTP header names are.
    public var headerName: String
    /// Compared exactly.
    public var headerValue: String

    public init(groups: Set<APIGroup>, headerName: String, headerValue: String) {
        self.groups = groups
        self.headerName = headerName
        self.headerValue = headerValue
    }

    /// Parses one `--http-restricted-api` value: `<API_1>,<API_2>,...:<key>=<value>`,
    /// e.g. `model-repository,logging:admin-key=secret`.
    public init(parsing text: String) throws {
        guard let colon = text.lastIndex(of: ":") else {
            throw OptionsError("--http-restricted-api '\(text)' must be '<API_1>,<API_2>,...:<key>=<value>'")
        }
        let rule = text[text.index(after: colon)...]
        guard let eq = rule.firstIndex(of: "="), eq != rule.startIndex else {
            throw OptionsError("--http-restricted-api '\(text)': the restriction must be '<key>=<value>'")
        }
        var groups = Set<APIGroup>()
        for name in text[..<colon].split(separator: ",") {
            let trimmed = name.trimmingCharacters(in: " ")
            guard let g = APIGroup(rawValue: trimmed) else {
                let known = APIGroup.allCases.map(\.rawValue).joined(separator: ", ")
                throw OptionsError("--http-restricted-api: unknown API '\(trimmed)' (known: \(known))")
            }
            groups.insert(g)
        }
        guard !groups.isEmpty else { throw OptionsError("--http-restricted-api '\(text)' names no API") }
        self.init(groups: groups, headerName: String(rule[..<eq]), headerValue: String(rule[rule.index(after: eq)...]))
    }
}

/// A configuration error with a message meant for the command line.
public struct OptionsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

public struct HTTPFrontendOptions: Sendable {
    public var host: String
    public var port: Int
    /// Largest accepted request body (Triton's --http-max-input-size, default 64 MiB). Larger
    /// bodies are answered 400 with Triton's message, without reading them into memory.
    public var maxBodyBytes: Int
    /// Each group may appear in one restriction only; a later one wins.
    public var restrictedAPIs: [RestrictedAPI]
    /// How long in-flight requests may run after shutdown starts before they are cancelled
    /// (Triton's --exit-timeout-secs, default 30 s).
    public var shutdownGracePeriod: Duration
    /// Closes connections idle this long; nil keeps them (Triton keeps them).
    public var idleTimeout: Duration?
    /// `Server` response header; nil sends none (Triton sends none).
    public var serverName: String?
    /// The server's log: GET/POST /v2/logging read and change its settings; with verbose level
    /// 1 each request is logged.
    public var log: ServerLog

    public init(host: String = "0.0.0.0", port: Int = 8000, maxBodyBytes: Int = 64 * 1024 * 1024,
                restrictedAPIs: [RestrictedAPI] = [], shutdownGracePeriod: Duration = .seconds(30),
                idleTimeout: Duration? = nil, serverName: String? = nil,
                log: ServerLog = ServerLog()) {
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.restrictedAPIs = restrictedAPIs
        self.shutdownGracePeriod = shutdownGracePeriod
        self.idleTimeout = idleTimeout
        self.serverName = serverName
        self.log = log
    }
}

/// Where the metrics endpoint listens (Triton's --metrics-address / --metrics-port).
public struct MetricsEndpointOptions: Sendable {
    public var host: String
    public var port: Int
    public init(host: String = "0.0.0.0", port: Int = 8002) {
        self.host = host
        self.port = port
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}
