#if canImport(Glibc)
import Glibc
#endif
import SLMKernels

/// Whether `suggest` prints a per-request phase breakdown to stderr (SLMD_SUGGEST_TRACE=1):
/// how keystroke latency was measured and tuned; off in production, read once.
let suggestTraceEnabled: Bool = getenv("SLMD_SUGGEST_TRACE").map { String(cString: $0) == "1" } ?? false

/// Wall time per phase of one `suggest`, accumulated between `mark`s (no allocation), and
/// its pass/row/replay counts (kept even when tracing is off: the result reports them).
struct SuggestTrace {
    enum Phase: Int, CaseIterable {
        case heal, prefill, candidates, branchSetup, forward, scoring, finish
    }
    let enabled: Bool
    var last: Double
    let start: Double
    var ms = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    var passes = 0
    var rows = 0
    var prefillTokens = 0
    /// Tokens the search's passes fed (a branch's row is one token, more when its cache
    /// lacked part of its path); with `prefillTokens`, the keystroke's computed tokens.
    var branchTokens = 0
    /// How the context's KV and logits were found: 0 prefix cache (exact), 1 the previous
    /// keystroke's branch, 2 prefill, plus 4 when its logits were kept anyway and 8 when a
    /// branch cache held its KV (why the branch start missed). Computed only when tracing.
    var startKind = 0
    var replayed = 0
    var pruned = 0
    /// Nodes the search expanded (replayed or computed).
    var expanded = 0

    init(enabled: Bool, start: Double) {
        self.enabled = enabled
        self.start = start
        last = start
    }

    mutating func mark(_ p: Phase) {
        guard enabled else { return }
        let now = monotonicSeconds()
        let d = (now - last) * 1000
        last = now
        switch p {
        case .heal: ms.0 += d
        case .prefill: ms.1 += d
        case .candidates: ms.2 += d
        case .branchSetup: ms.3 += d
        case .forward: ms.4 += d
        case .scoring: ms.5 += d
        case .finish: ms.6 += d
        }
    }

    func emit() {
        guard enabled else { return }
        let total = (monotonicSeconds() - start) * 1000
        let line = "suggest-trace total=\(f(total)) heal=\(f(ms.0)) prefill=\(f(ms.1))(\(prefillTokens)t,start \(startKind)) candidates=\(f(ms.2)) "
            + "setup=\(f(ms.3)) forward=\(f(ms.4))(\(passes)p,\(rows)r,\(branchTokens)t) scoring=\(f(ms.5)) finish=\(f(ms.6)) expanded=\(expanded) replayed=\(replayed) pruned=\(pruned)\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }

    private func f(_ x: Double) -> String {
        let r = (x * 100).rounded() / 100
        return "\(r)"
    }
}
