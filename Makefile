# slmd — the two commands a newcomer needs:
#   make run    install what is missing, fetch the model, build release binaries, run slmd
#   make test   install what is missing, fetch the model and llama.cpp's test vocabularies,
#               run the whole test suite
# Both are idempotent. Model cache: $SLMD_MODEL_DIR or ${XDG_CACHE_HOME:-~/.cache}/slmd/models.

SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
SWIFT       ?= swift
# Numeric code is 10-100x slower in debug builds, so tests run in release with @testable.
TEST_FLAGS  := -c release -Xswiftc -enable-testing
BIN         := .build/release

# Where `make run` listens (a private path, so no root is needed). Talk to it with
#   SLMD_SOCKET=$(SOCKET) .build/release/slmctl complete "The capital of France is"
# It keeps the repacked weights file-backed in the user's cache directory and serves the
# example intents (docs/examples/intents.d: smart_home).
SOCKET      ?= /tmp/slmd-$(shell id -u).sock

.PHONY: all deps model vocabs kquant-models toy-kquant-models toy-realvocab-models build run test lint test-swift test-arm test-units test-load bench clean deb test-deb test-system fuzz

all: build

deps:
	@scripts/install-deps

model:
	@scripts/fetch-model >/dev/null

# The default model re-quantized by llama.cpp's llama-quantize to Q4_K_M, Q5_K_M, Q6_K, Q5_0 and
# Q5_1, for the K-quant reference tests (builds llama.cpp's tools in the cache the first time,
# like scripts/make-reference). Cache: <model cache>/kquants.
kquant-models: model
	@scripts/fetch-kquant-models >/dev/null

# Tiny random-weight llama/qwen2/qwen3 models quantized by llama-quantize to Q4_K_M, Q5_K_M,
# Q6_K, Q5_0, Q5_1 and Q8_0, sha256-pinned by Tests/Fixtures/toy-models/reference.json, for
# ToyKQuantReferenceTests. The first time: numpy from PyPI and llama.cpp's tools (like
# kquant-models); afterwards only a checksum pass. Cache: <model cache>/toy-kquants.
toy-kquant-models:
	@scripts/make-toy-models --fetch-kquants >/dev/null

# Tiny random-weight llama (llama.cpp's SentencePiece vocab) and qwen2/qwen3 (the real qwen2
# BPE vocab, 151936 tokens) models quantized by llama-quantize to Q8_0, Q4_K_M, Q5_K_M, Q6_K and
# Q5_0, sha256-pinned by Tests/Fixtures/toy-models/realvocab.json, for
# ToyRealVocabReferenceTests. Built like toy-kquant-models (~0.9 GB, the F32 source written
# and removed per toy); afterwards only a checksum pass. Cache: <model cache>/toy-realvocab.
toy-realvocab-models: vocabs
	@scripts/make-toy-models --fetch-realvocab >/dev/null

# llama.cpp's vocab-only GGUFs and tokenizer test cases (from the llama-cpp-python sdist),
# for the tokenizer reference tests. Cache: ${XDG_CACHE_HOME:-~/.cache}/slmd/vocabs.
vocabs:
	@scripts/fetch-vocabs >/dev/null

build: deps
	$(SWIFT) build -c release --product slmd
	$(SWIFT) build -c release --product slmctl

run: build model
	@echo "slmd: serving the default model on $(SOCKET); in another shell:" >&2
	@echo "  SLMD_SOCKET=$(SOCKET) $(BIN)/slmctl complete 'The capital of France is'" >&2
	$(BIN)/slmd serve --config etc/slmd.conf --model "$$(scripts/fetch-model)" --socket $(SOCKET) \
		--set repack_cache_dir="$${XDG_CACHE_HOME:-$$HOME/.cache}/slmd" --set intents_dir=docs/examples/intents.d

test: deps model vocabs kquant-models toy-kquant-models toy-realvocab-models lint test-swift test-arm test-units

# Style rules of .swift-format (`swift format lint`, rules only; see the script). ~10 s.
lint:
	scripts/lint-style

# The suite is XCTest only; the log feeds .ci/run's closing summary line.
test-swift:
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build --disable-swift-testing 2>&1 | tee .build/swift-test.log

test-arm:
	@if [ -x scripts/test-arm-kernels ]; then scripts/test-arm-kernels; fi

test-units:
	scripts/verify-units

# Load and fault test against the real daemon: LOAD_CLIENTS clients doing every op for
# LOAD_SECONDS while slmd gets SIGHUP, SIGTERM, SIGKILL and its model replaced by rename.
# Prints figures; fails only if a request is lost or the daemon misbehaves. Not part of
# `make test` (it runs for a minute). More knobs: scripts/test-load --help.
LOAD_CLIENTS ?= 16
LOAD_SECONDS ?= 60
test-load: build model
	scripts/test-load --clients $(LOAD_CLIENTS) --seconds $(LOAD_SECONDS) --slmd $(BIN)/slmd --model "$$(scripts/fetch-model)"

bench: build model
	$(BIN)/slmd bench

clean:
	rm -rf .build

# Debian package out/slmd_<version>_<arch>.deb: static-stdlib release build in .build-static/
# (the normal .build/ is untouched), dpkg-deb only. See README "Debian package".
deb: deps
	scripts/build-deb

# Builds the .deb (unless SKIP_BUILD=1 and one exists), unpacks it into a temp root and checks
# contents, modes, runtime deps and `slmd serve --check-config` on the installed config.
# Not part of `make test`: a cold static build alone takes ~3.5 min on 2 cores.
test-deb: deps model
	scripts/test-deb

# End-to-end under a real systemd: boots a Debian 12 container (systemd-nspawn --boot; rootfs
# debootstrapped once into ${XDG_CACHE_HOME:-~/.cache}/slmd/test-system), installs the .deb
# with dpkg -i and checks socket activation, Type=notify, watchdog, reload, MemoryMax,
# journald fields, systemd-analyze security and dpkg --purge. Root only; opt-in (minutes).
# DEB=path tests a given package; SKIP_BUILD=1 repackages without rebuilding.
test-system: deps model
	scripts/test-system

# libFuzzer harnesses (Fuzz/) over the frame/request decoders, the GGUF parser, the schema
# compiler and automaton, and the config and intent parsers, built with
# -sanitize=fuzzer,address into .build-fuzz/. Each target runs FUZZ_SECONDS (CI: 20); exits
# non-zero on any crash, timeout or OOM, or when an input saved in Fuzz/crashes/ still crashes.
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz
