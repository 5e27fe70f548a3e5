#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` from the very llama.cpp source that the installed
# node-llama-cpp package ships (node_modules/node-llama-cpp/llama/gitRelease.bundle), so that
# `LLAMA_SERVER=<path> npm run bench` compares the agent's engine with llama-server on the same
# llama.cpp release. Nothing is downloaded: CPU only, no curl, no OpenSSL, no prebuilt web UI.
#
#   scripts/build-llama-server.sh [--out <dir>] [--jobs <n>]
#
# Default output folder: .lmgate/llama-server (git-ignored). Prints the binary's path last.
# Takes 5-20 min on a 2-core machine (5 here); run it with `nice` if the machine is shared.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/.lmgate/llama-server"
JOBS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --jobs|-j) JOBS="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

LLAMA_DIR="$ROOT/node_modules/node-llama-cpp/llama"
BUNDLE="$LLAMA_DIR/gitRelease.bundle"
INFO="$LLAMA_DIR/llama.cpp.info.json"
[ -f "$BUNDLE" ] || { echo "no $BUNDLE: run npm install first" >&2; exit 1; }
for tool in git cmake g++; do
  command -v "$tool" >/dev/null || { echo "$tool is needed to build llama-server" >&2; exit 1; }
done
TAG="$(node -p "require('$INFO').tag")"

SRC="$OUT/llama.cpp-$TAG"
BUILD="$SRC/build"
if [ ! -d "$SRC/.git" ]; then
  echo "cloning llama.cpp $TAG from $BUNDLE"
  mkdir -p "$OUT"
  git -c advice.detachedHead=false clone --quiet "$BUNDLE" "$SRC"
fi
# The bundle holds the release as its HEAD; check out the tag by name when the bundle carries it.
if git -C "$SRC" rev-parse --quiet --verify "refs/tags/$TAG" >/dev/null; then
  git -C "$SRC" -c advice.detachedHead=false checkout --quiet "$TAG"
fi
echo "llama.cpp $TAG at $(git -C "$SRC" rev-parse --short HEAD)"

# Same shape as node-llama-cpp's CPU binaries: ggml's own thread pool (no OpenMP), release build.
# GGML_NATIVE tunes for this CPU, as node-llama-cpp picks its best CPU variant at run time.
# Without AMX, though: on the Sapphire Rapids VM here llama-server died in its first decode inside
# ggml's AMX tile kernel (SIGSEGV with -march=native; SIGILL with ggml's own sapphirerapids
# variant, built as node-llama-cpp builds its CPU variants), while node-llama-cpp's copy of that
# variant runs. So on AMX machines the comparison is AVX-512 llama-server against the agent's
# AMX-repacked weights (bench/README.md). GCC and Clang let an explicit -mno-* override what
# -march=native enables, wherever it sits on the command line.
ISA_FLAGS=""
case "$(uname -m)" in
  x86_64|amd64) ISA_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" ;;
esac
cmake -S "$SRC" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="$ISA_FLAGS" -DCMAKE_CXX_FLAGS="$ISA_FLAGS" \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DGGML_OPENMP=OFF \
  -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
  -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TOOLS=ON \
  >"$OUT/cmake-configure.log" 2>&1 || { cat "$OUT/cmake-configure.log" >&2; exit 1; }
echo "building llama-server with $JOBS jobs (log: $OUT/cmake-build.log)"
cmake --build "$BUILD" --config Release --target llama-server -j "$JOBS" >"$OUT/cmake-build.log" 2>&1 \
  || { tail -40 "$OUT/cmake-build.log" >&2; exit 1; }

BIN="$BUILD/bin/llama-server"
[ -x "$BIN" ] || { echo "build finished but $BIN is missing" >&2; exit 1; }
"$BIN" --version 2>&1 | grep -m1 "^version" || true
echo "$BIN"
echo "use it with: LLAMA_SERVER=$BIN npm run bench"
