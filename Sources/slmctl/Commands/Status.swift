import ArgumentParser
import SLMProtocol

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the daemon's state, model, uptime, load, tokens and memory.",
        discussion: "Like `systemctl status`: exits 0 when the daemon answers, 3 when it is not running.")

    @Flag(help: "Print the daemon's status object (with server info) as one JSON object.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func run() throws {
        let (conn, info) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .status, connection: connection, json: json)
        guard case .status(let status) = reply.body else { throw unexpected(reply) }
        // Counters are optional for the summary: an old or minimal server may not answer stats.
        var stats = SLMProtocol.Stats()
        if case .reply(let r)? = try? conn.call(.stats, timeout: connection.quickTimeout), case .stats(let s) = r.body {
            stats = s
        }
        if json {
            Output.jsonLine(.object([
                "status": .object(status),
                "protocol_version": .int(Int64(info.protocolVersion)),
                "server_version": .string(info.serverVersion),
                "model": .object(info.model),
                "limits": .object(info.limits),
                "socket": .string(connection.socketPath),
            ]))
            return
        }
        Output.out(statusSummary(status: status, info: info, stats: stats, socket: connection.socketPath))
    }
}

/// The human summary, `systemctl status` style: aligned "Label: value" lines, then any
/// status members the summary did not use, so nothing the daemon reports is hidden.
func statusSummary(status: JSONObject, info: ServerInfo, stats: SLMProtocol.Stats, socket: String) -> String {
    var used: Set<String> = []
    func value(_ keys: String...) -> JSONValue? {
        for k in keys { if let v = status[k], v != .null { used.insert(k); return v } }
        return nil
    }
    func number(_ keys: String...) -> Double? {
        for k in keys {
            if let v = status[k], let d = v.number { used.insert(k); return d }
        }
        return nil
    }
    var lines: [(String, String)] = []
    let state = value("state").map(\.text) ?? "running"
    lines.append(("State", state))
    lines.append(("Server", "slmd \(info.serverVersion), protocol \(info.protocolVersion), socket \(socket)"))

    let statusModel = value("model")
    var modelText = info.model["name"]?.text ?? statusModel.map(\.text) ?? "unknown"
    if case .object(let m)? = status["model"] { used.insert("model"); modelText = m["name"]?.text ?? modelText }
    // The model summary members are in both `status` and `info.model` (since protocol 1 rev.
    // 2026-11-28, issue #12); older daemons have only some of them in `info.model`.
    func summary(_ key: String) -> JSONValue? { value(key) ?? info.model[key].flatMap { $0 == .null ? nil : $0 } }
    var details: [String] = []
    if let a = summary("architecture") { details.append(a.text) }
    if let p = summary("parameters")?.number { details.append("\(formatCount(p)) parameters") }
    if let q = info.model["quantization"] { details.append(q.text) }
    if let c = info.model["context_length"] { details.append("context \(c.text)") }
    lines.append(("Model", modelText + (details.isEmpty ? "" : " (\(details.joined(separator: ", ")))")))
    // model_file since protocol 1 rev. 2026-11-28 (no directories for clients); model_path before.
    if let file = value("model_file", "model_path") { lines.append(("", file.text)) }
    if case .object(let counts)? = summary("tensor_type_counts") {
        // Most tensors first: "182 Q4_1, 61 F32, 1 Q8_0".
        let sorted = counts.compactMap { k, v in v.number.map { (k, Int($0)) } }.sorted { ($0.1, $1.0) > ($1.1, $0.0) }
        lines.append(("Tensors", sorted.map { "\($0.1) \($0.0)" }.joined(separator: ", ")))
    }
    var text: [String] = []
    if let t = summary("tokenizer") {
        text.append("tokenizer \(t.text)" + (summary("pre_tokenizer").map { " (\($0.text))" } ?? ""))
    }
    if let t = summary("chat_template_name") { text.append("chat template \(t.text)") }
    else if info.model["chat_template"] == .bool(false) || status["chat_template_name"] == .null { text.append("no chat template") }
    if !text.isEmpty { lines.append(("Text", text.joined(separator: ", "))) }

    if let s = number("uptime_s", "uptime_seconds") { lines.append(("Uptime", formatDuration(seconds: s))) }
    else if let ms = number("uptime_ms") { lines.append(("Uptime", formatDuration(seconds: ms / 1000))) }

    let active = number("in_flight", "active", "running") ?? stats.gauges["in_flight"]
    let queued = number("queued", "queue_depth") ?? stats.gauges["queue_depth"]
    var load: [String] = []
    if let active { load.append("\(fmt(active, 0)) active") }
    if let queued { load.append("\(fmt(queued, 0)) queued") }
    var caps: [String] = []
    if let c = info.limits["max_concurrent"] ?? info.limits["max_sequences"] { caps.append("max \(c.text) concurrent") }
    if let q = info.limits["max_queue"] ?? info.limits["max_queued"] { caps.append("\(q.text) queued") }
    if !load.isEmpty || !caps.isEmpty {
        lines.append(("Requests", load.joined(separator: ", ") + (caps.isEmpty ? "" : " (\(caps.joined(separator: ", ")))")))
    }
    if let c = number("connections") { lines.append(("Clients", "\(fmt(c, 0)) connected")) }
    // Served: requests by outcome, from the stats counters (`requests_total`, or slmd's
    // `requests_admitted` / `requests_finished_<reason>` / `requests_refused_<code>`).
    var served: [String] = []
    if let total = stats.counters["requests_total"] { served.append("\(total) total") }
    if let admitted = stats.counters["requests_admitted"] ?? number("requests_admitted").map({ Int64($0) }) {
        used.insert("requests_admitted")
        served.append("\(admitted) admitted")
    }
    for key in stats.counters.keys.sorted() where key.hasPrefix("requests_finished_") || key.hasPrefix("requests_refused_") {
        guard let v = stats.counters[key], v > 0 else { continue }
        let outcome = key.hasPrefix("requests_finished_") ? String(key.dropFirst("requests_finished_".count))
            : "refused " + key.dropFirst("requests_refused_".count)
        served.append("\(v) \(outcome)")
    }
    for (key, label) in [("errors_total", "errors"), ("cancelled_total", "cancelled")] {
        if let v = stats.counters[key] { served.append("\(v) \(label)") }
    }
    if !served.isEmpty { lines.append(("Served", served.joined(separator: ", "))) }

    let generated = number("generated_tokens", "tokens_generated", "tokens_generated_total").map { Int64($0) }
        ?? stats.counters["tokens_generated_total"] ?? stats.counters["generated_tokens"]
    let prompted = number("prompt_tokens", "prompt_tokens_total").map { Int64($0) }
        ?? stats.counters["prompt_tokens_total"] ?? stats.counters["prompt_tokens"]
    if generated != nil || prompted != nil {
        var parts: [String] = []
        if let generated { parts.append("\(generated) generated") }
        if let prompted { parts.append("\(prompted) prompt") }
        lines.append(("Tokens", parts.joined(separator: ", ")))
    }

    var memory: [String] = []
    if let mem = number("memory_bytes", "rss_bytes") ?? stats.gauges["memory_bytes"] { memory.append(formatBytes(mem)) }
    if let anon = number("rss_anon_bytes") {
        var text = "\(formatBytes(anon)) anonymous"
        if let file = number("rss_file_bytes") { text += " + \(formatBytes(file)) mapped" }
        memory.append(text)
    }
    if let kv = number("kv_bytes_in_use") { memory.append("KV cache \(formatBytes(kv))") }
    if let budget = number("memory_budget_bytes", "budget_bytes") ?? stats.gauges["memory_budget_bytes"] {
        memory.append("budget \(formatBytes(budget))")
    }
    if let peak = number("memory_peak_bytes", "peak_rss_bytes") { memory.append("peak \(formatBytes(peak))") }
    if !memory.isEmpty {
        // "100.0 MiB (budget 1.0 GiB)" when there is one figure, else a list.
        let text = memory.count == 2 && memory[1].hasPrefix("budget ") ? "\(memory[0]) (\(memory[1]))" : memory.joined(separator: ", ")
        lines.append(("Memory", text))
    }
    if let k = value("kernel_path", "kernels", "kernel") ?? info.limits["kernel_path"] { lines.append(("Kernels", k.text)) }
    _ = value("version")  // already on the Server line
    if let t = value("threads") { lines.append(("Threads", t.text)) }
    if case .array(let names)? = value("intents") {
        let list = names.compactMap { if case .string(let n) = $0 { return n } else { return nil } }
        lines.append(("Intents", list.isEmpty ? "none" : list.joined(separator: ", ")))
    }

    for key in status.keys.sorted() where !used.contains(key) && status[key] != .null {
        lines.append((key, status[key]!.text))
    }

    let width = lines.map(\.0.count).max() ?? 0
    var out = "● slmd - small language model daemon\n"
    for (label, text) in lines {
        let pad = String(repeating: " ", count: width - label.count + 2)
        out += pad + (label.isEmpty ? " " : label + ":") + " " + text + "\n"
    }
    return out
}

extension JSONValue {
    /// A number as Double, when this is one.
    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// Plain text for humans: strings unquoted, everything else as compact JSON.
    var text: String {
        switch self {
        case .string(let s): return s
        default: return String(decoding: serialized(), as: UTF8.self)
        }
    }
}
