import ArgumentParser
import Logging
import SLMEngine
import SLMKernels
import SLMModel
import SLMProtocol
import SLMServer
import SLMSystemd
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon in the foreground (what slmd.service's ExecStart runs).",
        discussion: """
            Reads the config file (default /etc/slmd/slmd.conf when it exists), applies the \
            flags on top, maps and validates the model, warms it up, then listens on the \
            Unix socket (the one systemd passes, else the configured path) and tells systemd \
            READY=1. SIGTERM drains: no new requests, running ones get shutdown_grace_ms to \
            finish, then the rest are cancelled and slmd exits 0. SIGHUP reloads the intent \
            files (intents_dir); the rest of the configuration needs a restart. When the \
            model file is replaced or modified, slmd drains the same way and exits with \
            status \(Serve.modelChangedExitStatus), so systemd restarts it on the new file.
            """)

    /// Exit status after draining because the model file changed (EX_TEMPFAIL). The unit
    /// restarts the service on it (RestartForceExitStatus=) without marking it failed.
    static let modelChangedExitStatus: Int32 = 75

    @Option(name: .long, help: "Config file (default: /etc/slmd/slmd.conf if present).")
    var config: String?

    @Option(name: .long, help: "Socket path to bind when not socket-activated.")
    var socket: String?

    @Option(name: .long, help: "GGUF model file.")
    var model: String?

    @Option(name: .long, help: "Compute threads (0: online cores).")
    var threads: Int?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override any config key.", valueName: "key=value"))
    var overrides: [String] = []

    @Flag(name: .long, help: "Validate the configuration and the model file, print the result and exit.")
    var checkConfig = false

    static let defaultConfigPath = "/etc/slmd/slmd.conf"

    func resolvedConfig() throws -> DaemonConfig {
        var c = DaemonConfig()
        let path = config ?? (access(Self.defaultConfigPath, R_OK) == 0 ? Self.defaultConfigPath : nil)
        if let path {
            let bytes = try readBoundedRegularFile(path, maxBytes: DaemonConfig.maxFileBytes)
            try c.apply(configText: try utf8String(bytes, what: path), source: path)
        }
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else { throw ValidationError("--set takes key=value, got '\(o)'") }
            try c.set(String(o[..<eq]), String(o[o.index(after: eq)...]))
        }
        if let socket { c.socket = socket }
        if let model { c.model = model }
        if let threads { try c.set("threads", String(threads)) }
        if let logLevel { c.logLevel = logLevel }
        if c.model.isEmpty { c.model = DefaultPaths.model }
        c.engine.threads = c.threadsSetting == 0 ? onlineCores() : c.threadsSetting
        if let problem = c.problem() ?? c.systemProblem() { throw ConfigError("invalid configuration: \(problem)") }
        return c
    }

    func run() throws {
        // Signals are handled by sigwait on this thread; block them before any other
        // thread exists so none of them receives one.
        var set = sigset_t()
        sigemptyset(&set)
        // SIGUSR1 is the I/O thread telling this one that the model file changed.
        for s in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)

        let t0 = monotonicSeconds()
        let cfg = try resolvedConfig()
        let level = Logger.Level(rawValue: cfg.logLevel) ?? .info
        // Before the model: the path decides the layout the weights are repacked into.
        try Kernels.use(cfg.kernels)
        if checkConfig {
            let m = try Model(path: cfg.model, chatTemplate: cfg.chatTemplate)  // mapped: checking the config writes no cache
            if let problem = cfg.engine.problem(modelConfig: m.config) { throw ConfigError("invalid configuration: \(problem)") }
            let (intents, errors) = IntentRegistry.load(directory: cfg.intentsDir)
            for e in errors { print("intent file error: \(e)") }
            if cfg.intentsStrict, !errors.isEmpty { throw ConfigError("invalid intent files (intents_strict = true)") }
            print("intents: \(intents.isEmpty ? "none" : intents.keys.sorted().joined(separator: ", ")) from \(cfg.intentsDir)")
            switch m.chatTemplate {
            case .success(let t): print("chat template: \(t.name) (chat_template = \(cfg.chatTemplate.rawValue))")
            case .failure(let e): print("chat template: none, chat requests will be refused: \(e)")
            }
            print("model: \(m.summary)")
            print("configuration OK: model \(cfg.model) (\(m.config.name), \(m.weightBytes / 1_000_000) MB), socket \(cfg.socket), threads \(cfg.engine.threads), kernels \(Kernels.path) (\(cfg.kernels.rawValue)), memory budget \(cfg.engine.memoryBudgetBytes) bytes")
            return
        }
        LoggingSetup.bootstrap(level: level)
        let logger = Logger(label: "slmd")
        let notifier = Notifier()
        logger.info("starting", metadata: ["version": "\(SLMDVersion.string)", "model": "\(cfg.model)",
                                           "threads": "\(cfg.engine.threads)", "kernels": "\(Kernels.path)",
                                           "kernels_setting": "\(cfg.kernels.rawValue)"])

        let registry = IntentRegistry()
        @Sendable func loadIntents(initial: Bool) throws {
            let (intents, errors) = IntentRegistry.load(directory: cfg.intentsDir)
            for e in errors { logger.error("intent file not loaded", metadata: ["file": "\(e.file)", "error": "\(e.message)"]) }
            if cfg.intentsStrict, !errors.isEmpty {
                if initial { throw ConfigError("\(errors.count) invalid intent file(s) in \(cfg.intentsDir) and intents_strict = true: \(errors[0])") }
                logger.error("reload refused: invalid intent files and intents_strict = true; keeping the previous intents",
                             metadata: ["kept": "\(registry.count)"])
                return
            }
            registry.replace(with: intents)
            logger.info("intents loaded", metadata: ["dir": "\(cfg.intentsDir)", "count": "\(intents.count)",
                                                     "names": "\(intents.keys.sorted().joined(separator: ","))"])
        }
        try loadIntents(initial: true)

        let model = try Model(path: cfg.model, weightsLayout: cfg.weightsLayout, repackCacheDirectory: cfg.repackCacheDir,
                              chatTemplate: cfg.chatTemplate)
        if let problem = model.weights.repackCacheProblem {
            logger.warning("repacked weights kept in anonymous memory", metadata: ["problem": "\(problem)"])
        }
        logger.info("model", metadata: ["summary": "\(model.summary)"])
        logger.info("weights", metadata: ["layout": "\(model.weights.layout)", "repacked_bytes": "\(model.weights.repackedBytes)",
                                          "cache": "\(model.weights.repackCachePath.map { $0 + (model.weights.repackCacheHit ? " (reused)" : " (written)") } ?? "none")"])
        switch model.chatTemplate {
        case .success(let t): logger.info("chat template", metadata: ["format": "\(t.name)", "setting": "\(cfg.chatTemplate.rawValue)"])
        case .failure(let e): logger.warning("no chat template: chat requests will be refused", metadata: ["error": "\(e)"])
        }
        MappedFileCrash.install(files: [cfg.model] + (model.weights.repackCachePath.map { [$0] } ?? []))
        if cfg.prefetch { model.prefetch() }
        let pingEvery = notifier.watchdogPingInterval.map { Double($0.components.seconds) + Double($0.components.attoseconds) * 1e-18 } ?? 5
        // WATCHDOG=1 needs both loops alive: the engine thread's heartbeat calls this, and it
        // pings only while the I/O thread is turning too (before the server exists, the
        // engine alone is the daemon).
        let serverForWatchdog = Mutex<Server?>(nil)
        let engine = try Engine(model: model, config: cfg.engine, logger: logger, heartbeatInterval: pingEvery) {
            let server = serverForWatchdog.withLock { $0 }
            if server?.isResponsive(within: 2 * pingEvery) ?? true { notifier.watchdog() }
        }
        try engine.start(warmUp: cfg.warmUp)

        let listenFD: Int32
        let owned: Bool
        if let fd = try ListenFDs.takeUnixStreamListener() {
            listenFD = fd
            owned = false
            logger.info("using the socket passed by systemd", metadata: ["fd": "\(fd)"])
        } else {
            listenFD = try Server.bindSocket(config: cfg)
            owned = true
        }
        let statusLine: @Sendable () -> String = {
            let s = engine.stats()
            return "serving \(model.config.name): \(s.active) active, \(s.queued) queued, \(s.generatedTokens) tokens generated, KV \(s.kvBytesInUse >> 20)/\(s.memoryBudgetBytes >> 20) MiB"
        }
        let server = try Server(config: cfg, engine: engine, listenFD: listenFD, ownsSocketPath: owned, logger: logger,
                                intents: registry) {
            notifier.status(statusLine())
        }
        serverForWatchdog.withLock { $0 = server }
        let modelWatch = ModelFileWatch(path: cfg.model)
        if let modelWatch {
            let reported = Atomic<Bool>(false)
            server.watch(fd: modelWatch.fd) {
                let changes = modelWatch.changes()
                guard let change = changes.first(where: { $0 != .removed }) else {
                    if !changes.isEmpty { logger.warning("model file removed; still serving the mapped copy", metadata: ["model": "\(cfg.model)"]) }
                    return
                }
                guard !reported.exchange(true, ordering: .relaxed) else { return }
                let metadata: Logger.Metadata = ["model": "\(cfg.model)", "change": "\(change)",
                                                 "exit_status": "\(Serve.modelChangedExitStatus)"]
                if change == .modifiedInPlace {
                    logger.error("model file modified in place while mapped: draining and exiting for a restart on the new file (install models by rename, never cp over them)", metadata: metadata)
                } else {
                    logger.notice("model file replaced: draining and exiting for a restart on the new file", metadata: metadata)
                }
                kill(getpid(), SIGUSR1)
            }
        } else {
            logger.warning("cannot watch the model file for changes (inotify)", metadata: ["model": "\(cfg.model)"])
        }
        server.start()
        notifier.ready(status: statusLine())
        logger.info("ready", metadata: ["socket": "\(owned ? cfg.socket : "systemd fd \(listenFD)")",
                                        "startup_ms": "\(Int((monotonicSeconds() - t0) * 1000))",
                                        "memory_budget": "\(cfg.engine.memoryBudgetBytes)"])

        var sig: Int32 = 0
        var exitStatus: Int32 = 0
        while true {
            sigwait(&set, &sig)
            if sig == SIGUSR1 { exitStatus = Serve.modelChangedExitStatus }
            if sig == SIGHUP {
                notifier.reloading()
                logger.info("SIGHUP: reloading intents")
                try? loadIntents(initial: false)
                notifier.ready(status: statusLine())
                continue
            }
            break
        }
        logger.info("stopping", metadata: ["signal": "\(sig)"])
        notifier.stopping()
        server.stopAccepting()
        engine.shutdown(grace: Double(cfg.shutdownGraceMs) / 1000)
        server.stop(flushFor: 1)
        withExtendedLifetime(modelWatch) {}
        logger.info("stopped", metadata: ["exit_status": "\(exitStatus)"])
        if exitStatus != 0 { Glibc.exit(exitStatus) }
    }
}
