// Where the default model (SmolLM2-135M-Instruct Q4_1, fetched by scripts/fetch-model.sh) lives.
import Foundation

enum DefaultModel {
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    static var cacheDirectory: String { Environment.current.cacheDirectory }

    static var path: String { cacheDirectory + "/models/" + fileName }

    /// The default model's path, or an error telling how to fetch it.
    static func resolve() throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("no --model given and the default model is not at \(path); run scripts/fetch-model.sh (or `make model`)")
        }
        return path
    }

    /// The default model's Triton repository in the cache, written on first use.
    static func repository() throws -> String {
        let model = try resolve()
        let dir = cacheDirectory + "/repository"
        if !FileManager.default.fileExists(atPath: dir + "/ensemble/config.pbtxt") {
            _ = try RepositoryTemplate.write(modelPath: model, outputDirectory: dir)
        }
        return dir
    }
}

import Serving

import ArgumentParser
