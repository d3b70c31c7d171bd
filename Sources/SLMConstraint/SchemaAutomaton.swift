// Over ~500 lines on purpose: `step`, the frame stack and the tables it reads form one state
// machine whose no-dead-end invariant is argued across all of them; split, it would be read
// in pieces that each look wrong.

import SLMJSON

/// A deterministic byte-level matcher for the compact JSON a compiled schema admits.
///
/// The state is a stack of fixed-size `Frame`s, one per open value (object, array, string,
/// number, literal), at most `maxDepth` deep; `step` consumes one byte or refuses it.
/// Everything the matcher needs about the schema (property keys, enum values) lives in
/// immutable tables here, so a state is a few plain integers: cheap to copy, hash and compare.
///
/// Invariant that makes constrained generation terminate cleanly: every state `step`
/// reaches can still be completed to a valid document (no dead ends). Integer prefixes that
/// can no longer land in `minimum...maximum` are refused as they are typed, strings stop
/// accepting characters at `maxLength`, arrays stop accepting items at `maxItems`.
///
/// Grammar produced (a subset of RFC 8259 JSON, one spelling per value where practical):
/// - no whitespace outside strings; object members in schema order, optional ones omittable;
/// - integers `-?(0|[1-9][0-9]*)` without `-0`; unbounded integers have at most
///   `maxIntegerDigits` digits;
/// - numbers: RFC 8259 syntax with at most `maxNumberDigits` integer and fraction digits and
///   `maxExponentDigits` exponent digits;
/// - strings: raw UTF-8 (validated: no overlongs, no surrogates), no raw control bytes,
///   escapes `\" \\ \/ \b \f \n \r \t` and `\uXXXX` except surrogates (write non-BMP
///   characters raw); `maxLength` counts code points, an escape counts as one;
/// - `enum`/`const` values and property keys in their `OrderedJSON.compactText` spelling only.
public final class SchemaAutomaton: Sendable {
    public static let maxIntegerDigits = 15
    public static let maxNumberDigits = 15
    public static let maxExponentDigits = 3

    let nodes: [Node]
    let root: Int32
    /// Tries for property keys and enum literals, shared by all nodes. Node t's edges are
    /// `edgeByte/edgeTarget[edgeStart[t]..<edgeStart[t+1]]`; `terminal[t]` is -1 or a payload
    /// (the property index for key tries, 0 for literal tries).
    let edgeStart: [Int32]
    let edgeByte: [UInt8]
    let edgeTarget: [Int32]
    let terminal: [Int32]
    /// Deepest frame stack any state can have.
    public let maxDepth: Int
    /// The schema the automaton was compiled from.
    public let schema: OrderedJSON

    init(nodes: [Node], root: Int32, tries: TrieBuilder, schema: OrderedJSON) {
        self.nodes = nodes
        self.root = root
        let flat = tries.flatten()
        edgeStart = flat.start
        edgeByte = flat.bytes
        edgeTarget = flat.targets
        terminal = tries.terminal
        maxDepth = nodes[Int(root)].depth
        self.schema = schema
        maxOutputBytes = Self.maxBytes(root, nodes)
    }

    /// Longest output the schema admits in bytes, or nil when unbounded (a string without
    /// `maxLength`, an array without `maxItems`). Every token has at least one byte, so a
    /// request with `max_tokens >= maxOutputBytes` always ends with a complete document.
    public let maxOutputBytes: Int?

    static func maxBytes(_ id: Int32, _ nodes: [Node]) -> Int? {
        let n = nodes[Int(id)]
        // Checked arithmetic throughout: `maxItems` and `maxLength` come from the schema, and
        // nested arrays of 2^31 items overflow Int. A bound too large to represent is as good
        // as none (nil), since no request's max_tokens could reach it.
        func add(_ a: Int?, _ b: Int?) -> Int? {
            guard let a, let b else { return nil }
            let (s, o) = a.addingReportingOverflow(b)
            return o ? nil : s
        }
        func mul(_ a: Int, _ b: Int) -> Int? {
            let (p, o) = a.multipliedReportingOverflow(by: b)
            return o ? nil : p
        }
        switch n.kind {
        case .string:
            // A character is at most 6 bytes (`\uXXXX`).
            return n.maxLength == .max ? nil : add(2, mul(6, Int(n.maxLength)))
        case .integer:
            return 1 + String(Swift.max(n.lo.magnitude, n.hi.magnitude)).count
        case .number:
            return 1 + maxNumberDigits + 1 + maxNumberDigits + 2 + maxExponentDigits
        case .literals:
            return n.literals.map(\.count).max() ?? 0
        case .union:
            var best = 0
            for m in Set(n.dispatch) where m >= 0 {
                guard let b = maxBytes(m, nodes) else { return nil }
                best = Swift.max(best, b)
            }
            return best
        case .array:
            if n.maxItems == 0 { return 2 }
            guard n.maxItems != .max, let item = maxBytes(n.item, nodes), let itemAndComma = add(item, 1),
                  let items = mul(Int(n.maxItems), itemAndComma) else { return nil }
            return add(1, items)  // brackets, items and commas: 2 + k(item + 1) - 1
        case .object:
            var total: Int? = 2
            for p in n.props {
                var key: [UInt8] = []
                OrderedJSON.appendQuoted(p.name, to: &key)
                total = add(total, add(maxBytes(p.node, nodes), key.count + 2))  // key, colon, comma
            }
            return total
        }
    }

    // MARK: Public state API

    /// Where the matcher is: which values are open and how far each has got.
    public struct State: Hashable, Sendable {
        /// `frames[0..<depth]` is the stack, innermost last; slots past `depth` are scratch.
        var frames: [Frame]
        public internal(set) var depth: Int

        public static func == (a: State, b: State) -> Bool {
            a.depth == b.depth && a.frames[0..<a.depth] == b.frames[0..<b.depth]
        }

        public func hash(into h: inout Hasher) {
            h.combine(depth)
            for i in 0..<depth { h.combine(frames[i]) }
        }
    }

    /// Nothing consumed yet: a root value is expected.
    public var initialState: State {
        var frames = [Frame](repeating: Frame(), count: maxDepth)
        frames[0] = Frame(kind: .value, node: root)
        return State(frames: frames, depth: 1)
    }

    /// The state after `byte`, or nil if `byte` cannot continue valid output.
    public func step(_ state: State, _ byte: UInt8) -> State? {
        var s = state
        let ok = s.frames.withUnsafeMutableBufferPointer { step($0.baseAddress!, &s.depth, byte) }
        return ok ? s : nil
    }

    /// The state after all of `bytes`, or nil at the first refused byte.
    public func step<C: Collection>(_ state: State, _ bytes: C) -> State? where C.Element == UInt8 {
        var s = state
        let ok = s.frames.withUnsafeMutableBufferPointer { buf in
            for b in bytes where !step(buf.baseAddress!, &s.depth, b) { return false }
            return true
        }
        return ok ? s : nil
    }

    /// The root value is closed and nothing may follow: generation must stop.
    public func isComplete(_ s: State) -> Bool { s.depth == 0 }

    /// The output so far is a whole valid document (it may still be extended only when the
    /// root is a bare number or an enum whose values extend one another, such as 1 and 12).
    public func isAccepting(_ s: State) -> Bool {
        s.depth == 0 || (s.depth == 1 && canEnd(s.frames[0]))
    }

    /// Whether a value has to start here (nothing of it written yet).
    public func isValueStart(_ s: State) -> Bool { s.depth > 0 && s.frames[s.depth - 1].kind == .value }

    /// Whether `bytes` is exactly one valid document.
    public func accepts<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        guard let s = step(initialState, bytes) else { return false }
        return isAccepting(s)
    }

    /// Every byte that may follow `state`.
    public func allowedBytes(_ state: State) -> [UInt8] {
        var out: [UInt8] = []
        forEachAllowedByte(state) { b in out.append(b); return true }
        return out
    }

    /// The only byte that may follow `state`, or nil when none or several may.
    public func onlyAllowedByte(_ state: State) -> UInt8? {
        var only: UInt8? = nil
        var count = 0
        forEachAllowedByte(state) { b in
            count += 1
            only = b
            return count < 2
        }
        return count == 1 ? only : nil
    }

    /// Calls `body` with each byte that may follow `state`, ascending, until it returns false.
    /// Steps a scratch copy of the stack, so it allocates nothing per byte.
    func forEachAllowedByte(_ state: State, _ body: (UInt8) -> Bool) {
        withUnsafeTemporaryAllocation(of: Frame.self, capacity: max(1, maxDepth)) { tmp in
            let p = tmp.baseAddress!
            state.frames.withUnsafeBufferPointer { src in
                for b in 0...255 {
                    p.initialize(from: src.baseAddress!, count: state.depth)
                    var depth = state.depth
                    let ok = step(p, &depth, UInt8(b))
                    p.deinitialize(count: state.depth)
                    if ok && !body(UInt8(b)) { return }
                }
            }
        }
    }

    // MARK: Frames

    enum FrameKind: UInt8 { case value, object, array, string, integer, number, literal, empty }

    /// One open value. Field use by kind:
    /// - value: `node` (a value of that node must start here; a union picks its member by
    ///   the first byte).
    /// - object: `phase` (Obj), `a` next property index that may appear, `b` key-trie node.
    /// - array: `phase` (Arr), `a` items so far.
    /// - string: `phase` (Str), `a` characters so far, `b` hex digits or UTF-8 continuation
    ///   bytes still due, `lo/hi` range of the next continuation byte, `v` \u value so far.
    /// - integer: `phase` (IntP), `a` digits, `b` 1 when negative, `v` magnitude.
    /// - number: `phase` (Num), `a` digits in the current part.
    /// - literal: `a` trie node.
    struct Frame: Hashable, Sendable {
        var kind: FrameKind = .empty
        var phase: UInt8 = 0
        var lo: UInt8 = 0
        var hi: UInt8 = 0
        var node: Int32 = 0
        var a: Int32 = 0
        var b: Int32 = 0
        var v: UInt64 = 0

        init() {}
        init(kind: FrameKind, node: Int32) {
            self.kind = kind
            self.node = node
        }
    }

    enum Obj { static let open: UInt8 = 0, afterOpen: UInt8 = 1, afterComma: UInt8 = 2, inKey: UInt8 = 3, afterValue: UInt8 = 4 }
    enum Arr { static let open: UInt8 = 0, afterOpen: UInt8 = 1, afterValue: UInt8 = 2 }
    enum Str { static let open: UInt8 = 0, content: UInt8 = 1, escape: UInt8 = 2, unicode: UInt8 = 3, utf8: UInt8 = 4 }
    enum IntP { static let start: UInt8 = 0, minus: UInt8 = 1, digits: UInt8 = 2 }
    enum Num {
        static let start: UInt8 = 0, minus: UInt8 = 1, zero: UInt8 = 2, int: UInt8 = 3, dot: UInt8 = 4
        static let frac: UInt8 = 5, e: UInt8 = 6, eSign: UInt8 = 7, exp: UInt8 = 8
    }

    /// Whether the innermost value may end here (a following byte then goes to its parent).
    func canEnd(_ f: Frame) -> Bool {
        switch f.kind {
        case .integer:
            guard f.phase == IntP.digits else { return false }
            let n = nodes[Int(f.node)]
            return inRange(neg: f.b == 1, magnitude: f.v, n.lo, n.hi)
        case .number:
            return f.phase == Num.zero || f.phase == Num.int || (f.phase == Num.frac && f.a > 0) || (f.phase == Num.exp && f.a > 0)
        case .literal:
            return terminal[Int(f.a)] >= 0
        default:
            return false
        }
    }

    @inline(__always)
    func trieNext(_ t: Int32, _ byte: UInt8) -> Int32 {
        var e = Int(edgeStart[Int(t)])
        let end = Int(edgeStart[Int(t) + 1])
        while e < end {
            if edgeByte[e] == byte { return edgeTarget[e] }
            e += 1
        }
        return -1
    }

    @inline(__always)
    func trieIsLeaf(_ t: Int32) -> Bool { edgeStart[Int(t)] == edgeStart[Int(t) + 1] }

    // MARK: Integers

    @inline(__always)
    func inRange(neg: Bool, magnitude m: UInt64, _ lo: Int64, _ hi: Int64) -> Bool {
        // Bounds are within ±10^18 (checked at compile), so the magnitudes fit Int64.
        guard m <= 1_000_000_000_000_000_000 else { return false }
        let v = neg ? -Int64(m) : Int64(m)
        return v >= lo && v <= hi
    }

    /// Whether an integer that starts with this sign and these digits can still end in range.
    /// Completions of magnitude prefix m (m ≥ 1) are m·10^j ... m·10^j + 10^j − 1 for j ≥ 0.
    func viable(neg: Bool, digits: Int32, magnitude m: UInt64, _ lo: Int64, _ hi: Int64) -> Bool {
        // Magnitude range that keeps the value in [lo, hi] with this sign.
        let mlo: UInt64, mhi: UInt64
        if neg {
            guard lo <= -1 else { return false }
            mlo = UInt64(max(1, hi >= 0 ? 1 : -hi))
            mhi = UInt64(-lo)
        } else {
            guard hi >= 0 else { return false }
            mlo = UInt64(max(0, lo))
            mhi = UInt64(hi)
        }
        guard mlo <= mhi else { return false }
        if digits == 0 { return true }
        if m == 0 { return !neg && mlo == 0 }
        var a = m, width: UInt64 = 1
        while a <= mhi {
            if a + (width - 1) >= mlo { return true }
            let (a2, o1) = a.multipliedReportingOverflow(by: 10)
            let (w2, o2) = width.multipliedReportingOverflow(by: 10)
            if o1 || o2 { return false }
            a = a2
            width = w2
        }
        return false
    }

    /// Whether one more digit could follow (some digit keeps the prefix viable).
    func integerCanGrow(_ f: Frame, _ n: Node) -> Bool {
        if f.v == 0 { return false }  // a leading 0 is the whole magnitude
        let neg = f.b == 1
        for d in UInt64(0)...9 {
            let (m, o) = f.v.multipliedReportingOverflow(by: 10)
            if o { return false }
            if viable(neg: neg, digits: f.a + 1, magnitude: m + d, n.lo, n.hi) { return true }
        }
        return false
    }

    // MARK: Step

    /// Consumes `byte` on the stack `f[0..<depth]`; false if the byte is refused (the stack
    /// is then unspecified: callers step a copy). Allocation-free, so the mask search can
    /// call it on flat scratch buffers.
    func step(_ f: UnsafeMutablePointer<Frame>, _ depth: inout Int, _ byte: UInt8) -> Bool {
        while depth > 0 {
            let top = depth - 1
            switch f[top].kind {
            case .value:
                var id = f[top].node
                let n = nodes[Int(id)]
                if n.kind == .union {
                    id = n.dispatch[Int(byte)]
                    if id < 0 { return false }
                }
                var fr = Frame(kind: nodes[Int(id)].frameKind, node: id)
                if fr.kind == .literal { fr.a = nodes[Int(id)].trieRoot }
                f[top] = fr
                continue  // the new frame takes the byte

            case .object:
                let n = nodes[Int(f[top].node)]
                switch f[top].phase {
                case Obj.open:
                    guard byte == UInt8(ascii: "{") else { return false }
                    f[top].phase = Obj.afterOpen
                    return true
                case Obj.afterOpen, Obj.afterComma:
                    if byte == UInt8(ascii: "}") && f[top].phase == Obj.afterOpen {
                        guard n.firstRequiredFrom[Int(f[top].a)] == Int32(n.props.count) else { return false }
                        depth -= 1
                        return true
                    }
                    let r = n.keyRoots[Int(f[top].a)]
                    guard r >= 0 else { return false }
                    let t = trieNext(r, byte)
                    guard t >= 0 else { return false }
                    f[top].phase = Obj.inKey
                    f[top].b = t
                    return true
                case Obj.inKey:
                    let t = trieNext(f[top].b, byte)
                    guard t >= 0 else { return false }
                    let p = terminal[Int(t)]
                    if p < 0 {
                        f[top].b = t
                        return true
                    }
                    // Key and colon complete (keys are prefix-free, so a terminal is a leaf).
                    f[top].a = p + 1
                    f[top].phase = Obj.afterValue
                    f[depth] = Frame(kind: .value, node: n.props[Int(p)].node)
                    depth += 1
                    return true
                default:  // afterValue
                    if byte == UInt8(ascii: ",") {
                        guard Int(f[top].a) < n.props.count else { return false }
                        f[top].phase = Obj.afterComma
                        return true
                    }
                    guard byte == UInt8(ascii: "}"), n.firstRequiredFrom[Int(f[top].a)] == Int32(n.props.count) else { return false }
                    depth -= 1
                    return true
                }

            case .array:
                let n = nodes[Int(f[top].node)]
                switch f[top].phase {
                case Arr.open:
                    guard byte == UInt8(ascii: "[") else { return false }
                    f[top].phase = Arr.afterOpen
                    return true
                case Arr.afterOpen:
                    if byte == UInt8(ascii: "]") { depth -= 1; return true }
                    guard n.maxItems > 0 else { return false }
                    f[top].a = 1
                    f[top].phase = Arr.afterValue
                    f[depth] = Frame(kind: .value, node: n.item)
                    depth += 1
                    continue  // the item takes the byte
                default:
                    if byte == UInt8(ascii: "]") { depth -= 1; return true }
                    guard byte == UInt8(ascii: ","), f[top].a < n.maxItems else { return false }
                    f[top].a += 1
                    f[depth] = Frame(kind: .value, node: n.item)
                    depth += 1
                    return true
                }

            case .string:
                switch f[top].phase {
                case Str.open:
                    guard byte == UInt8(ascii: "\"") else { return false }
                    f[top].phase = Str.content
                    return true
                case Str.content:
                    if byte == UInt8(ascii: "\"") { depth -= 1; return true }
                    guard f[top].a < nodes[Int(f[top].node)].maxLength else { return false }
                    switch byte {
                    case UInt8(ascii: "\\"):
                        f[top].phase = Str.escape
                    case 0x20...0x7F:
                        break
                    case 0xC2...0xDF:
                        f[top].phase = Str.utf8; f[top].b = 1; f[top].lo = 0x80; f[top].hi = 0xBF
                    case 0xE0...0xEF:
                        f[top].phase = Str.utf8; f[top].b = 2
                        f[top].lo = byte == 0xE0 ? 0xA0 : 0x80
                        f[top].hi = byte == 0xED ? 0x9F : 0xBF
                    case 0xF0...0xF4:
                        f[top].phase = Str.utf8; f[top].b = 3
                        f[top].lo = byte == 0xF0 ? 0x90 : 0x80
                        f[top].hi = byte == 0xF4 ? 0x8F : 0xBF
                    default:
                        return false  // control bytes, stray continuation bytes, invalid leads
                    }
                    f[top].a += 1
                    return true
                case Str.escape:
                    switch byte {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                         UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        f[top].phase = Str.content
                    case UInt8(ascii: "u"):
                        f[top].phase = Str.unicode; f[top].b = 4; f[top].v = 0
                    default:
                        return false
                    }
                    return true
                case Str.unicode:
                    guard let d = JSONLexer.hexValue(byte) else { return false }
                    f[top].v = f[top].v << 4 | UInt64(d)
                    f[top].b -= 1
                    // Surrogates (D800–DFFF) are refused as soon as the second digit shows them.
                    if f[top].b == 2 && (0xD8...0xDF).contains(f[top].v) { return false }
                    if f[top].b == 0 { f[top].phase = Str.content }
                    return true
                default:  // utf8 continuation
                    guard byte >= f[top].lo && byte <= f[top].hi else { return false }
                    f[top].lo = 0x80; f[top].hi = 0xBF
                    f[top].b -= 1
                    if f[top].b == 0 { f[top].phase = Str.content }
                    return true
                }

            case .integer:
                let n = nodes[Int(f[top].node)]
                let neg = f[top].b == 1
                if byte == UInt8(ascii: "-") && f[top].phase == IntP.start {
                    guard viable(neg: true, digits: 0, magnitude: 0, n.lo, n.hi) else { return false }
                    f[top].phase = IntP.minus
                    f[top].b = 1
                    return true
                }
                if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                    let d = UInt64(byte - UInt8(ascii: "0"))
                    if f[top].phase == IntP.digits && f[top].v == 0 { return false }  // leading zero
                    if f[top].phase == IntP.minus && d == 0 { return false }           // no -0
                    let (m10, o) = f[top].v.multipliedReportingOverflow(by: 10)
                    guard !o, viable(neg: neg, digits: f[top].a + 1, magnitude: m10 + d, n.lo, n.hi) else { return false }
                    f[top].v = m10 + d
                    f[top].a += 1
                    f[top].phase = IntP.digits
                    if !integerCanGrow(f[top], n) { depth -= 1 }  // the value is complete
                    return true
                }
                guard f[top].phase == IntP.digits, inRange(neg: neg, magnitude: f[top].v, n.lo, n.hi) else { return false }
                depth -= 1
                continue

            case .number:
                let isDigit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
                let ph = f[top].phase
                switch ph {
                case Num.start where byte == UInt8(ascii: "-"):
                    f[top].phase = Num.minus
                    return true
                case Num.start, Num.minus:
                    guard isDigit else { return false }
                    f[top].phase = byte == UInt8(ascii: "0") ? Num.zero : Num.int
                    f[top].a = 1
                    return true
                case Num.int where isDigit:
                    guard f[top].a < Int32(Self.maxNumberDigits) else { return false }
                    f[top].a += 1
                    return true
                case Num.zero, Num.int:
                    if byte == UInt8(ascii: ".") { f[top].phase = Num.dot; f[top].a = 0; return true }
                    if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") { f[top].phase = Num.e; f[top].a = 0; return true }
                case Num.dot:
                    guard isDigit else { return false }
                    f[top].phase = Num.frac
                    f[top].a = 1
                    return true
                case Num.frac where isDigit:
                    guard f[top].a < Int32(Self.maxNumberDigits) else { return false }
                    f[top].a += 1
                    return true
                case Num.frac:
                    if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") { f[top].phase = Num.e; f[top].a = 0; return true }
                case Num.e where byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-"):
                    f[top].phase = Num.eSign
                    return true
                case Num.e, Num.eSign:
                    guard isDigit else { return false }
                    f[top].phase = Num.exp
                    f[top].a = 1
                    return true
                case Num.exp where isDigit:
                    guard f[top].a < Int32(Self.maxExponentDigits) else { return false }
                    f[top].a += 1
                    if f[top].a == Int32(Self.maxExponentDigits) { depth -= 1 }  // nothing can follow
                    return true
                default:
                    break
                }
                // Not part of the number: it ends here if it can, and the byte goes up.
                guard ph == Num.zero || ph == Num.int || ph == Num.frac || ph == Num.exp else { return false }
                depth -= 1
                continue

            case .literal:
                let t = trieNext(f[top].a, byte)
                if t >= 0 {
                    f[top].a = t
                    if terminal[Int(t)] >= 0 && trieIsLeaf(t) { depth -= 1 }
                    return true
                }
                guard terminal[Int(f[top].a)] >= 0 else { return false }
                depth -= 1
                continue

            case .empty:
                return false
            }
        }
        return false  // the root value is closed: nothing may follow
    }
}

extension SchemaAutomaton {
    /// One compiled schema node.
    struct Node: Sendable {
        enum Kind: UInt8, Sendable { case object, array, string, integer, number, literals, union }
        struct Property: Sendable {
            var name: String
            var node: Int32
            var required: Bool
        }
        var kind: Kind
        /// Nesting of frames a value of this node can open (1 for scalars).
        var depth = 1
        // object
        var props: [Property] = []
        /// Per next-property index s (0...props.count): root of the trie of keys that may come
        /// next (`"name":` for properties s...first required at or after s), -1 if none.
        var keyRoots: [Int32] = []
        /// Per index s: the first required property at or after s, props.count if none.
        var firstRequiredFrom: [Int32] = []
        // array
        var item: Int32 = -1
        var maxItems: Int32 = .max
        // string
        var maxLength: Int32 = .max
        // integer (inclusive; defaults bound the digit count)
        var lo: Int64 = 0
        var hi: Int64 = 0
        // literals (enum, const, boolean, null)
        var trieRoot: Int32 = -1
        /// The compact spellings of the literals, for documentation and tests.
        var literals: [[UInt8]] = []
        // union: member node per first byte, -1 where none starts
        var dispatch: [Int32] = []

        var frameKind: SchemaAutomaton.FrameKind {
            switch kind {
            case .object: return .object
            case .array: return .array
            case .string: return .string
            case .integer: return .integer
            case .number: return .number
            case .literals: return .literal
            case .union: return .value
            }
        }
    }
}

/// Builds the shared tries for keys and literals.
struct TrieBuilder {
    var edges: [[(byte: UInt8, target: Int32)]] = []
    var terminal: [Int32] = []
    var nodeCount: Int { edges.count }

    mutating func newRoot() -> Int32 {
        edges.append([])
        terminal.append(-1)
        return Int32(edges.count - 1)
    }

    /// Adds `bytes` under `root`, marking its end with `payload`.
    mutating func insert(_ bytes: [UInt8], payload: Int32, root: Int32) {
        var t = root
        for b in bytes {
            if let e = edges[Int(t)].first(where: { $0.byte == b }) {
                t = e.target
            } else {
                let n = newRoot()
                edges[Int(t)].append((b, n))
                t = n
            }
        }
        terminal[Int(t)] = payload
    }

    func flatten() -> (start: [Int32], bytes: [UInt8], targets: [Int32]) {
        var start: [Int32] = [0]
        var bytes: [UInt8] = []
        var targets: [Int32] = []
        for list in edges {
            for e in list.sorted(by: { $0.byte < $1.byte }) {
                bytes.append(e.byte)
                targets.append(e.target)
            }
            start.append(Int32(bytes.count))
        }
        return (start, bytes, targets)
    }
}
