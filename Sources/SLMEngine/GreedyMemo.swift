/// Greedy steps computed by `suggest` on one healed context: after the context plus a
/// branch's tokens, the argmax token and its log-probability.
///
/// While a word is typed the healed context stays the same and the candidates of the
/// next keystroke are mostly the previous ones (tokens starting with a longer prefix):
/// their continuations are replayed from here instead of recomputed. A step depends
/// only on the tokens (the forward pass treats every batch row alike), so a replayed
/// suggestion is exactly the computed one. Engine thread only.
struct GreedyMemo {
    struct Step {
        let token: Int32
        let logprob: Double
    }
    private(set) var context: [Int32] = []
    /// Branch tokens (after the context) → the greedy step that follows them.
    private(set) var steps: [[Int32]: Step] = [:]
    /// Bounds memory: n + 2 branches × max_tokens steps per keystroke leave a word's
    /// worth of keystrokes far below this.
    static let maxSteps = 1024

    mutating func reset(context: [Int32]) {
        self.context = context
        steps.removeAll(keepingCapacity: true)
    }

    mutating func record(_ tokens: [Int32], _ step: Step) {
        if steps.count >= Self.maxSteps { steps.removeAll(keepingCapacity: true) }
        steps[tokens] = step
    }
}
