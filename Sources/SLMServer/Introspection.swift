import SLMEngine
import SLMKernels
import SLMModel
import SLMProtocol
#if canImport(Glibc)
import Glibc
#endif

// Introspection: what `info`, `status` and `stats` report, and the process's own memory.
// Read-only views of the engine, the model and the server counters, kept apart from the
// request path in RequestHandler.swift.
extension RequestHandler {

    /// The members `info` (in `model`) and `status` share, from `Model.summary`: the same
    /// names and values in both replies (PROTOCOL.md §5.1, §5.11).
    static func summaryMembers(_ s: ModelSummary) -> JSONObject {
        [
            "architecture": .string(s.architecture.rawValue),
            "parameters": .int(Int64(s.parameterCount)),
            "tensor_type_counts": .object(JSONObject(uniqueKeysWithValues: s.tensorTypeCounts.map { ($0.key, .int(Int64($0.value))) })),
            "tokenizer": .string(s.tokenizer),
            "pre_tokenizer": s.preTokenizer.map { .string($0) } ?? .null,
            "chat_template_name": s.chatTemplate.map { .string($0) } ?? .null,
        ]
    }

    func serverInfo() -> ServerInfo {
        let m = model
        let summary = model.summary
        var members: JSONObject = [
            "name": .string(m.name),
            "file": .string(Self.fileName(model.filePath)),
            "vocab_size": .int(Int64(m.vocabSize)), "embedding_length": .int(Int64(m.embeddingLength)),
            "layers": .int(Int64(m.layerCount)), "trained_context": .int(Int64(m.trainedContextLength)),
            "tensor_types": .array(summary.tensorTypeCounts.keys.sorted().map { .string($0) }),
            "chat_template": .bool(summary.chatTemplate != nil),
            "weights_bytes": .int(Int64(model.weightBytes)),
        ]
        members.merge(Self.summaryMembers(summary)) { _, new in new }
        return ServerInfo(
            protocolVersion: Int(SLMProtocolVersion.current), serverVersion: serverVersion,
            model: members,
            limits: [
                "max_frame_bytes": .int(Int64(config.maxFrameBytes)),
                "max_tokens": .int(Int64(config.engine.maxTokens)),
                "max_context": .int(Int64(config.engine.maxContext)),
                "max_sequences": .int(Int64(config.engine.maxSequences)),
                "max_queued": .int(Int64(config.engine.maxQueued)),
                "max_inflight_per_connection": .int(Int64(config.maxInflightPerConnection)),
                "memory_budget_bytes": .int(Int64(config.engine.memoryBudgetBytes)),
                "threads": .int(Int64(config.engine.threads)),
                "kernel_path": .string(Kernels.path),
            ])
    }

    /// The model's file name without its directory: any client may ask `info`/`status`,
    /// and the daemon's filesystem layout is not theirs to learn (operators have the log
    /// and `slmd serve --check-config`).
    static func fileName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    func status() -> JSONObject {
        let s = engine.stats()
        let mem = ProcessMemory.current()
        var members: JSONObject = [
            "state": .string("running"),
            "model": .string(model.name),
            "model_file": .string(Self.fileName(model.filePath)),
            "uptime_seconds": .double(s.uptimeSeconds),
            "active": .int(Int64(s.active)),
            "queued": .int(Int64(s.queued)),
            "connections": .int(Int64(server?.counterSnapshot.open ?? 0)),
            "requests_admitted": .int(Int64(s.admitted)),
            "prompt_tokens": .int(Int64(s.promptTokens)),
            "generated_tokens": .int(Int64(s.generatedTokens)),
            "kv_bytes_in_use": .int(Int64(s.kvBytesInUse)),
            "memory_budget_bytes": .int(Int64(s.memoryBudgetBytes)),
            "rss_anon_bytes": .int(Int64(mem.anon)),
            "rss_file_bytes": .int(Int64(mem.file)),
            "threads": .int(Int64(s.threads)),
            "kernel_path": .string(s.kernelPath),
            "intents": .array(intents.names.map { .string($0) }),
            "version": .string(serverVersion),
        ]
        members.merge(Self.summaryMembers(model.summary)) { _, new in new }
        return members
    }

    func stats() -> Stats {
        let s = engine.stats()
        let conn = server?.counterSnapshot ?? Server.Counters()
        let mem = ProcessMemory.current()
        var counters: [String: Int64] = [
            "requests_admitted": Int64(s.admitted),
            "prompt_tokens": Int64(s.promptTokens),
            "generated_tokens": Int64(s.generatedTokens),
            "forward_passes": Int64(s.forwardPasses),
            "connections_accepted": Int64(conn.accepted),
            "connections_refused_peer": Int64(conn.refusedPeers),
            "connections_refused_full": Int64(conn.refusedFull),
            "protocol_errors": Int64(conn.protocolErrors),
            "prefix_cache_hits": Int64(s.prefixCacheHits),
            "prefix_cache_misses": Int64(s.prefixCacheMisses),
            "prefix_cache_reused_tokens": Int64(s.prefixCacheReusedTokens),
            "suggest_requests": Int64(s.suggestRequests),
            "choose_requests": Int64(s.chooseRequests),
            "parse_requests": Int64(s.parseRequests),
        ]
        for reason in SLMModel.FinishReason.allCases {
            counters["requests_finished_\(reason.rawValue)"] = Int64(s.finished[reason, default: 0])
        }
        for code in EngineError.Code.allCases {
            counters["requests_refused_\(snake(code.rawValue))"] = Int64(s.refused[code, default: 0])
        }
        counters["requests_refused_busy", default: 0] += Int64(refusedBusy.load(ordering: .relaxed))
        let gauges: [String: Double] = [
            "active": Double(s.active), "queued": Double(s.queued),
            "kv_bytes_in_use": Double(s.kvBytesInUse), "kv_bytes_peak": Double(s.kvBytesPeak),
            "memory_budget_bytes": Double(s.memoryBudgetBytes), "scratch_bytes": Double(s.scratchBytes),
            "rss_anon_bytes": Double(mem.anon), "rss_file_bytes": Double(mem.file),
            "uptime_seconds": s.uptimeSeconds, "threads": Double(s.threads), "connections": Double(conn.open),
            "prefix_cache_bytes": Double(s.prefixCacheBytes), "prefix_cache_entries": Double(s.prefixCacheEntries),
        ]
        func p(_ x: Percentiles) -> [String: Double] { ["p50": x.p50, "p90": x.p90, "p99": x.p99, "count": Double(x.count)] }
        return Stats(counters: counters, gauges: gauges, percentiles: ["ttft_ms": p(s.ttftMs), "tokens_per_second": p(s.tokensPerSecond)])
    }
}

private func snake(_ s: String) -> String {
    var out = ""
    for ch in s {
        if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
    }
    return out
}

/// Resident memory of this process from /proc/self/status (bytes).
public enum ProcessMemory {
    public static func current() -> (anon: Int, file: Int) {
        let fd = open("/proc/self/status", O_RDONLY)
        guard fd >= 0 else { return (0, 0) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return (0, 0) }
        var anon = 0, file = 0
        for line in String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let v = Int(parts[1]) else { continue }
            if parts[0] == "RssAnon:" { anon = v * 1024 }
            if parts[0] == "RssFile:" { file = v * 1024 }
        }
        return (anon, file)
    }
}
