# Petrel: the two commands of the README, and a few helpers.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)
PROMPT ?= The capital of France is
MAX_TOKENS ?= 64
RELEASE_FLAGS := -c release
BIN := .build/release/petrel

.PHONY: setup model build release generate serve test test-swift test-clients test-deploy test-aiperf fixtures clean

setup:
	@scripts/setup.sh

model: setup
	@scripts/fetch-model.sh >/dev/null

build: setup
	swift build --product petrel

release: setup
	swift build $(RELEASE_FLAGS) --product petrel

generate: model release
	$(BIN) generate --prompt "$(PROMPT)" --max-tokens $(MAX_TOKENS)

serve: model release
	$(BIN) serve

test: test-swift test-clients test-deploy test-aiperf

test-swift: model
	swift build --build-tests
	swift test --skip-build --parallel --num-workers 2

# The real clients (tritonclient, curl, openai) against a real `petrel serve` on loopback.
test-clients: model
	scripts/setup-clients.sh
	swift build --product petrel
	python3 -m pytest -q Tests/clients

# NVIDIA's aiperf against /v1/completions and /v1/chat/completions, streaming and not (CPU server).
test-aiperf: model
	swift build --product petrel
	scripts/aiperf-smoke.sh

# deploy/: Kubernetes manifests and the KServe runtime against the API schemas, the Helm chart
# linted and rendered by Helm's SDK (scripts/validate_deploy.py says what is checked).
test-deploy:
	scripts/validate-deploy.sh

fixtures:
	scripts/setup-reference.sh
	python3 scripts/make_fixtures.py

clean:
	rm -rf .build
