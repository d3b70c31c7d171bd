import Foundation
import SLMKernels
import XCTest
import SLMTestSupport

/// The offline tools, run as a user would: the real `slmd` binary and its JSON output.
final class ToolTests: XCTestCase {
    static var binary: String {
        if let p = ProcessInfo.processInfo.environment["SLMD_BIN"], !p.isEmpty { return p }
        // The test runner executable sits beside the products of the same build.
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("slmd").path
    }

    func run(_ args: [String], stdin: Data? = nil) throws -> (status: Int32, out: Data, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["SLMD_MODEL"] = TestPaths.model
        p.environment = env
        let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = errPipe
        try p.run()
        if let stdin { inPipe.fileHandleForWriting.write(stdin) }
        try inPipe.fileHandleForWriting.close()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        let err = errPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, out, String(decoding: err, as: UTF8.self))
    }

    func testTokenizeMatchesReferenceVerbatim() throws {
        _ = try ReferenceData.requireModel()
        let ref = try ReferenceData.json("tokenizer.json")
        for case let c as [String: Any] in (ref["cases"] as! [Any]).prefix(12) {
            let text = c["text"] as! String
            let r = try run(["tokenize", "--json"], stdin: Data(text.utf8))
            XCTAssertEqual(r.status, 0, r.err)
            let obj = try JSONSerialization.jsonObject(with: r.out) as! [String: Any]
            XCTAssertEqual(obj["ids"] as? [Int], c["ids"] as? [Int], "text \(text.debugDescription)")
            if let noSpecial = c["ids_no_special"] as? [Int] {
                let r2 = try run(["tokenize", "--json", "--no-parse-special"], stdin: Data(text.utf8))
                let o2 = try JSONSerialization.jsonObject(with: r2.out) as! [String: Any]
                XCTAssertEqual(o2["ids"] as? [Int], noSpecial)
            }
        }
    }

    func testGenerateJSONIsGreedyAndReportsTopLogits() throws {
        _ = try ReferenceData.requireModel()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-tool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let prompt = dir.appendingPathComponent("prompt.txt")
        try Data("The capital of France is".utf8).write(to: prompt)
        let r = try run(["generate", "--prompt-file", prompt.path, "--max-tokens", "4", "--temperature", "0",
                         "--top-logits", "3", "--threads", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try JSONSerialization.jsonObject(with: r.out) as! [String: Any]
        XCTAssertEqual(obj["prompt_ids"] as? [Int], [504, 3575, 282, 4649, 314])
        XCTAssertEqual(obj["generated_ids"] as? [Int], [7042, 30, 198, 198])  // " Paris.\n\n", as llama.cpp
        XCTAssertEqual(obj["text"] as? String, " Paris.\n\n")
        let top = obj["top_logits"] as! [[[Double]]]
        XCTAssertEqual(top.count, 4)
        XCTAssertEqual(top[0].count, 3)
        XCTAssertEqual(Int(top[0][0][0]), 7042)
        XCTAssertEqual(top[0][0][1], 17.569, accuracy: 1.0)
    }

    func testGenerateWithASchemaPrintsValidJSONAndItsCost() throws {
        _ = try ReferenceData.requireModel()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-tool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let schema = dir.appendingPathComponent("city.json")
        try Data(#"{"type":"object","properties":{"city":{"type":"string","maxLength":20},"country":{"type":"string","maxLength":20}},"required":["city","country"],"additionalProperties":false}"#.utf8).write(to: schema)
        let r = try run(["generate", "--prompt", "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                         "--max-tokens", "40", "--temperature", "0", "--threads", "2", "--weights-layout", "mapped", "--schema", schema.path])
        XCTAssertEqual(r.status, 0, r.err)
        let lines = String(decoding: r.out, as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 2, "the JSON, then the statistics line")
        let obj = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(Set(obj.keys), ["city", "country"])
        XCTAssertTrue(lines[0].hasPrefix(#"{"city":""#), String(lines[0]))
        XCTAssertTrue(lines[1].hasPrefix("[stop · ") && lines[1].contains("forced") && lines[1].contains("tok/s"), String(lines[1]))
        let bad = try run(["generate", "--prompt", "x", "--schema", dir.appendingPathComponent("missing.json").path])
        XCTAssertNotEqual(bad.status, 0)
    }

    func testPerplexityToolAndErrors() throws {
        _ = try ReferenceData.requireModel()
        // The first 4 KiB of the reference text keep the tool test quick; the full-text figures
        // are checked in PerplexityReferenceTests.
        let full = try Data(contentsOf: PerplexityText.load().url)
        let text = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-ppl-\(UUID().uuidString).txt")
        try full.prefix(4096).write(to: text)
        let r = try run(["perplexity", "--file", text.path, "--ctx", "64", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try JSONSerialization.jsonObject(with: r.out) as! [String: Any]
        let n = try XCTUnwrap(obj["n_tokens"] as? Int)
        XCTAssertGreaterThan(n, 800)
        XCTAssertEqual(obj["n_chunks"] as? Int, n / 64)
        let ppl = try XCTUnwrap(obj["ppl"] as? Double)
        XCTAssertTrue(ppl > 10 && ppl < 60, "ppl \(ppl)")

        let bad = try run(["generate", "--prompt", "x", "--model", "/nonexistent.gguf"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("/nonexistent.gguf"), bad.err)
        let invalid = try run(["tokenize"], stdin: Data([0x66, 0xFF, 0x66]))
        XCTAssertNotEqual(invalid.status, 0)
        XCTAssertTrue(invalid.err.contains("UTF-8"), invalid.err)
    }

    /// `--kernels` forces a path; they all give the same greedy output as auto. The quantized
    /// matmuls and the quantizer are bit-identical on every path; the attention's f16 dot sums
    /// in lanes (slm_kernels.h), so the logits are bit-identical between paths that share the
    /// f16 helpers (the two x86 paths; the two NEON paths) and agree closely otherwise. A path
    /// this CPU cannot run is refused with the list of those it can.
    func testKernelChoicesGiveTheSameGreedyOutputAsAuto() throws {
        _ = try ReferenceData.requireModel()
        func generate(_ kernels: KernelChoice) throws -> (ids: [Int], top: [[[Double]]]) {
            let r = try run(["generate", "--prompt", "The capital of France is", "--max-tokens", "6", "--temperature", "0",
                             "--top-logits", "5", "--threads", "2", "--weights-layout", "mapped", "--json",
                             "--kernels", kernels.rawValue])
            XCTAssertEqual(r.status, 0, "--kernels \(kernels.rawValue): \(r.err)")
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: r.out) as? [String: Any])
            return (try XCTUnwrap(obj["generated_ids"] as? [Int]), try XCTUnwrap(obj["top_logits"] as? [[[Double]]]))
        }
        func f16Helpers(_ k: KernelChoice) -> String {
            switch k {
            case .avx512vnni, .avx2: "x86"
            case .neonDotprod, .neon: "neon"
            case .portable, .auto: "\(k)"
            }
        }
        let auto = try generate(.auto)
        XCTAssertEqual(Array(auto.ids.prefix(4)), [7042, 30, 198, 198])  // " Paris.\n\n"
        let forced = KernelChoice.supported.filter { $0 != .auto }
        let best = try XCTUnwrap(forced.first)  // what auto runs
        XCTAssertTrue(forced.contains(.portable))
        #if arch(x86_64)
        XCTAssertTrue(forced.contains(.avx2), "the x86-64 machines slmd is tested on have AVX2")
        #endif
        for choice in forced {
            let out = try generate(choice)
            XCTAssertEqual(out.ids, auto.ids, "--kernels \(choice.rawValue)")
            if f16Helpers(choice) == f16Helpers(best) {
                XCTAssertEqual(out.top, auto.top, "--kernels \(choice.rawValue): logits differ from auto's")
            } else {
                // Every attention score summed in another order, carried through 30 layers of
                // f16-rounded value accumulators: the top logit moves by ~1% (0.35 of 31 seen).
                for (a, b) in zip(out.top, auto.top) {
                    XCTAssertEqual(a[0][0], b[0][0])
                    XCTAssertEqual(a[0][1], b[0][1], accuracy: 0.03 * abs(b[0][1]), "--kernels \(choice.rawValue): top logit")
                }
            }
        }

        let unsupported = try XCTUnwrap(KernelChoice.allCases.first { !$0.isSupported })
        let supported = KernelChoice.supported.map(\.rawValue).joined(separator: ", ")
        let r = try run(["generate", "--prompt", "x", "--max-tokens", "1", "--kernels", unsupported.rawValue])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("kernels '\(unsupported.rawValue)' cannot run on this CPU; it supports \(supported)"), r.err)
        let bad = try run(["bench", "--kernels", "sse2"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("sse2"), bad.err)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-tool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let conf = dir.appendingPathComponent("slmd.conf")
        try Data("kernels = \(unsupported.rawValue)\n".utf8).write(to: conf)
        let serve = try run(["serve", "--config", conf.path, "--check-config"])
        XCTAssertNotEqual(serve.status, 0)
        XCTAssertTrue(serve.err.contains("invalid configuration: kernels '\(unsupported.rawValue)' cannot run on this CPU; it supports \(supported)"),
                      serve.err)
        try Data("kernels = portable\n".utf8).write(to: conf)
        let ok = try run(["serve", "--config", conf.path, "--check-config"])
        XCTAssertEqual(ok.status, 0, ok.err)
        let out = String(decoding: ok.out, as: UTF8.self)
        XCTAssertTrue(out.contains("kernels portable-c (portable)"), out)
        // The model summary (issue #12), with the default model's figures.
        XCTAssertTrue(out.contains("model: llama, 134515008 parameters, tensors 210 Q4_1 + 61 F32 + 1 Q8_0, "
                                   + "tokenizer gpt2 (smollm), chat template chatml\n"), out)
    }
}
