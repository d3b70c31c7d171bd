# slmd — the two commands a newcomer needs:
#   make run    install what is missing, fetch the model, build release binaries, run slmd
#   make test   install what is missing, fetch the model, run the whole test suite
# Both are idempotent. Model cache: $SLMD_MODEL_DIR or ${XDG_CACHE_HOME:-~/.cache}/slmd/models.

SWIFT       ?= swift
# Numeric code is 10-100x slower in debug builds, so tests run in release with @testable.
TEST_FLAGS  := -c release -Xswiftc -enable-testing
BIN         := .build/release

.PHONY: all deps model build run test test-swift test-arm bench clean

all: build

deps:
	@scripts/install-deps

model:
	@scripts/fetch-model >/dev/null

build: deps
	$(SWIFT) build -c release --product slmd

run: build model
	@echo "slmd: generating from the default model (the socket daemon lands with 'slmd serve')" >&2
	$(BIN)/slmd generate --prompt "<|im_start|>user\nWhat can a small language model do on a Raspberry Pi?<|im_end|>\n<|im_start|>assistant\n" --max-tokens 96

test: deps model test-swift test-arm

test-swift:
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build

test-arm:
	@if [ -x scripts/test-arm-kernels ]; then scripts/test-arm-kernels; fi

bench: build model
	$(BIN)/slmd bench

clean:
	rm -rf .build
