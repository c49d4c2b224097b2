#!/usr/bin/env bash
# Create .venv in the checkout and install the service (and, with "test", the test tools and the train extra its training tests need).
# torch is pinned in pyproject.toml so pip takes the CPU build instead of a CUDA download.
#
# One stamp per extra set: .venv/.installed-base (the service) and .venv/.installed-test (the
# service and the test tools; it implies base). A set is installed again only when its stamp
# is missing or pyproject.toml changed after it, so `run.sh` after `test.sh` installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

set_name="base"
spec="."
[ "${1:-}" = "test" ] && set_name="test" && spec=".[test,train]"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi

# Whether the stamp of a set is there and newer than pyproject.toml.
fresh() { [ -f ".venv/.installed-$1" ] && [ ! pyproject.toml -nt ".venv/.installed-$1" ]; }

# The test set includes everything the base set installs.
if fresh "$set_name" || { [ "$set_name" = "base" ] && fresh test; }; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
./scripts/build_llama_cpp.sh
.venv/bin/python -m pip install --quiet -e "${spec}"
# Models are not Python dependencies: `rag models install` (run.sh, test.sh) fetches them.
touch ".venv/.installed-$set_name"
[ "$set_name" = "test" ] && touch .venv/.installed-base
exit 0
