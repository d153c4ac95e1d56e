#!/usr/bin/env bash
# `make run`: index this repository, start the local LLM backend (llama.cpp's
# llama-server with SmolLM2-135M, installed by `make setup`) unless the
# configuration (CAIRN_CONFIG) names backends of its own, and serve.
set -euo pipefail
cd "$(dirname "$0")/.."
CAIRN=${CAIRN:-target/release/cairn}
DATA_DIR=${DATA_DIR:-.cairn/data}
REPO_NAME=${REPO_NAME:-cairn}
LLM_PORT=${LLM_PORT:-7711}

"$CAIRN" --data-dir "$DATA_DIR" index . --repo "$REPO_NAME"

args=()
if [ -n "${CAIRN_CONFIG:-}" ] && grep -q '^[[:space:]]*\[\[backends\]\]' "$CAIRN_CONFIG"; then
    echo "run: answering with the backends named in $CAIRN_CONFIG"
elif [ -x .local/llm/llama-server ] && [ -f .local/llm/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    mkdir -p .cairn
    .local/llm/llama-server -m .local/llm/SmolLM2-135M-Instruct.Q4_1.gguf \
        --host 127.0.0.1 --port "$LLM_PORT" -c 4096 >.cairn/llama-server.log 2>&1 &
    llm=$!
    trap 'kill "$llm" 2>/dev/null || true' EXIT
    for _ in $(seq 1 240); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$LLM_PORT/health', timeout=1)" 2>/dev/null; then
            break
        fi
        kill -0 "$llm" 2>/dev/null || { echo "run: llama-server exited; see .cairn/llama-server.log" >&2; exit 1; }
        sleep 0.5
    done
    cfg=.cairn/run.toml
    {
        if [ -n "${CAIRN_CONFIG:-}" ]; then cat "$CAIRN_CONFIG"; echo; fi
        echo '# written by scripts/run.sh: the local backend it started'
        echo '[[backends]]'
        echo 'name = "smollm2"'
        echo "base_url = \"http://127.0.0.1:$LLM_PORT/v1\""
        echo 'model = "smollm2"'
        echo 'max_sensitivity = "restricted"  # a process on this machine'
        echo 'context_tokens = 4096'
    } >"$cfg"
    args=(--config "$cfg")
    echo "run: llama-server with SmolLM2-135M on 127.0.0.1:$LLM_PORT (log: .cairn/llama-server.log)"
else
    echo "run: no local LLM backend installed (make setup; CAIRN_SETUP_SKIP_LLM was set?): serving search only"
fi
"$CAIRN" "${args[@]}" --data-dir "$DATA_DIR" serve
