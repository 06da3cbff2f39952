// How far a model's load (or `petrel build`'s quantization) has gone, layer by layer, for the
// command line's progress bar. The loaders call `step(done, of:)` after each layer; the default
// reports nothing.
public struct LoadProgress: Sendable {
    private let report: (@Sendable (Int, Int) -> Void)?

    public init(_ report: @escaping @Sendable (_ done: Int, _ total: Int) -> Void) { self.report = report }
    private init() { report = nil }

    public static let none = LoadProgress()

    public func step(_ done: Int, of total: Int) { report?(done, total) }
}
