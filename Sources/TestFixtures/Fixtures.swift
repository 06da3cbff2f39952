// TestFixtures: paths and loaders for the committed fixtures made by scripts/make_fixtures.py,
// shared by the test targets (never linked into the executable).
import Foundation

public enum Fixtures {
    public static let directory: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures").path
    }()

    public static func path(_ name: String) -> String { directory + "/" + name }

    public static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(name)))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// Reference prompts: token ids and logits for every position.
    public struct LogitsCase: Sendable {
        public let ids: [Int32]
        public let logits: [[Float]]
    }

    public static func logitCases(_ file: String, key: String = "prompts") throws -> [LogitsCase] {
        let root = try json(file)
        return (root[key] as! [[String: Any]]).map { p in
            LogitsCase(ids: (p["ids"] as! [NSNumber]).map { $0.int32Value },
                       logits: (p["logits"] as! [[NSNumber]]).map { $0.map(\.floatValue) })
        }
    }

    /// The default model in the cache (make test fetches it first).
    public static var smolLM2: String {
        if let p = ProcessInfo.processInfo.environment["PETREL_MODEL"], !p.isEmpty { return p }
        let cache = ProcessInfo.processInfo.environment["PETREL_CACHE"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/petrel"
        return cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }
}

/// Largest row-wise relative L2 error.
public func maxRowRelativeError(_ got: [[Float]], _ expected: [[Float]]) -> Float {
    var worst: Float = 0
    for (g, e) in zip(got, expected) {
        var num: Float = 0, den: Float = 0
        for (x, y) in zip(g, e) { num += (x - y) * (x - y); den += y * y }
        worst = max(worst, (num / max(den, 1e-30)).squareRoot())
    }
    return worst
}
