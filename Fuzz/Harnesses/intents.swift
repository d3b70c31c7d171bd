// Fuzz target "intents": intent files (Sources/SLMServer/Intents.swift).
//
// Input: an intent file. Checks:
// - IntentRegistry.parse either throws an IntentError or returns an intent whose examples
//   its automaton accepts, whose schemaText compiles again, and whose automaton passes the
//   same no-dead-end and soundness walks as the "schema" target;
// - loadFile on the same bytes in a real file and load(directory:) on a directory holding
//   only that file agree with parse.
#if canImport(Glibc)
import Glibc
#endif
@testable import SLMConstraint
@testable import SLMServer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIntents(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let dir = fuzzScratchDir
    let path = dir + "/input.json"
    fuzzWriteFile(path, bytes)

    let fromFile = Result { () throws(IntentError) in try IntentRegistry.loadFile(path) }
    let (loaded, errors) = IntentRegistry.load(directory: dir)
    fuzzCheck(loaded.count + errors.count == 1, "load(directory:) of one file gave \(loaded.count) intents, \(errors.count) errors")

    guard let text = String(validating: bytes, as: UTF8.self) else {
        guard case .failure(let e) = fromFile else { fuzzFail("loadFile accepted invalid UTF-8") }
        fuzzCheck(errors.first?.description == e.description, "directory load: \(errors) vs \(e)")
        return 0
    }
    let parsed = Result { () throws(IntentError) in try IntentRegistry.parse(text, file: path, defaultName: "input") }
    switch (parsed, fromFile) {
    case (.success(let a), .success(let b)):
        fuzzCheck(a.name == b.name && a.schemaText == b.schemaText && a.examples.map(\.output) == b.examples.map(\.output),
                  "loadFile and parse give different intents")
        fuzzCheck(loaded[a.name] != nil, "load(directory:) lost intent \(a.name)")
        check(a)
    case (.failure(let a), .failure(let b)):
        fuzzCheck(a.description == b.description, "loadFile and parse fail differently: \(b) / \(a)")
        fuzzCheck(errors.first?.description == a.description, "directory load: \(errors) vs \(a)")
    default:
        fuzzFail("loadFile and parse disagree: \(fromFile) / \(parsed)")
    }
    return 0
}

private func check(_ intent: Intent) {
    for (n, ex) in intent.examples.enumerated() {
        fuzzCheck(intent.automaton.accepts(Array(ex.output.utf8)), "example \(n) \(ex.output) not accepted")
    }
    let schema: OrderedJSON
    do { schema = try OrderedJSON(parsing: intent.schemaText) } catch {
        fuzzFail("schemaText does not parse: \(error)")
    }
    do { _ = try JSONSchemaCompiler.compile(intent.schemaText) } catch {
        fuzzFail("schemaText does not compile again: \(error)")
    }
    var rng = FuzzRNG(hashing: intent.schemaText.utf8)
    checkAutomaton(intent.automaton, schema: schema, rng: &rng, walks: 2)
}
