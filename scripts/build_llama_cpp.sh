#!/usr/bin/env bash
# Build llama-cpp-python (pinned in pyproject.toml) for this CPU and install it into .venv
# (or the environment of $RAG_BUILD_PYTHON).
#
# Its sdist compiles llama.cpp with -march=native. Some virtual machines advertise Intel AMX
# in /proc/cpuinfo but fault on its instructions: the build then uses AMX tiles for quantised
# matrix products, and any prompt of a few hundred tokens dies with "Illegal instruction"
# (tileloadd in libggml-cpu.so). On such a CPU the build leaves AMX out (AVX-512 stays).
#
# pip's wheel cache does not key on CMAKE_ARGS, so a wheel built once with other flags would be
# reused. The wheel is built here instead, into a folder named for the version and the flags,
# and installed from there; `pip install -e .` then finds the pin satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
cpuinfo="${RAG_CPUINFO:-/proc/cpuinfo}" # another file only in tests
python="${RAG_BUILD_PYTHON:-.venv/bin/python}" # the Docker build names its own

version="$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -n1)"
flags="${CMAKE_ARGS:-}"
if grep -qw amx_tile "$cpuinfo" 2>/dev/null && [ "${RAG_LLAMA_AMX:-0}" != "1" ]; then
  noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  flags="$flags -DCMAKE_C_FLAGS='$noamx' -DCMAKE_CXX_FLAGS='$noamx'"
fi
key="$(printf '%s|%s|%s' "$version" "$flags" "$(grep -m1 '^flags' "$cpuinfo" 2>/dev/null)" \
  | sha256sum | cut -c1-16)"
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/rag-service/llama-cpp-python/$key"

if ! ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $version for this CPU (about 10 minutes, once)" >&2
  mkdir -p "$wheels.tmp"
  CMAKE_ARGS="$flags" "$python" -m pip wheel --quiet --no-deps --no-cache-dir \
    --no-binary llama-cpp-python -w "$wheels.tmp" "llama-cpp-python==$version"
  rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
fi
"$python" -m pip install --quiet --force-reinstall --no-deps "$wheels"/llama_cpp_python-"$version"-*.whl
