"""Start and reach the real local services the integration tests use (Postgres, Redis)."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import time

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

# The machine's documented start commands, used only when a service is not answering.
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect {version} main start"
START_REDIS = (
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no "
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


# Redis databases of one test run: the broker's (flushed at start) and the query cache's.
# Override to run two test sessions side by side (e.g. RAG_TEST_REDIS_DBS=11,10).
BROKER_DB, CACHE_DB = (int(n) for n in os.environ.get("RAG_TEST_REDIS_DBS", "15,13").split(","))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answering(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answering(host, port):
            return True
        time.sleep(0.2)
    return False


def ensure_postgres() -> None:
    if answering(PG_HOST, PG_PORT):
        return
    versions = [os.path.basename(p) for p in glob.glob("/etc/postgresql/*")]
    if versions:
        subprocess.run(START_POSTGRES.format(version=versions[0]), shell=True, check=False)  # noqa: S602
    if not wait_for(PG_HOST, PG_PORT):
        raise RuntimeError("PostgreSQL is not answering on 127.0.0.1:5432 and could not be started")


def ensure_redis() -> None:
    if answering(REDIS_HOST, REDIS_PORT):
        return
    subprocess.run(START_REDIS, shell=True, check=False)  # noqa: S602
    if not wait_for(REDIS_HOST, REDIS_PORT):
        raise RuntimeError("Redis is not answering on 127.0.0.1:6379 and could not be started")
