// Greedy decoding with llama.cpp's C API, for scripts/make-reference (greedy.json, logits.json).
//
// Built by scripts/make-reference against the llama.cpp it builds in the cache; never part of
// slmd. It is written against llama.h rather than llama-cli/llama-simple because the fixtures
// need the raw float32 logits of every step, which no llama.cpp tool prints.
//
// usage: reference-decode MODEL THREADS MAX_TOKENS TOP_K [fa-off] [add-special] < prompts
// (fa-off: flash attention disabled, for llama.cpp's own spread; scripts/make-kquant-reference;
// add-special: tokenize with add_special=true, i.e. BOS where the vocab asks for it, as
// llama-cli and llama-server do; scripts/make-toy-models' real-vocab toys)
//
// stdin: one prompt per line, as lowercase hex of its UTF-8 bytes (so newlines and special
// token text pass through unchanged). For each prompt, stdout gets:
//   P id id ...                       prompt ids (llama_tokenize, add_special=false unless add-special,
//                                     parse_special=true)
//   S step token eog id:logit ...     one line per step: the argmax token, 1 if it ends generation,
//                                     then the TOP_K best id:logit (logit desc, ties by lower id)
//   T hex                             the generated text before the EOG token
//   X hex                             the EOG token's text, if generation ended with one
//   E
// (special tokens rendered; split so the driver can compare with llama-simple, which does not
// print the EOG token)
// Logits are printed with %a (hex float) so the driver gets the exact float32 values.
//
// Settings are llama.cpp's defaults, as the reference was made: n_ctx 1024, n_batch 1024,
// n_ubatch 512, flash attention AUTO (enabled on CPU), F16 K/V cache; a fresh context per
// prompt; the whole prompt is decoded as one batch; the EOG token, if generated, is included.
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

static void quiet(ggml_log_level level, const char *text, void *) {
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);  // errors only; the info log is noise here
}

static int fail(const char *what) {
    fprintf(stderr, "reference-decode: %s\n", what);
    return 1;
}

static bool unhex(const std::string &hex, std::string &out) {
    if (hex.size() % 2 != 0) return false;
    out.clear();
    for (size_t i = 0; i < hex.size(); i += 2) {
        char *end = nullptr;
        std::string byte = hex.substr(i, 2);
        long v = strtol(byte.c_str(), &end, 16);
        if (*end != '\0') return false;
        out.push_back(static_cast<char>(v));
    }
    return true;
}

int main(int argc, char **argv) {
    if (argc < 5) return fail("usage: reference-decode MODEL THREADS MAX_TOKENS TOP_K [fa-off] [add-special] < hex-prompts");
    bool fa_off = false, add_special = false;
    for (int i = 5; i < argc; i++) {
        const std::string flag = argv[i];
        if (flag == "fa-off") fa_off = true;
        else if (flag == "add-special") add_special = true;
        else return fail("unknown flag; expected fa-off or add-special");
    }
    const char *model_path = argv[1];
    const int threads = atoi(argv[2]);
    const int max_tokens = atoi(argv[3]);
    const int top_k = atoi(argv[4]);
    if (threads < 1 || max_tokens < 1 || top_k < 2) return fail("THREADS, MAX_TOKENS must be >= 1 and TOP_K >= 2");

    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mparams = llama_model_default_params();
    llama_model *model = llama_model_load_from_file(model_path, mparams);
    if (!model) return fail("cannot load the model");
    const llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    std::string line, prompt;
    while (std::getline(std::cin, line)) {
        if (!unhex(line, prompt)) return fail("stdin line is not hex");

        std::vector<llama_token> ids(prompt.size() + 16);
        int n = llama_tokenize(vocab, prompt.data(), static_cast<int32_t>(prompt.size()), ids.data(),
                               static_cast<int32_t>(ids.size()), add_special, /*parse_special*/ true);
        if (n < 0) return fail("tokenize failed");
        ids.resize(n);
        if (ids.empty()) return fail("empty prompt");

        llama_context_params cparams = llama_context_default_params();
        cparams.n_ctx = 1024;
        cparams.n_batch = 1024;
        cparams.n_ubatch = 512;
        cparams.n_threads = threads;
        cparams.n_threads_batch = threads;
        cparams.flash_attn_type = fa_off ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;
        cparams.type_k = GGML_TYPE_F16;
        cparams.type_v = GGML_TYPE_F16;
        llama_context *ctx = llama_init_from_model(model, cparams);
        if (!ctx) return fail("cannot create a context");

        printf("P");
        for (llama_token t : ids) printf(" %d", t);
        printf("\n");

        std::string text, eog_text;
        std::vector<int> order(n_vocab);
        if (llama_decode(ctx, llama_batch_get_one(ids.data(), static_cast<int32_t>(ids.size()))) != 0)
            return fail("decode of the prompt failed");
        for (int step = 0; step < max_tokens; step++) {
            const float *logits = llama_get_logits_ith(ctx, -1);
            std::iota(order.begin(), order.end(), 0);
            // Ties go to the lower id, as llama_sampler_init_greedy does.
            auto better = [logits](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
            std::partial_sort(order.begin(), order.begin() + top_k, order.end(), better);
            llama_token tok = order[0];
            bool eog = llama_vocab_is_eog(vocab, tok);
            printf("S %d %d %d", step, tok, eog ? 1 : 0);
            for (int k = 0; k < top_k; k++) printf(" %d:%a", order[k], static_cast<double>(logits[order[k]]));
            printf("\n");

            char piece[256];
            int len = llama_token_to_piece(vocab, tok, piece, sizeof piece, 0, /*special*/ true);
            if (len < 0) return fail("token_to_piece failed");
            if (eog) {
                eog_text.assign(piece, len);
                break;
            }
            text.append(piece, len);
            if (llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) return fail("decode failed");
        }
        printf("T ");
        for (unsigned char c : text) printf("%02x", c);
        printf("\n");
        if (!eog_text.empty()) {
            printf("X ");
            for (unsigned char c : eog_text) printf("%02x", c);
            printf("\n");
        }
        printf("E\n");
        fflush(stdout);
        llama_free(ctx);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
