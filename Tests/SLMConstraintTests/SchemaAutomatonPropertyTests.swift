import SLMTestSupport
import XCTest
@testable import SLMConstraint

/// Property-based tests: random schemas over the supported subset, random valid instances
/// and random corruptions; the automaton must agree with `ReferenceMatcher` on every string.
final class SchemaAutomatonPropertyTests: XCTestCase {
    static let schemaCount = 1000
    static let instancesPerSchema = 20

    func forEachSchema(seed: UInt64, _ body: (OrderedJSON, SchemaAutomaton, inout SchemaGen) throws -> Void) throws {
        var gen = SchemaGen(seed: seed)
        for _ in 0..<Self.schemaCount {
            let schema = gen.schema()
            let a: SchemaAutomaton
            do { a = try JSONSchemaCompiler.compile(schema) } catch {
                XCTFail("generated schema \(schema.compactText) did not compile: \(error)")
                continue
            }
            try body(schema, a, &gen)
        }
    }

    func testValidInstancesAreAcceptedByteByByte() throws {
        var count = 0
        try forEachSchema(seed: 1) { schema, a, gen in
            for _ in 0..<Self.instancesPerSchema {
                var p = false
                let text = gen.instance(schema, poisoned: &p)
                let shown = String(decoding: text, as: UTF8.self)
                XCTAssertTrue(ReferenceMatcher.accepts(schema, text), "reference rejects generated \(shown) for \(schema.compactText)")
                var s = a.initialState
                for (k, byte) in text.enumerated() {
                    guard let next = a.step(s, byte) else {
                        XCTFail("refused byte \(k) of \(shown) for \(schema.compactText)")
                        return
                    }
                    s = next
                }
                XCTAssertTrue(a.isAccepting(s), "\(shown) not accepted for \(schema.compactText)")
                if let bound = a.maxOutputBytes { XCTAssertLessThanOrEqual(text.count, bound, "\(shown) longer than maxOutputBytes") }
                if case .string("object")? = schema["type"] { XCTAssertTrue(a.isComplete(s), "\(shown) not complete") }
                count += 1
            }
        }
        print("valid instances accepted: \(count)")
    }

    func testPoisonedInstancesAreRejected() throws {
        var counts: [String: Int] = [:]
        try forEachSchema(seed: 2) { schema, a, gen in
            for poison in SchemaGen.Poison.allCases where poison != .none {
                for _ in 0..<4 {
                    var poisoned = false
                    let text = gen.instance(schema, poison: poison, poisoned: &poisoned)
                    guard poisoned else { continue }
                    let shown = String(decoding: text, as: UTF8.self)
                    XCTAssertFalse(ReferenceMatcher.accepts(schema, text), "\(poison) did not poison \(shown) for \(schema.compactText)")
                    XCTAssertFalse(a.accepts(text), "\(poison): accepted \(shown) for \(schema.compactText)")
                    counts["\(poison)", default: 0] += 1
                }
            }
        }
        print("poisoned instances rejected: \(counts.sorted { $0.key < $1.key })")
        XCTAssertEqual(counts.count, SchemaGen.Poison.allCases.count - 1, "every kind of poison was exercised")
    }

    func testByteMutationsAgreeWithReference() throws {
        var total = 0, rejected = 0
        let alphabet = Array("{}[],:\"\\ 0123456789-.eE+tfnulxa".utf8) + [0x00, 0x0A, 0xC3, 0xA9, 0xE6, 0x80, 0xFF]
        try forEachSchema(seed: 3) { schema, a, gen in
            for _ in 0..<Self.instancesPerSchema {
                var p = false
                var text = gen.instance(schema, poisoned: &p)
                switch gen.int(0...4) {
                case 0 where !text.isEmpty: text[gen.int(0...text.count - 1)] = gen.pick(alphabet)
                case 1: text = Array(text.prefix(gen.int(0...text.count)))
                case 2: text += [gen.pick(alphabet)]
                case 3: text.insert(gen.pick([0x20, 0x0A, 0x09]), at: gen.int(0...text.count))
                default:
                    if !text.isEmpty { text.remove(at: gen.int(0...text.count - 1)) }
                }
                let ref = ReferenceMatcher.accepts(schema, text)
                XCTAssertEqual(a.accepts(text), ref, "\(String(decoding: text, as: UTF8.self)) for \(schema.compactText)")
                total += 1
                if !ref { rejected += 1 }
            }
        }
        print("byte mutations: \(total), invalid per reference: \(rejected)")
    }

    /// Random walks choosing any allowed byte: no state is a dead end, and whenever the
    /// automaton calls the output whole, the reference agrees.
    func testRandomWalksNeverDeadEnd() throws {
        var steps = 0, completed = 0
        try forEachSchema(seed: 4) { schema, a, gen in
            for _ in 0..<4 {
                var s = a.initialState
                var text: [UInt8] = []
                for _ in 0..<120 {
                    if a.isComplete(s) { break }
                    let allowed = a.allowedBytes(s)
                    XCTAssertFalse(allowed.isEmpty, "dead end after \(String(decoding: text, as: UTF8.self)) for \(schema.compactText)")
                    if allowed.isEmpty { return }
                    // Prefer structure over long free text, so walks finish.
                    let closers = allowed.filter { "}]\",:".utf8.contains($0) }
                    let b = !closers.isEmpty && gen.chance(0.5) ? gen.pick(closers) : gen.pick(allowed)
                    text.append(b)
                    s = a.step(s, b)!
                    steps += 1
                }
                XCTAssertEqual(a.isAccepting(s), ReferenceMatcher.accepts(schema, text),
                               "\(String(decoding: text, as: UTF8.self)) for \(schema.compactText)")
                if a.isComplete(s) { completed += 1 }
            }
        }
        print("random walk steps: \(steps), walks completed: \(completed)")
    }
}
