#!/usr/bin/env python3
"""Writes the seed corpora in Fuzz/corpus/<target>/ (committed; rerun after changing this file).

    python3 Fuzz/make-seeds.py

Seeds are small valid (and a few nearly valid) inputs, so libFuzzer starts from inputs that
get past the first checks. Config and intent seeds also include the repository's own
etc/slmd.conf and docs/examples/intents.d/*.json.
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- protocol: byte 0 picks the max payload (index 5 = 1 MiB), then a framed stream ---

def frame(payload, ftype=1, version=1, flags=0):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    if isinstance(payload, str):
        payload = payload.encode()
    return b"SLMD" + bytes([version, ftype]) + struct.pack(">HI", flags, len(payload)) + payload


requests = {
    "hello": {"id": 1, "op": "hello", "client": "fuzz", "max_version": 1},
    "info": {"id": "a", "op": "info"},
    "complete": {"id": 2, "op": "complete", "prompt": "The capital of France is", "max_tokens": 16,
                 "temperature": 0.7, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "repeat_penalty": 1.1,
                 "repeat_window": 64, "seed": 42, "stop": ["\n", "."], "deadline_ms": 5000, "stream": False,
                 "session": "s1", "parse_special": True},
    "chat": {"id": 3, "op": "chat", "messages": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Hi \u00e9\u4e2d\ud83d\ude00"}]},
    "tokenize": {"id": 4, "op": "tokenize", "text": "hello world", "parse_special": False},
    "detokenize": {"id": 5, "op": "detokenize", "ids": [0, 1, 2147483647]},
    "cancel": {"id": 6, "op": "cancel", "target": "a"},
    "suggest": {"id": 7, "op": "suggest", "prefix": "I would like to", "n": 3, "max_tokens": 8, "max_words": 4,
                "stop_at_sentence": False, "session": "ui", "deadline_ms": 100},
    "choose": {"id": 8, "op": "choose", "prompt": "Is it hot?", "options": ["yes", "no"], "normalize": True},
    "parse": {"id": 9, "op": "parse", "utterance": "dim the lights",
              "schema": "{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\",\"maximum\":100}}}",
              "instruction": "JSON only", "examples": [["on", {"v": 1}]], "max_tokens": 32,
              "temperature": 0.0, "tokens": True},
    "parse-intent": {"id": -9223372036854775808, "op": "parse", "utterance": "x", "intent": "smart_home"},
    "ping": {"id": 9223372036854775807, "op": "ping"},
    "status": {"id": 10, "op": "status"},
    "stats": {"id": 11, "op": "stats"},
}
for name, req in requests.items():
    out("protocol", "req-" + name, bytes([5]) + frame(req))
out("protocol", "two-frames", bytes([5]) + frame(requests["ping"]) + frame(requests["hello"]))
out("protocol", "empty-payload", bytes([5]) + frame(b""))
out("protocol", "small-max", bytes([2]) + frame(requests["ping"]))
out("protocol", "truncated", bytes([5]) + frame(requests["chat"])[:-3])
out("protocol", "bad-version", bytes([5]) + frame(requests["ping"], version=2))
out("protocol", "reply", bytes([5]) + frame({"id": 2, "op": "complete", "text": "Paris", "finish_reason": "stop",
                                               "usage": {"prompt_tokens": 5, "generated_tokens": 1, "ttft_ms": 1.5,
                                                         "tokens_per_second": 30.25, "total_ms": 2.0}}, ftype=2))
out("protocol", "reply-parse", bytes([5]) + frame({"id": 9, "op": "parse", "result": {"v": 1}, "text": "{\"v\":1}",
                                                     "complete": True, "generated_tokens": 5, "ms": 3.5,
                                                     "confidence": {"v": 0.9}, "tokens": [1, 2]}, ftype=2))
out("protocol", "event", bytes([5]) + frame({"id": 2, "event": "token", "text": "Par", "token_count": 1}, ftype=3))
out("protocol", "error", bytes([5]) + frame({"id": None, "code": "bad_field", "code_num": 7, "message": "x"}, ftype=4))
out("protocol", "raw-payload", bytes([0]) + json.dumps(requests["complete"]).encode())

# --- gguf ---

GGUF_T = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8,
          "arr": 9, "u64": 10, "i64": 11, "f64": 12}
FMT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f", "bool": "<B",
       "u64": "<Q", "i64": "<q", "f64": "<d"}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if t == "str":
        return gstr(v)
    if t == "arr":
        et, items = v
        return struct.pack("<IQ", GGUF_T[et], len(items)) + b"".join(gval(et, i) for i in items)
    return struct.pack(FMT[t], v)


def gguf(meta, tensors, version=3, alignment=32):
    """meta: [(key, type, value)]; tensors: [(name, dims, ggml_type, nbytes)]."""
    h = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(meta))
    for k, t, v in meta:
        h += gstr(k) + struct.pack("<I", GGUF_T[t]) + gval(t, v)
    off, offs = 0, []
    for _, _, _, n in tensors:
        offs.append(off)
        off += (n + alignment - 1) // alignment * alignment
    for (name, dims, gt, n), o in zip(tensors, offs):
        h += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        h += struct.pack("<IQ", gt, o)
    h += b"\0" * (-len(h) % alignment)
    for _, _, _, n in tensors:
        h += bytes((i * 7 + 3) & 0xFF for i in range(n)) + b"\0" * (-n % alignment)
    return h


meta_all = [
    ("general.architecture", "str", "llama"), ("general.name", "str", "fuzz"),
    ("a.u8", "u8", 200), ("a.i8", "i8", -3), ("a.u16", "u16", 60000), ("a.i16", "i16", -30000),
    ("a.u32", "u32", 4000000000), ("a.i32", "i32", -2000000000), ("a.f32", "f32", 1.5), ("a.bool", "bool", 1),
    ("a.u64", "u64", 2 ** 63), ("a.i64", "i64", -2 ** 62), ("a.f64", "f64", -0.25),
    ("tokenizer.ggml.tokens", "arr", ("str", ["<s>", "</s>", "a", "b", "\u00e9"])),
    ("tokenizer.ggml.scores", "arr", ("f32", [0.0, -1.0, -2.0])),
    ("nested", "arr", ("arr", [("i32", [1, 2]), ("i32", [])])),
    ("llama.context_length", "u32", 2048), ("llama.embedding_length", "u32", 64),
]
out("gguf", "all-types", gguf(meta_all, [("tok_embd.weight", [4, 2], 0, 32), ("q", [32, 1], 2, 18),
                                         ("k", [256], 12, 144), ("h", [3], 1, 6)]))
out("gguf", "align64", gguf([("general.alignment", "u32", 64)], [("t0", [8], 0, 32), ("t1", [16], 30, 32)], alignment=64))
out("gguf", "v2-meta-only", gguf(meta_all[:4], [], version=2))
out("gguf", "empty", gguf([], []))
out("gguf", "one-tensor-q8", gguf([("general.architecture", "str", "llama")], [("w", [32, 2, 1, 1], 8, 68)]))
out("gguf", "truncated", gguf(meta_all[:3], [("w", [64], 0, 256)])[:-100])

# --- schema ---

schemas = {
    "object": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 3},
        "none": {"type": "null"}},
        "required": ["name", "age"], "additionalProperties": False},
    "union": {"type": ["integer", "string", "null", "boolean", "array", "object"], "items": {"type": "integer"},
              "maxLength": 2, "minimum": -5, "maximum": 5, "maxItems": 2},
    "enum": {"enum": ["a", "ab", "abc", 1, 12, 1.5e3, -0.0, True, False, None, "\u00e9\"\\\n"]},
    "const": {"const": "x", "title": "t", "description": "d", "$comment": "c", "examples": ["x"], "default": "x"},
    "int-min": {"type": "integer", "minimum": -1000000000000000000},
    "int-max": {"type": "integer", "maximum": 1000000000000000000},
    "int-range": {"type": "integer", "minimum": -17, "maximum": 123456},
    "int-neg": {"type": "integer", "minimum": -999, "maximum": -10},
    "int-enum-bounds": {"enum": [1, 5, 9], "minimum": 0, "maximum": 10},
    "string-maxlen-big": {"type": "string", "maxLength": 2147483646},
    "array-nested": {"type": "array", "maxItems": 2, "items": {"type": "array", "maxItems": 3,
                                                               "items": {"type": "array", "items": {"type": "integer"}}}},
    "number-integer": {"type": ["number", "integer"]},
    "deep": {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "object",
             "properties": {"c": {"type": "array", "items": {"enum": ["x", "y"]}}}, "required": ["c"]}},
             "required": ["b"]}}, "required": ["a"]},
    "optional-props": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                                                          "c": {"type": "string"}}, "required": ["b"]},
    "smart-home": json.load(open(os.path.join(ROOT, "docs/examples/intents.d/smart_home.json")))["schema"],
}
for name, s in schemas.items():
    out("schema", name, json.dumps(s, ensure_ascii=False))
out("schema", "escaped-keys", '{"type":"object","properties":{"a\\"b":{"type":"null"},"\\u00e9/~":{"type":"boolean"}}}')
out("schema", "invalid", '{"type":"object","properties":')

# --- config ---

out("config", "slmd.conf", open(os.path.join(ROOT, "etc/slmd.conf"), "rb").read())
out("config", "sizes", "memory_budget = 512K\nmax_frame = 64M\nmax_output_buffer = 1G\n# comment\n")
out("config", "ids", "allowed_uids = 0, 1000 65534\nallowed_gids = 4294967295\nsocket_mode = 0777\n")
out("config", "bools", "prefetch = yes\nwarm_up = off\nintents_strict = 1\nweights_layout = mapped\n")
out("config", "crlf", "threads = 2\r\nmax_sequences = 8\r\nlog_level = debug\r\n")
out("config", "bad-line", "threads = 2\nno equals sign here\n")
out("config", "bad-key", "threds = 2\n")

# --- intents ---

out("intents", "smart_home.json", open(os.path.join(ROOT, "docs/examples/intents.d/smart_home.json"), "rb").read())
out("intents", "minimal.json", json.dumps({"schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}))
out("intents", "examples.json", json.dumps({
    "name": "timer", "description": "set a timer", "instruction": "JSON only", "max_tokens": 4096,
    "schema": {"type": "object", "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": 600},
                                                "label": {"type": ["string", "null"], "maxLength": 20}},
               "required": ["minutes"]},
    "examples": [["ten minutes", {"minutes": 10}], ["tea, 3 min", {"label": "tea", "minutes": 3}]]}))
out("intents", "bad-example.json", json.dumps({"schema": {"enum": [1, 2]}, "examples": [["x", 3]]}))

# --- schema, generator mode: byte 0 = 0x01, the rest drives Fuzz/Support/SchemaGen.swift ---

import random
rng = random.Random(15)
for n in range(6):
    out("schema", "gen-%d" % n, bytes([1]) + bytes(rng.randrange(256) for _ in range(64 * (n + 1))))
