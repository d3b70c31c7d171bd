// Fuzz target "schema": JSONSchemaCompiler, SchemaAutomaton and OrderedJSON.
//
// Input: JSON Schema text (the seeds and Fuzz/dicts/schema.dict push it towards schemas that
// compile, with bounds near Int64.min/max and huge maxItems/maxLength); or, when the first
// byte is 0x01, bytes that drive the schema generator of Fuzz/Support/SchemaGen.swift. Checks:
// - OrderedJSON: compactText of a parsed document parses back to the same document;
// - compiling the text and compiling its compact form agree (both fail with the same error
//   code and path, or both succeed): intents keep the schema as compact text;
// - the compiled automaton has no dead ends, and random walks to acceptance produce JSON
//   that the schema admits (see Fuzz/Support/SchemaOracle.swift);
// - a compile error is a SchemaError, never a trap.
#if canImport(Glibc)
import Glibc
#endif
@testable import SLMConstraint

/// SLMD_FUZZ_PRINT=1: print each schema as text first (turns a generator-mode crash input into
/// the schema text a regression test needs: `SLMD_FUZZ_PRINT=1 scripts/fuzz repro schema FILE`).
private let printSchemas = getenv("SLMD_FUZZ_PRINT") != nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSchema(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let text: String
    if size > 0 && data[0] == 0x01 {
        var source = ByteSource(Array(input.dropFirst()))
        text = source.schema().compactText
    } else {
        text = String(decoding: input, as: UTF8.self)
    }
    if printSchemas { fputs(text + "\n", stderr) }

    let doc: OrderedJSON
    do { doc = try OrderedJSON(parsing: text) } catch {
        // Not JSON: the compiler must say so, as invalidJSON.
        do {
            _ = try JSONSchemaCompiler.compile(text)
            fuzzFail("compile accepted text OrderedJSON refuses (\(error))")
        } catch {
            // A text over the size limit may be refused as tooLarge before it is parsed.
            fuzzCheck(error.code == .invalidJSON || error.code == .tooLarge, "unparsable schema reported as \(error.code)")
        }
        return 0
    }
    let compact = doc.compactText
    do {
        let again = try OrderedJSON(parsing: compact)
        fuzzCheck(again == doc, "OrderedJSON compactText round trip differs: \(fuzzShow(Array(compact.utf8)))")
        fuzzCheck(again.compactText == compact, "OrderedJSON compactText not stable")
    } catch {
        fuzzFail("OrderedJSON cannot parse its own compactText (\(error)): \(fuzzShow(Array(compact.utf8)))")
    }

    let fromText = Result { () throws(SchemaError) in try JSONSchemaCompiler.compile(text) }
    let fromValue = Result { () throws(SchemaError) in try JSONSchemaCompiler.compile(compact) }
    // The raw text's size is limited before parsing: whitespace can make the text too large
    // where its compact form is not.
    func textTooLarge(_ e: SchemaError) -> Bool { e.code == .tooLarge && e.path == "#" && text.utf8.count > compact.utf8.count }
    switch (fromText, fromValue) {
    case (.failure(let e1), _) where textTooLarge(e1):
        break
    case (.success(let a), .success):
        var rng = FuzzRNG(hashing: input)
        checkAutomaton(a, schema: doc, rng: &rng)
    case (.failure(let e1), .failure(let e2)):
        fuzzCheck(e1.code == e2.code && e1.path == e2.path, "text and compact text fail differently: \(e1) / \(e2)")
        _ = e1.description
    default:
        fuzzFail("compiling the text and its compact form disagree: \(fromText) / \(fromValue)")
    }
    return 0
}
