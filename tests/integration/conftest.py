"""Real services for integration tests: a Postgres database, Redis, a Celery worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.main import create_app
from app.services import Services
from core.migrate import upgrade
from core.settings import BrokerSettings, DatabaseSettings, EmbedderSettings, Settings
from generation.llm.generator import Generator
from retrieval.embedders import EmbedderPool
from tests.integration.fakes import SchemaFollowingGenerator
from tests.integration.isolated import ServerThread
from tests.integration.services import (
    BROKER_DB,
    PG_HOST,
    PG_PORT,
    ensure_postgres,
    ensure_redis,
    free_port,
)
from workers.celery_app import make_celery

REDIS_URL = f"redis://127.0.0.1:6379/{BROKER_DB}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this run, dropped at the end."""
    ensure_postgres()
    name = f"rag_test_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    ensure_redis()
    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


@pytest.fixture(scope="session")
def pg_settings(pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Deployment-shaped settings: Postgres, Redis broker, migrations applied once."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        database=DatabaseSettings(url=pg_url, auto_migrate=False),
        broker=BrokerSettings(url=redis_url, result_backend=redis_url),
        # Small migration batches, so a test can stop a worker in the middle of a migration.
        embedder=EmbedderSettings(migration_batch=8),
    )
    upgrade(settings)
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The RAG_ environment that gives a subprocess the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(settings.data_dir),
        RAG_DATABASE__URL=settings.database.url,
        RAG_BROKER__URL=settings.broker.url,
        RAG_BROKER__RESULT_BACKEND=settings.broker.result_backend,
        RAG_EMBEDDER__MIGRATION_BATCH=str(settings.embedder.migration_batch),
        RAG_BROKER__VISIBILITY_TIMEOUT_S=str(settings.broker.visibility_timeout_s),
        RAG_GENERATION__LLAMACPP__MODEL=settings.generation.llamacpp.model,
        RAG_GENERATION__LLAMACPP__MODELS_DIR=str(settings.generation.llamacpp.models_dir),
        TOKENIZERS_PARALLELISM="false",
    )
    return env


class WorkerProcess:
    """A real `celery worker` subprocess; can be stopped and started again."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.app = make_celery(settings)
        # Deployment-shaped observability: JSON log lines, and the pool's metrics merged through
        # prometheus_client's multiprocess folder and served on a port of the main process.
        self.metrics_port = free_port()
        self.metrics_dir = log_path.parent / "prometheus"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.metrics_dir.mkdir(exist_ok=True)
        env = settings_env(self.settings)
        env.update(
            RAG_LOG__FORMAT="json",
            RAG_METRICS__WORKER_PORT=str(self.metrics_port),
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app:celery_app",
                "worker",
                "-Q",
                "rag",
                "--pool=prefork",
                "--concurrency=1",
                "--loglevel=INFO",
                f"--hostname=test-{uuid.uuid4().hex[:6]}@%h",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited; see {self.log_path}")
            try:
                if self.app.control.ping(timeout=0.5):
                    return
            except (redis.RedisError, OSError):
                # A broker that just restarted can drop the first control connections.
                time.sleep(0.5)
        raise RuntimeError(f"celery worker did not answer a ping; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: a crash, not a shutdown."""
        assert self.process is not None
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in [self.process.pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def worker(
    pg_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(pg_settings, tmp_path_factory.mktemp("worker") / "worker.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def make_client(embedders: EmbedderPool, llm: Generator) -> Iterator[Callable[..., TestClient]]:
    """Start API instances (lifespan included) with given settings; all are closed at the end.

    They share the loaded embedder and, unless `generator` is given, the embedded LLM.
    """
    clients: list[TestClient] = []

    def make(settings: Settings, generator: Generator | None = None) -> TestClient:
        client = TestClient(create_app(settings, embedders, generator or llm))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def api(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
) -> TestClient:
    """The API against Postgres and Redis, with its own index directory, and a live worker."""
    return make_client(pg_settings.model_copy(update={"data_dir": tmp_path}))


def new_collection(client: TestClient, prefix: str = "c", embedder: str | None = None) -> str:
    """A fresh collection, embedded with `embedder` or the deployment's default."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    body = {"name": name} | ({"embedder": embedder} if embedder else {})
    response = client.post("/admin/v1/collections", json=body)
    assert response.status_code == 201, response.text
    return name


def upload(client: TestClient, collection: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    response = client.post(
        f"/admin/v1/collections/{collection}/documents",
        files=[("files", (name, data)) for name, data in files],
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_job(client: TestClient, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/admin/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")


def search(client: TestClient, collection: str, query: str, top_k: int = 5) -> dict[str, Any]:
    response = client.post(
        "/v1/search", json={"collection": collection, "query": query, "top_k": top_k}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def services_of(client: TestClient) -> Services:
    """The services behind a test client's app."""
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


@pytest.fixture
def server(embedders: EmbedderPool, tmp_path: Path) -> Iterator[str]:
    """A real service on a free port in this process, over SQLite, with the schema-following
    FAKE generator (tests/integration/fakes.py): for client tests of the CLI and HTTP edges.
    A test module that needs another server defines its own `server`."""
    thread = ServerThread(
        create_app(Settings(data_dir=tmp_path / "data"), embedders, SchemaFollowingGenerator())
    )
    try:
        yield thread.url
    finally:
        thread.close()


def run(*args: str) -> tuple[int, str, str]:
    """The `rag` command line in process: exit code, stdout, stderr."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr
