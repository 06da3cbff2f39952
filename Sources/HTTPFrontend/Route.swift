// Route: every path the KServe v2 endpoint answers, parsed the way Triton's HTTP server matches
// them (same precedence, `versions/{v}` digits only, `/v2/models/stats` before model names).
// Anything else is 404 {"error": "Not Found"}.
import HTTPTypes

enum Route: Equatable, Sendable {
    case serverMetadata
    case health(live: Bool)
    case modelMetadata(model: String, version: String)
    case modelReady(model: String, version: String)
    case modelConfig(model: String, version: String)
    /// Empty model: every model (`/v2/models/stats`).
    case modelStats(model: String, version: String)
    case infer(model: String, version: String)
    case generate(model: String, version: String, stream: Bool)
    case modelTrace(model: String)
    case repositoryIndex(repository: String)
    case repositoryLoad(repository: String, model: String)
    case repositoryUnload(repository: String, model: String)
    case logging
    case trace
    case sharedMemory(cuda: Bool, region: String, action: SharedMemoryAction)

    enum SharedMemoryAction: String, Sendable { case status, register, unregister }

    /// The restricted-API group the route belongs to.
    var group: APIGroup {
        switch self {
        case .health, .modelReady: return .health
        case .serverMetadata, .modelMetadata: return .metadata
        case .modelConfig: return .modelConfig
        case .modelStats: return .statistics
        case .infer, .generate: return .inference
        case .modelTrace, .trace: return .trace
        case .repositoryIndex, .repositoryLoad, .repositoryUnload: return .modelRepository
        case .logging: return .logging
        case .sharedMemory: return .sharedMemory
        }
    }

    func allows(_ method: HTTPRequest.Method) -> Bool {
        switch self {
        case .serverMetadata, .health, .modelMetadata, .modelReady, .modelConfig, .modelStats:
            return method == .get
        case .infer, .generate, .repositoryIndex, .repositoryLoad, .repositoryUnload:
            return method == .post
        case .logging, .trace, .modelTrace:
            return method == .get || method == .post
        case .sharedMemory(_, _, let action):
            return action == .status ? method == .get : method == .post
        }
    }

    /// Parses a request path (query already removed). Segments are percent-decoded.
    init?(path: String) {
        guard path.hasPrefix("/") else { return nil }
        let raw = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard raw.allSatisfy({ !$0.isEmpty }), raw.first == "v2" else { return nil }
        guard let s = raw.map({ Route.percentDecoded($0) }).reduce(into: [String]?([]), { acc, seg in
            if let seg { acc?.append(seg) } else { acc = nil }
        }) else { return nil }

        switch s.count {
        case 1: self = .serverMetadata; return
        case 3 where s[1] == "health" && (s[2] == "live" || s[2] == "ready"):
            self = .health(live: s[2] == "live"); return
        case 2 where s[1] == "logging": self = .logging; return
        case 3 where s[1] == "models" && s[2] == "stats": self = .modelStats(model: "", version: ""); return
        case 3 where s[1] == "trace" && s[2] == "setting": self = .trace; return
        default: break
        }
        if s[1] == "models", s.count >= 3 {
            let model = s[2]
            var rest = s[3...]
            var version = ""
            if rest.count >= 2, rest.first == "versions", let v = rest.dropFirst().first,
               !v.isEmpty, v.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                version = v
                rest = rest.dropFirst(2)
            }
            switch Array(rest) {
            case []: self = .modelMetadata(model: model, version: version)
            case ["ready"]: self = .modelReady(model: model, version: version)
            case ["config"]: self = .modelConfig(model: model, version: version)
            case ["stats"]: self = .modelStats(model: model, version: version)
            case ["infer"]: self = .infer(model: model, version: version)
            case ["generate"]: self = .generate(model: model, version: version, stream: false)
            case ["generate_stream"]: self = .generate(model: model, version: version, stream: true)
            case ["trace", "setting"] where version.isEmpty: self = .modelTrace(model: model)
            default: return nil
            }
            return
        }
        if s[1] == "repository" {
            // /v2/repository[/{repo}]/index and /v2/repository[/{repo}]/models/{m}/(load|unload)
            var rest = s[2...]
            var repository = ""
            if rest.first != "index" && !(rest.first == "models" && rest.count == 3) {
                guard let r = rest.first else { return nil }
                repository = r
                rest = rest.dropFirst()
            }
            switch Array(rest) {
            case ["index"]: self = .repositoryIndex(repository: repository)
            case let r where r.count == 3 && r[0] == "models" && r[2] == "load":
                self = .repositoryLoad(repository: repository, model: r[1])
            case let r where r.count == 3 && r[0] == "models" && r[2] == "unload":
                self = .repositoryUnload(repository: repository, model: r[1])
            default: return nil
            }
            return
        }
        if s[1] == "systemsharedmemory" || s[1] == "cudasharedmemory" {
            let cuda = s[1] == "cudasharedmemory"
            var rest = s[2...]
            var region = ""
            if rest.first == "region", rest.count == 3 {
                region = rest.dropFirst().first!
                rest = rest.dropFirst(2)
            }
            guard rest.count == 1, let action = SharedMemoryAction(rawValue: rest.first!) else { return nil }
            self = .sharedMemory(cuda: cuda, region: region, action: action)
            return
        }
        return nil
    }

    /// Percent-decodes one path segment; nil when an escape is malformed.
    static func percentDecoded(_ segment: Substring) -> String? {
        guard segment.contains("%") else { return String(segment) }
        var bytes: [UInt8] = []
        var it = segment.utf8.makeIterator()
        while let c = it.next() {
            guard c == UInt8(ascii: "%") else { bytes.append(c); continue }
            guard let h = it.next().flatMap(hexValue), let l = it.next().flatMap(hexValue) else { return nil }
            bytes.append(h << 4 | l)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
