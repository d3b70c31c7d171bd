/// llama.cpp's `llm_chat_detect_template` (src/llama-chat.cpp), ported check for check: the
/// name of the built-in template llama.cpp would use for a Jinja template text, or nil when
/// it recognises none. slmd renders only some of these (see `ChatTemplate.Format`); the
/// rest are named in the error so the user knows what the model wants.
enum LlamaCppChatTemplate {
    /// llama.cpp's built-in template names (`LLM_CHAT_TEMPLATES`): a template text that is
    /// exactly one of them selects it.
    static let names: Set<String> = [
        "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1", "mistral-v3",
        "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4", "falcon3", "zephyr", "monarch",
        "gemma", "orion", "openchat", "vicuna", "vicuna-orca", "deepseek", "deepseek2", "deepseek3", "deepseek-ocr",
        "command-r", "llama3", "chatglm3", "chatglm4", "glmedge", "minicpm", "exaone3", "exaone4", "exaone-moe",
        "rwkv-world", "granite", "granite-4.0", "granite-4.1", "gigachat", "megrez", "yandex", "bailing",
        "bailing-think", "bailing2", "llama4", "smolvlm", "hunyuan-moe", "gpt-oss", "hunyuan-dense", "hunyuan-vl",
        "kimi-k2", "seed_oss", "grok-2", "pangu-embedded", "solar-open",
    ]

    static func detect(_ t: String) -> String? {
        if names.contains(t) { return t }
        // Byte comparisons, as std::string::find: String.contains would compare characters
        // under canonical equivalence.
        func has(_ s: String) -> Bool { t.utf8.firstRange(of: s.utf8) != nil }
        if has("<|im_start|>") {
            return has("<|im_sep|>") ? "phi4" : has("<end_of_utterance>") ? "smolvlm" : "chatml"
        } else if t.utf8.starts(with: "mistral".utf8) || has("[INST]") {
            if has("[SYSTEM_PROMPT]") {
                return "mistral-v7"
            } else if has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]") {
                if has(" [INST]") { return "mistral-v1" }
                if has("\"[INST]\"") { return "mistral-v3-tekken" }
                return "mistral-v3"
            } else {
                if has("content.strip()") { return "llama2-sys-strip" }
                if has("bos_token + '[INST]") { return "llama2-sys-bos" }
                if has("<<SYS>>") { return "llama2-sys" }
                return "llama2"
            }
        } else if has("<|assistant|>") && has("<|end|>") {
            return "phi3"
        } else if has("[gMASK]<sop>") {
            return "chatglm4"
        } else if has("<|assistant|>") && has("<|user|>") {
            if has("<|tool_declare|>") { return "exaone-moe" }
            return has("</s>") ? "falcon3" : "glmedge"
        } else if has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>") {
            return "glmedge"
        } else if has("<|user|>") && has("<|endoftext|>") {
            return "zephyr"
        } else if has("bos_token + message['role']") {
            return "monarch"
        } else if has("<start_of_turn>") {
            return "gemma"
        } else if has("'\\n\\nAssistant: ' + eos_token") {
            return "orion"
        } else if has("GPT4 Correct ") {
            return "openchat"
        } else if has("USER: ") && has("ASSISTANT: ") {
            return has("SYSTEM: ") ? "vicuna-orca" : "vicuna"
        } else if has("### Instruction:") && has("<|EOT|>") {
            return "deepseek"
        } else if has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>") {
            return "command-r"
        } else if has("<|start_header_id|>") && has("<|end_header_id|>") {
            return "llama3"
        } else if has("[gMASK]sop") {
            return "chatglm3"
        } else if has("<用户>") {
            return "minicpm"
        } else if has("'Assistant: ' + message['content'] + eos_token") {
            return "deepseek2"
        } else if has("<｜Assistant｜>") && has("<｜User｜>") && has("<｜end▁of▁sentence｜>") {
            return "deepseek3"
        } else if has("[|system|]") && has("[|assistant|]") && has("[|endofturn|]") {
            return has("[|tool|]") ? "exaone4" : "exaone3"
        } else if has("rwkv-world") || has("{{- 'User: ' + message['content']|trim + '\\n\\n' -}}") {
            return "rwkv-world"
        } else if has("<|start_of_role|>") {
            if has("<tool_call>") || has("<tools>") {
                return has("g4_default_system_message") ? "granite-4.0" : "granite-4.1"
            }
            return "granite"
        } else if has("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]") {
            return "gigachat"
        } else if has("<|role_start|>") {
            return "megrez"
        } else if has(" Ассистент:") {
            return "yandex"
        } else if has("<role>ASSISTANT</role>") && has("'HUMAN'") {
            return "bailing"
        } else if has("<role>ASSISTANT</role>") && has("\"HUMAN\"") && has("<think>") {
            return "bailing-think"
        } else if has("<role>ASSISTANT</role>") && has("<role>HUMAN</role>") && has("<|role_end|>") {
            return "bailing2"
        } else if has("<|header_start|>") && has("<|header_end|>") {
            return "llama4"
        } else if has("<|endofuserprompt|>") {
            return "dots1"
        } else if has("<|extra_0|>") && has("<|extra_4|>") {
            return "hunyuan-moe"
        } else if has("<|start|>") && has("<|channel|>") {
            return "gpt-oss"
        } else if has("<｜hy_Assistant｜>") && has("<｜hy_begin▁of▁sentence｜>") {
            return "hunyuan-vl"
        } else if has("<｜hy_Assistant｜>") && has("<｜hy_place▁holder▁no▁3｜>") {
            return "hunyuan-dense"
        } else if has("<|im_assistant|>assistant<|im_middle|>") {
            return "kimi-k2"
        } else if has("<seed:bos>") {
            return "seed_oss"
        } else if has("'Assistant: '  + message['content'] + '<|separator|>") {
            return "grok-2"
        } else if has("[unused9]系统：[unused10]") {
            return "pangu-embedded"
        } else if has("<|begin|>") && has("<|end|>") && has("<|content|>") {
            return "solar-open"
        }
        return nil
    }
}
