import Foundation
import SLMKernels
@testable import SLMModel
import SLMTestSupport

/// Locations of the real model and llama.cpp's reference outputs.
enum ReferenceData {
    static var modelPath: String { TestPaths.model }
    static var referenceDir: URL { TestPaths.reference }

    struct Missing: Error, CustomStringConvertible { let description: String }

    static func requireModel() throws -> String {
        guard FileManager.default.fileExists(atPath: modelPath) else { throw Missing(description: TestModel.missingMessage) }
        return modelPath
    }

    static func json(_ name: String) throws -> [String: Any] {
        let url = referenceDir.appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw Missing(description: "reference file \(url.path) not found (\(referenceHint))")
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
                            maxBatch: 512, maxContext: max(maxContext, 1024), maxLogits: 256)
        shared = (model, runner)
        return (model, runner)
    }
}
