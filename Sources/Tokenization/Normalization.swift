// Unicode normalization forms for NormalizerStep (Foundation's, as Swift's stdlib keeps its own private).
import Foundation

func unicodeNormalize(_ s: [UInt32], _ form: NormalizerStep) -> [UInt32] {
    let text = scalarString(s)
    let out: String
    switch form {
    case .nfc: out = text.precomposedStringWithCanonicalMapping
    case .nfd: out = text.decomposedStringWithCanonicalMapping
    case .nfkc: out = text.precomposedStringWithCompatibilityMapping
    case .nfkd: out = text.decomposedStringWithCompatibilityMapping
    default: return s
    }
    return out.unicodeScalars.map(\.value)
}
