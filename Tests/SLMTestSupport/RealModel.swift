import Foundation
import GGUF
import SLMTokenizer
import XCTest

/// The real model (the lookup above) and llama.cpp's reference outputs (in the checkout,
/// overridable from the environment), for the tokenizer, constraint and model tests.
extension TestPaths {
    /// The real model (`TestModel.path`).
    public static var model: String { TestModel.path }

    /// Tests/Fixtures/reference, made by scripts/make-reference. SLMD_REFERENCE may point at
    /// another set in the same format (e.g. one regenerated on a different CPU).
    public static var reference: URL {
        if let p = ProcessInfo.processInfo.environment["SLMD_REFERENCE"], !p.isEmpty {
            return URL(fileURLWithPath: p)
        }
        return fixtures.appendingPathComponent("reference")
    }
}

/// The real model's GGUF, loaded once per test process. A missing model is a failure with
/// instructions, never a silent skip: a skipped reference test looks exactly like a pass.
public enum RealModel {
    private static let loaded: Result<GGUFFile, Error> = Result {
        guard FileManager.default.fileExists(atPath: TestPaths.model) else {
            throw TestModel.Missing(description: TestModel.missingMessage)
        }
        return try GGUFFile(path: TestPaths.model)
    }
    private static let tokenizerResult: Result<Tokenizer, Error> = loaded.flatMap { g in
        Result { try Tokenizer(gguf: g) }
    }

    public static func gguf(file: StaticString = #filePath, line: UInt = #line) throws -> GGUFFile {
        do { return try loaded.get() } catch {
            XCTFail("\(error)", file: file, line: line)
            throw error
        }
    }

    public static func tokenizer(file: StaticString = #filePath, line: UInt = #line) throws -> Tokenizer {
        do { return try tokenizerResult.get() } catch {
            XCTFail("\(error)", file: file, line: line)
            throw error
        }
    }
}

/// A reference fixture decoded; a missing file is a test failure naming where it comes from.
public func loadReferenceJSON<T: Decodable>(_ name: String, as: T.Type) throws -> T {
    let url = TestPaths.reference.appendingPathComponent(name)
    guard let data = FileManager.default.contents(atPath: url.path) else {
        XCTFail("reference file \(url.path) not found (\(referenceHint))")
        throw CocoaError(.fileNoSuchFile)
    }
    return try JSONDecoder().decode(T.self, from: data)
}

/// Where a missing reference file should come from.
public let referenceHint = "the fixtures are in Tests/Fixtures/reference; scripts/make-reference regenerates them"

/// The perplexity text named by perplexity.json and llama-perplexity's token count for it.
public struct PerplexityText {
    public let url: URL
    public let nTokens: Int

    struct Info: Decodable {
        struct Text: Decodable {
            let file: String?
            let file_used: String?  // the name in reference sets made before the in-repo fixtures
            let n_tokens: Int
        }
        let text: Text
    }

    public static func load() throws -> PerplexityText {
        let info = try loadReferenceJSON("perplexity.json", as: Info.self)
        let name = try XCTUnwrap(info.text.file ?? info.text.file_used, "perplexity.json names no text file")
        return PerplexityText(url: TestPaths.reference.appendingPathComponent(name), nTokens: info.text.n_tokens)
    }
}
