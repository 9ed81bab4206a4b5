#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` from the llama-cpp-python sdist (which vendors
# llama.cpp) and a tiny GGUF text model converted from tools/make_tiny_models.py's Qwen2.5-VL, for the
# remote judge's integration tests (tests/integration/judge). Only PyPI is contacted.
#
#     tools/build_llama_server.sh [OUT]        # OUT defaults to build/llama-server
#
# Idempotent: each step leaves its result under OUT and is skipped when the result is there. Prints the
# paths the tests need, `server=...`, `model=...` and `mmproj=...`, on its last three lines.
# Needs cmake, ninja and g++ (tools/install_system_deps.sh). JOBS (default 2) sets the build's -j.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/build/llama-server}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
JOBS="${JOBS:-2}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SRC="$OUT/llama-cpp-python-$VERSION"
LLAMA="$SRC/vendor/llama.cpp"
SERVER="$OUT/bin/llama-server"
PYDEPS="$OUT/pydeps"
# the tiny Qwen2.5-VL with a vision tower of depth 3: the converter maps the merger's blocks only below
# the depth, so the tiny models' depth 2 does not convert to an mmproj
HF="$OUT/tiny-qwen2_5_vl-vd3"
GGUF="$OUT/tiny-qwen2_5_vl-vd3.gguf"
MMPROJ="$OUT/tiny-qwen2_5_vl-vd3.mmproj.gguf"

log() { echo "build_llama_server: $*" >&2; }

# 1. the source: the sdist from PyPI
if [ ! -f "$LLAMA/convert_hf_to_gguf.py" ]; then
  log "downloading llama-cpp-python==$VERSION (sdist)"
  "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$OUT/dl" "llama-cpp-python==$VERSION"
  tar -xzf "$OUT/dl/llama_cpp_python-$VERSION.tar.gz" -C "$OUT"
  [ -d "$SRC" ] || mv "$OUT/llama_cpp_python-$VERSION" "$SRC"
fi

# 2. the server binary
if [ ! -x "$SERVER" ]; then
  log "building llama-server (-j$JOBS; a few minutes)"
  cmake -S "$LLAMA" -B "$OUT/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$OUT/cmake" --target llama-server -j"$JOBS" >&2
  mkdir -p "$OUT/bin"
  cp "$OUT/cmake/bin/llama-server" "$SERVER.tmp" && mv "$SERVER.tmp" "$SERVER"
fi

# 3. the converter's Python needs (sentencepiece), kept out of the project's venv
if [ ! -d "$PYDEPS/sentencepiece" ]; then
  log "installing the converter's sentencepiece under $PYDEPS"
  "$PY" -m pip install --quiet --target "$PYDEPS" sentencepiece
fi

# 4. the tiny model (text part of the tiny Qwen2.5-VL) and its GGUF
if [ ! -f "$GGUF" ]; then
  if [ ! -f "$HF/config.json" ]; then
    log "making the tiny Qwen2.5-VL"
    PYTHONPATH="$ROOT/tools" "$PY" -c "
import sys; from pathlib import Path
from make_tiny_models import build_tokenizer, qwen2_5_vl_config, save_vlm
tok = build_tokenizer(); cfg = qwen2_5_vl_config(tok)
cfg.vision_config.depth, cfg.vision_config.fullatt_block_indexes = 3, [2]
save_vlm(cfg, tok, 14, Path(sys.argv[1]))" "$HF"
  fi
  log "converting to GGUF (text model, then the vision tower as mmproj)"
  # a tiny trained vocabulary has no known pre-tokenizer hash; it is Qwen2's byte-level BPE
  for what in text mmproj; do
    dest="$GGUF"; flag=""
    [ "$what" = mmproj ] && dest="$MMPROJ" && flag="--mmproj"
    PYTHONPATH="$PYDEPS:$LLAMA/gguf-py:$LLAMA" "$PY" -c "
import sys
sys.argv = ['convert_hf_to_gguf.py', sys.argv[1], '--outfile', sys.argv[2] + '.tmp', '--outtype', 'f32'] + sys.argv[3:]
import convert_hf_to_gguf as c
from conversion.base import TextModel
TextModel.get_vocab_base_pre = lambda self, tokenizer: 'qwen2'
c.main()" "$HF" "$dest" $flag >&2
  done
  mv "$MMPROJ.tmp" "$MMPROJ"
  mv "$GGUF.tmp" "$GGUF"
fi

echo "server=$SERVER"
echo "model=$GGUF"
echo "mmproj=$MMPROJ"
