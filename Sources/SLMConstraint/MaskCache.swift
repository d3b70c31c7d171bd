import Synchronization

/// Token masks shared by every request that uses the same schema with the same vocabulary
/// (a gateway sends thousands of commands against one intent schema; after the first few,
/// every state's mask is already known).
///
/// Keyed by the decoder's clamped state (see `ConstrainedDecoder`), bounded by `capacity`
/// masks of `vocabSize` bits (512 × 49,152 bits = 3 MiB); when full it is emptied and
/// refills with what current requests use. Bound to one automaton and vocabulary: a decoder
/// given a cache built for another pair traps.
public final class MaskCache: Sendable {
    public let capacity: Int
    let automaton: ObjectIdentifier
    let vocabulary: ObjectIdentifier
    private let masks: Mutex<[SchemaAutomaton.State: [UInt64]]>

    public init(automaton: SchemaAutomaton, vocabulary: ConstraintVocabulary, capacity: Int = 512) {
        self.capacity = capacity
        self.automaton = ObjectIdentifier(automaton)
        self.vocabulary = ObjectIdentifier(vocabulary)
        masks = Mutex([:])
    }

    public var count: Int { masks.withLock { $0.count } }

    func get(_ key: SchemaAutomaton.State) -> [UInt64]? {
        masks.withLock { $0[key] }
    }

    func put(_ key: SchemaAutomaton.State, _ mask: [UInt64]) {
        masks.withLock { m in
            if m.count >= capacity { m.removeAll(keepingCapacity: true) }
            m[key] = mask
        }
    }
}
