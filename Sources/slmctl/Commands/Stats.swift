import ArgumentParser
import SLMProtocol

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's counters, gauges and latency percentiles.",
        discussion: """
            --prometheus prints the Prometheus text exposition format (version 0.0.4): \
            metric names slmd_<name>, counters ending in _total, gauges, and percentiles as \
            summaries with quantile labels — e.g. for node_exporter's textfile collector.
            """)

    @Flag(help: "Prometheus text exposition format.")
    var prometheus = false

    @Flag(help: "Print the daemon's reply as one JSON object.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func validate() throws {
        if prometheus && json { throw ValidationError("--prometheus and --json exclude each other") }
    }

    func run() throws {
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .stats, connection: connection, json: json)
        guard case .stats(let stats) = reply.body else { throw unexpected(reply) }
        if json { Output.jsonLine(payload: reply.payload()) }
        else if prometheus { Output.out(prometheusText(stats)) }
        else { Output.out(humanStats(stats)) }
    }
}

func humanStats(_ s: SLMProtocol.Stats) -> String {
    var out = ""
    if !s.counters.isEmpty {
        out += "counters:\n"
        for k in s.counters.keys.sorted() { out += "  \(k) \(s.counters[k]!)\n" }
    }
    if !s.gauges.isEmpty {
        out += "gauges:\n"
        for k in s.gauges.keys.sorted() { out += "  \(k) \(humanNumber(s.gauges[k]!))\n" }
    }
    if !s.percentiles.isEmpty {
        out += "percentiles:\n"
        for k in s.percentiles.keys.sorted() {
            let row = s.percentiles[k]!
            let cells = row.keys.sorted(by: quantileOrder).map { "\($0) \(humanNumber(row[$0]!))" }
            out += "  \(k) " + cells.joined(separator: "  ") + "\n"
        }
    }
    return out.isEmpty ? "(no statistics)\n" : out
}

/// Integral values as integers, others with two decimals (Prometheus output keeps full precision).
func humanNumber(_ x: Double) -> String {
    x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : fmt(x, 2)
}

// MARK: - Prometheus text format

/// Renders stats in the Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE`
/// before each family; counters get the `_total` suffix; `pNN` percentiles become a
/// summary with `quantile` labels (other keys of a percentile row, such as `mean` or
/// `max`, become gauges `<name>_<key>`).
func prometheusText(_ s: SLMProtocol.Stats) -> String {
    var out = ""
    func family(_ name: String, _ type: String, _ help: String) {
        out += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(type)\n"
    }
    for key in s.counters.keys.sorted() {
        var name = "slmd_" + metricName(key)
        if !name.hasSuffix("_total") { name += "_total" }
        family(name, "counter", metricHelp[key] ?? "slmd counter \(key).")
        out += "\(name) \(s.counters[key]!)\n"
    }
    for key in s.gauges.keys.sorted() {
        let name = "slmd_" + metricName(key)
        family(name, "gauge", metricHelp[key] ?? "slmd gauge \(key).")
        out += "\(name) \(promNumber(s.gauges[key]!))\n"
    }
    for key in s.percentiles.keys.sorted() {
        let name = "slmd_" + metricName(key)
        let row = s.percentiles[key]!
        let quantiles = row.keys.compactMap { k in quantile(k).map { (k, $0) } }.sorted { $0.1 < $1.1 }
        if !quantiles.isEmpty {
            family(name, "summary", metricHelp[key] ?? "slmd \(key) percentiles over recent requests.")
            for (k, q) in quantiles { out += "\(name){quantile=\"\(promNumber(q))\"} \(promNumber(row[k]!))\n" }
        }
        // `count` and `sum` belong to the summary family (name_count, name_sum).
        for k in ["count", "sum"] where !quantiles.isEmpty {
            if let v = row[k] { out += "\(name)_\(k) \(promNumber(v))\n" }
        }
        for k in row.keys.sorted() where quantile(k) == nil && (quantiles.isEmpty || (k != "count" && k != "sum")) {
            let extra = name + "_" + metricName(k)
            family(extra, "gauge", "slmd \(key) \(k).")
            out += "\(extra) \(promNumber(row[k]!))\n"
        }
    }
    return out
}

/// `p50` → 0.5, `p99` → 0.99, `p999` → 0.999, `p99.9` → 0.999; nil for other keys.
func quantile(_ key: String) -> Double? {
    guard key.first == "p" || key.first == "P" else { return nil }
    let digits = key.dropFirst()
    if digits.contains(".") {
        guard let v = Double(digits), v >= 0, v <= 100 else { return nil }
        return v / 100
    }
    guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let v = Double(digits) else { return nil }
    if digits.count <= 2 { return v / 100 }
    var scale = 1.0
    for _ in 0..<digits.count { scale *= 10 }
    return v / scale  // p999 → 0.999
}

private func quantileOrder(_ a: String, _ b: String) -> Bool {
    switch (quantile(a), quantile(b)) {
    case let (x?, y?): return x < y
    case (.some, nil): return true
    case (nil, .some): return false
    default: return a < b
    }
}

/// A valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, other characters replaced by `_`.
func metricName(_ key: String) -> String {
    var out = ""
    for (n, c) in key.unicodeScalars.enumerated() {
        let ok = (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":" || (n > 0 && c >= "0" && c <= "9")
        out.unicodeScalars.append(ok ? c : "_")
    }
    return out.isEmpty ? "_" : out
}

/// A sample value: integral values without a fraction, NaN and ±Inf as Prometheus spells them.
func promNumber(_ x: Double) -> String {
    if x.isNaN { return "NaN" }
    if x.isInfinite { return x > 0 ? "+Inf" : "-Inf" }
    if x == x.rounded() && abs(x) < 1e15 { return String(Int64(x)) }
    return x.description
}

private func escapeHelp(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default: out.append(c)
        }
    }
    return out
}

/// HELP texts for the metrics the daemon is known to report; others get a generic line.
let metricHelp: [String: String] = [
    "requests_total": "Requests received, all ops.",
    "errors_total": "Requests that ended with an error frame.",
    "tokens_generated_total": "Tokens generated.",
    "prompt_tokens_total": "Prompt tokens processed.",
    "cancelled_total": "Generations cancelled by a client.",
    "queue_depth": "Requests waiting for a generation slot.",
    "requests_admitted": "Generation requests admitted by the scheduler.",
    "prompt_tokens": "Prompt tokens processed.",
    "generated_tokens": "Tokens generated.",
    "forward_passes": "Batched forward passes run.",
    "connections_accepted": "Client connections accepted.",
    "connections_refused_peer": "Connections refused by the peer allow-list.",
    "connections_refused_full": "Connections refused because the connection table was full.",
    "protocol_errors": "Protocol errors answered (bad frames and requests).",
    "requests_finished_stop": "Generations finished at end of text or a stop string.",
    "requests_finished_length": "Generations finished at max_tokens or the context end.",
    "requests_finished_cancelled": "Generations cancelled by a client (cancel or disconnect).",
    "requests_finished_deadline": "Generations stopped at their deadline.",
    "requests_finished_error": "Generations that failed.",
    "requests_refused_busy": "Requests refused because the queue was full.",
    "requests_refused_over_memory_budget": "Requests refused by the memory budget.",
    "requests_refused_context_overflow": "Requests refused because the prompt did not fit the context.",
    "requests_refused_shutting_down": "Requests refused while draining.",
    "requests_refused_bad_request": "Requests refused as invalid.",
    "active": "Generations running now.",
    "queued": "Requests waiting for a generation slot.",
    "kv_bytes_in_use": "KV cache bytes reserved by running generations.",
    "kv_bytes_peak": "Peak KV cache bytes reserved.",
    "memory_budget_bytes": "Memory budget for KV caches and scratch in bytes.",
    "scratch_bytes": "Scratch buffer bytes.",
    "rss_anon_bytes": "Anonymous resident memory of the daemon in bytes.",
    "rss_file_bytes": "File-backed resident memory (mapped model weights) in bytes.",
    "uptime_seconds": "Seconds since the daemon started.",
    "threads": "Compute threads.",
    "connections": "Open client connections.",
    "in_flight": "Generations running now.",
    "memory_bytes": "Memory in use by the daemon in bytes.",
    "ttft_ms": "Time to first token in milliseconds.",
    "tokens_per_second": "Decoding speed per request in tokens per second.",
]
