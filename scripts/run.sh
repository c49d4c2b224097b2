#!/usr/bin/env bash
# The run command: set up .venv on first use, then start the service. With no RAG_ settings
# this is the embedded default: SQLite and the index under ./data, in-process ingestion,
# the bundled embedder. Arguments go to `rag serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/rag serve "$@"
