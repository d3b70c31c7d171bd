import ArgumentParser
import FoundationEssentials
import GGUF
import SLMKernels
import SLMModel
#if canImport(Glibc)
import Glibc
#endif

/// Options every model tool takes.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "GGUF model file (default: the fetched default model).")
    var model: String?

    @Option(name: .long, help: "Compute threads (default: online cores).")
    var threads: Int?

    @Option(name: .long, help: "mapped: use the quantized weights in place in the file mapping; repacked: permute them into the kernels' preferred layout (faster on every SIMD kernel path: AVX-512 VNNI, AVX2, NEON; kept in --repack-cache-dir, else in anonymous memory; on the portable path the same as mapped).")
    var weightsLayout: WeightsLayout = .repacked

    @Option(name: .long, help: "Directory for the repacked weights' cache file (default: $SLMD_CACHE_DIR; none: anonymous memory).")
    var repackCacheDir: String?

    @Option(name: .long, help: "Kernel path: auto (the best this CPU supports), avx512vnni, avx2, neon-dotprod, neon or portable. All compute identical results.")
    var kernels: KernelChoice = .auto

    var modelPath: String { model ?? DefaultPaths.model }

    var threadCount: Int { max(1, threads ?? onlineCores()) }

    func validate() throws {
        if let threads, threads < 1 || threads > 256 {
            throw ValidationError("--threads must be between 1 and 256")
        }
    }

    func loadModel() throws -> Model {
        // Before the model: the path decides the layout the weights are repacked into.
        try Kernels.use(kernels)
        guard access(modelPath, R_OK) == 0 else {
            throw ToolError("model file \(modelPath) is not readable; run scripts/fetch-model or pass --model PATH")
        }
        let cacheDir = repackCacheDir ?? ProcessInfo.processInfo.environment["SLMD_CACHE_DIR"]
        return try Model(path: modelPath, weightsLayout: weightsLayout, repackCacheDirectory: cacheDir)
    }
}

enum DefaultPaths {
    static let modelFileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// `SLMD_MODEL`, else the cache directory scripts/fetch-model fills.
    static var model: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["SLMD_MODEL"], !p.isEmpty { return p }
        if let d = env["SLMD_MODEL_DIR"], !d.isEmpty { return d + "/" + modelFileName }
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? "/root") + "/.cache")
        return cache + "/slmd/models/" + modelFileName
    }
}

struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func onlineCores() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// Reads all of standard input as bytes, verbatim.
func readStandardInput() -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(0, &buf, buf.count)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}

func readFile(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ToolError("cannot read \(path)")
    }
    return [UInt8](data)
}

/// Decodes UTF-8 strictly: tools refuse invalid input rather than guess.
func utf8String(_ bytes: [UInt8], what: String) throws -> String {
    guard let s = String(validating: bytes, as: UTF8.self) else {
        throw ToolError("\(what) is not valid UTF-8")
    }
    return s
}

/// Resident memory split from /proc/self/status: anonymous (heap, KV cache) vs file-backed
/// (the mapped model).
struct MemoryUsage: Codable {
    var rssAnonKB: Int = 0
    var rssFileKB: Int = 0
    var hwmKB: Int = 0

    static func current() -> MemoryUsage {
        var m = MemoryUsage()
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return m }
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let v = Int(parts[1]) else { continue }
            switch parts[0] {
            case "RssAnon:": m.rssAnonKB = v
            case "RssFile:": m.rssFileKB = v
            case "VmHWM:": m.hwmKB = v
            default: break
            }
        }
        return m
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = try enc.encode(value)
    print(String(decoding: data, as: UTF8.self))
}

func makeRunner(_ model: Model, threads: Int, maxBatch: Int, maxContext: Int, maxLogits: Int = 1) -> Runner {
    Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: threads),
           maxBatch: maxBatch, maxContext: maxContext, maxLogits: maxLogits)
}

extension WeightsLayout: ExpressibleByArgument {}
extension KernelChoice: ExpressibleByArgument {}
