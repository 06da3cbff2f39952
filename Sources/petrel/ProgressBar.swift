// The command line's progress while a model loads (and `petrel build` quantizes), on stderr: on a
// terminal a bar redrawn in place, "loading weights [##########..........] 16/32 layers"; into a
// file or a pipe a plain line at each quarter, so logs stay readable.
import Foundation
import Models
import Synchronization

enum ProgressBar {
    private final class Shown: Sendable {
        let quarter = Mutex(-1)
    }

    static func layers(_ label: String, terminal: Bool = isatty(STDERR_FILENO) == 1) -> LoadProgress {
        let shown = Shown()
        return LoadProgress { done, total in
            guard total > 0 else { return }
            if terminal {
                let width = 30, filled = width * done / total
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(done)/\(total) layers\(done == total ? "\n" : "")".utf8))
                return
            }
            let quarter = 4 * done / total
            let show = shown.quarter.withLock { last in
                guard quarter > last else { return false }
                last = quarter
                return true
            }
            if show && quarter > 0 { FileHandle.standardError.write(Data("\(label): \(done)/\(total) layers\n".utf8)) }
        }
    }
}
