import ArgumentParser
import SLMProtocol

@main
struct SLMD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slmd",
        abstract: "Small-language-model daemon and offline model tools.",
        discussion: """
            The offline tools load the model from its GGUF file (memory-mapped; on every SIMD \
            kernel path (AVX-512 VNNI, AVX2, NEON) the weights are repacked for the kernels unless --weights-layout \
            mapped, into $SLMD_CACHE_DIR or --repack-cache-dir if given, else into memory) \
            and run on this machine only.
            Default model: $SLMD_MODEL, else $SLMD_MODEL_DIR (default \
            ${XDG_CACHE_HOME:-~/.cache}/slmd/models)/SmolLM2-135M-Instruct.Q4_1.gguf, \
            which scripts/fetch-model downloads.
            """,
        version: SLMDVersion.string,
        subcommands: [Serve.self, Tokenize.self, Generate.self, Perplexity.self, Bench.self]
    )
}

