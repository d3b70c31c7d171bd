import Foundation
import GGUF
import SLMModel
import XCTest

/// Locations of the real model and llama.cpp's reference outputs, overridable from the
/// environment so CI and developers can point elsewhere.
enum TestPaths {
    /// The package root, found from this file's path so tests work from any cwd.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // SLMModelTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    static var model: String {
        // Same lookup as scripts/fetch-model: SLMD_MODEL, else the model cache directory.
        let env = ProcessInfo.processInfo.environment
        if let p = env["SLMD_MODEL"], !p.isEmpty { return p }
        let cache = env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.cache")
        return (env["SLMD_MODEL_DIR"] ?? cache + "/slmd/models") + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    static var reference: URL {
        if let p = ProcessInfo.processInfo.environment["SLMD_REFERENCE"], !p.isEmpty {
            return URL(fileURLWithPath: p)
        }
        return packageRoot.appendingPathComponent("../shared/reference").standardizedFileURL
    }
}

/// The real model's GGUF, loaded once per test process. A missing model is a failure with
/// instructions, never a silent skip: a skipped reference test looks exactly like a pass.
enum RealModel {
    private static let loaded: Result<GGUFFile, Error> = Result {
        guard FileManager.default.fileExists(atPath: TestPaths.model) else {
            throw MissingModel(path: TestPaths.model)
        }
        return try GGUFFile(path: TestPaths.model)
    }
    private static let tokenizerResult: Result<Tokenizer, Error> = loaded.flatMap { g in
        Result { try Tokenizer(gguf: g) }
    }

    struct MissingModel: Error, CustomStringConvertible {
        let path: String
        var description: String {
            "model file not found at \(path): run scripts/fetch-model (or set SLMD_MODEL to a copy of SmolLM2-135M-Instruct.Q4_1.gguf)"
        }
    }

    static func gguf(file: StaticString = #filePath, line: UInt = #line) throws -> GGUFFile {
        do { return try loaded.get() } catch {
            XCTFail("\(error)", file: file, line: line)
            throw error
        }
    }

    static func tokenizer(file: StaticString = #filePath, line: UInt = #line) throws -> Tokenizer {
        do { return try tokenizerResult.get() } catch {
            XCTFail("\(error)", file: file, line: line)
            throw error
        }
    }
}

func loadReferenceJSON<T: Decodable>(_ name: String, as: T.Type) throws -> T {
    let url = TestPaths.reference.appendingPathComponent(name)
    guard let data = FileManager.default.contents(atPath: url.path) else {
        XCTFail("reference file \(url.path) not found (set SLMD_REFERENCE to the reference directory)")
        throw CocoaError(.fileNoSuchFile)
    }
    return try JSONDecoder().decode(T.self, from: data)
}
