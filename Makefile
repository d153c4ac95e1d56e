# cairn — the two commands a new user needs: `make run` and `make test`.
# Both go through `make setup`, which installs the ONNX Runtime library and the
# default model into .local/ (git-ignored) and is quick when nothing is missing.

CARGO ?= cargo
REPO_NAME ?= cairn
DATA_DIR ?= .cairn/data
CAIRN := target/release/cairn

.PHONY: setup build run test eval bench lint fmt clean deploy-check

setup:
	@./scripts/setup.sh

build: setup
	$(CARGO) build --release --locked --bin cairn

# Index this repository into the embedded store and serve it on 127.0.0.1,
# with the local LLM backend (llama-server + SmolLM2) unless CAIRN_CONFIG names one.
run: build
	DATA_DIR=$(DATA_DIR) REPO_NAME=$(REPO_NAME) CAIRN=$(CAIRN) ./scripts/run.sh

# Every test: unit, integration, snapshot and end-to-end (release profile, so
# the build is shared with `make run`).
test: setup
	$(CARGO) test --release --locked --workspace
	$(CARGO) build --release --locked --bin cairn
	./scripts/validate-deploy.sh

# Retrieval quality on the dev eval set.
eval: build
	$(CAIRN) eval ../shared/eval/dev

# Throughput and latency benches (see docs/performance.md).
bench: build
	./scripts/bench-venv.sh
	$(CARGO) bench --locked -p cairn-benches

# deploy/: Dockerfiles, compose, Helm chart, systemd units (see docs/deployment.md).
deploy-check: build
	./scripts/validate-deploy.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf target .cairn
