import Foundation
import SLMKernels
@testable import SLMModel

/// Locations of the real model and llama.cpp's reference outputs.
enum ReferenceData {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `SLMD_MODEL`, else the cache `scripts/fetch-model` fills.
    static var modelPath: String {
        if let p = ProcessInfo.processInfo.environment["SLMD_MODEL"], !p.isEmpty { return p }
        let env = ProcessInfo.processInfo.environment
        let dir = env["SLMD_MODEL_DIR"]
            ?? ((env["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")) + "/slmd/models")
        return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    /// `SLMD_REFERENCE`, else `../shared/reference` beside the checkout.
    static var referenceDir: URL {
        if let p = ProcessInfo.processInfo.environment["SLMD_REFERENCE"], !p.isEmpty {
            return URL(fileURLWithPath: p)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/reference")
    }

    struct Missing: Error, CustomStringConvertible { let description: String }

    static func requireModel() throws -> String {
        guard FileManager.default.fileExists(atPath: modelPath) else {
            throw Missing(description: "model not found at \(modelPath): run scripts/fetch-model (or set SLMD_MODEL)")
        }
        return modelPath
    }

    static func json(_ name: String) throws -> [String: Any] {
        let url = referenceDir.appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw Missing(description: "reference file \(url.path) not found (set SLMD_REFERENCE)")
        }
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// One model and runner shared by the reference tests (loading is cheap, but the run
    /// state is not worth rebuilding per test).
    nonisolated(unsafe) private static var shared: (Model, Runner)?
    private static let lock = NSLock()

    static func runner(maxContext: Int = 1024) throws -> (Model, Runner) {
        lock.lock(); defer { lock.unlock() }
        if let s = shared, s.1.maxContext >= maxContext { return s }
        let model = try Model(path: try requireModel())
        let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                            maxBatch: 512, maxContext: max(maxContext, 1024))
        shared = (model, runner)
        return (model, runner)
    }
}
