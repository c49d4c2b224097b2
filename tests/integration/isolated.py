"""Databases and servers of a test's own, for tests that change global state (API keys exist,
Postgres stops) and so must not share the session's database or services with other tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path
from typing import Any

import psycopg
import redis
import uvicorn

from core.migrate import upgrade
from core.settings import DatabaseSettings, Settings
from tests.integration.services import PG_HOST, PG_PORT, ensure_postgres, free_port, wait_for


@contextmanager
def own_database(host: str = PG_HOST, port: int = PG_PORT) -> Iterator[str]:
    """A fresh, migrated-later Postgres database; its URL. Dropped afterwards."""
    if port == PG_PORT:
        ensure_postgres()
    name = f"rag_iso_{uuid.uuid4().hex[:10]}"
    admin = f"host={host} port={port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def embedded_pg_settings(url: str, data_dir: Path, **update: object) -> Settings:
    """Postgres, but ingestion on the API's in-process worker thread: no Celery worker needed.
    Migrated here."""
    settings = Settings(
        data_dir=data_dir, database=DatabaseSettings(url=url, auto_migrate=False)
    ).model_copy(update=update)
    upgrade(settings)
    return settings


class PrivatePostgres:
    """A Postgres server of this test's own (initdb in a temp dir, a free port), so the test
    can stop and start it without touching the machine's shared server."""

    def __init__(self) -> None:
        bins = sorted(glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql")
        self.bin = Path(bins[-1])
        # Not under pytest's tmp_path: its parents are private to root, and the server runs
        # as the postgres user (initdb refuses to run as root).
        self.root = Path(tempfile.mkdtemp(prefix="rag-test-pg-"))
        self.data = self.root / "pgdata"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])
        self.start()

    def _run(self, argv: list[str]) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "pg.log"),
                "-w",
                "start",
            ]
        )
        if not wait_for("127.0.0.1", self.port):
            raise RuntimeError(f"private Postgres did not start; see {self.root / 'pg.log'}")

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis server of this test's own on a free port, so the test can kill and restart it.

    `appendonly` keeps queued broker messages across a restart, like compose's Redis."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--dir", str(self.directory), "--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            argv += ["--appendfsync", "always"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        if not wait_for("127.0.0.1", self.port):
            raise RuntimeError("private redis-server did not start")
        # An open port is not enough: while it loads its append-only file Redis drops clients.
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


class ServerThread:
    """The app under a real uvicorn server on 127.0.0.1, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.1)
        assert wait_for("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
