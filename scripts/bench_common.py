"""Helpers shared by the benchmark scripts: throwaway databases, service subprocesses, results.

Not part of the service. Every resource made here is cleaned up by the context managers, also
when a benchmark fails half-way.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
RESULTS_DIR = REPO_ROOT / "bench-results"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_HOST = "postgres@127.0.0.1:5432"
BROKER_URL = "redis://127.0.0.1:6379/14"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Postgres -------------------------------------------------------------------------------------


@contextmanager
def temp_database(prefix: str) -> Iterator[str]:
    """Create `<prefix>_<random>` and yield its SQLAlchemy URL; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    log(f"created database {name}")
    try:
        yield f"postgresql+psycopg://{PG_HOST}/{name}"
    finally:
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            log(f"dropped database {name}")
        except psycopg.Error as exc:
            log(f"could not drop database {name}: {exc}")


def psycopg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def migrate(database_url: str) -> None:
    from core.migrate import upgrade
    from core.settings import DatabaseSettings, Settings

    upgrade(Settings(database=DatabaseSettings(url=database_url)))


# Subprocesses ---------------------------------------------------------------------------------


def service_env(**settings: str) -> dict[str, str]:
    """This process's environment without any RAG_ setting, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """A subprocess whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path = REPO_ROOT,
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log(f"started {name} (pid {self.proc.pid}), log {self.log_path}")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {timeout:.0f} s; killing it")
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        log(f"stopped {self.name} (exit {self.proc.returncode})")


@contextmanager
def services() -> Iterator[list[Service]]:
    """A list to append started services to; all are stopped at the end, newest first."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {service.name} failed: {exc}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_api(
    env: dict[str, str], log_dir: Path, name: str = "api", root: Path = REPO_ROOT
) -> tuple[Service, str]:
    """The API under uvicorn, importing the service from `root` (another checkout's copy of
    the tree runs that copy's code, with this virtual environment)."""
    port = free_port()
    argv = [
        str(VENV_BIN / "uvicorn"),
        "app.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return Service(name, argv, env, log_dir, cwd=root), f"http://127.0.0.1:{port}"


def start_worker(env: dict[str, str], log_dir: Path, root: Path = REPO_ROOT) -> Service:
    argv = [
        str(VENV_BIN / "celery"),
        "-A",
        "workers.celery_app:celery_app",
        "worker",
        "-Q",
        "rag",
        "--pool=solo",
        "--concurrency=1",
        "--loglevel=WARNING",
    ]
    return Service("worker", argv, env, log_dir, cwd=root)


@contextmanager
def deployment_stack(
    prefix: str, root: Path = REPO_ROOT, **settings: str
) -> Iterator[tuple[str, list[Service]]]:
    """The deployment shape: a fresh database, this benchmarks' broker DB (flushed before and
    after), one solo Celery worker and the API, with extra RAG_ `settings`. Yields (base URL,
    processes); on a failure the processes' log tails are printed."""
    import redis

    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()  # drop tasks an earlier, interrupted run left behind
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp,
            temp_database(prefix.replace("-", "_")) as url,
        ):
            migrate(url)
            env = service_env(
                RAG_DATABASE__URL=url,
                RAG_BROKER__URL=BROKER_URL,
                RAG_DATA_DIR=f"{tmp}/data",
                **settings,
            )
            with services() as procs:
                procs.append(start_worker(env, Path(tmp), root))
                api, base_url = start_api(env, Path(tmp), root=root)
                procs.append(api)
                try:
                    yield base_url, procs
                except Exception:
                    for proc in procs:
                        log(f"--- {proc.name} log tail ---\n{proc.tail()}")
                    raise
    finally:
        broker.flushdb()
        broker.close()


def wait_ready(
    client: httpx.Client,
    watched: Sequence[Service],
    timeout: float = 300.0,
    ignore: frozenset[str] = frozenset({"generator"}),
) -> dict[str, Any]:
    """Poll /readyz until every check outside `ignore` passes; fail early if a process dies.

    The generator (LLM) is ignored by default: neither benchmark uses it, and /readyz answers
    503 while it is down.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for service in watched:
            service.check_alive()
        try:
            response = client.get("/readyz", timeout=10)
            body: dict[str, Any] = response.json()
            checks: dict[str, str] = body.get("checks", {})
            failing = {
                k for k, v in checks.items() if not v.startswith(("ok", "embedded"))
            } - ignore
            if response.status_code == 200 or (response.status_code == 503 and not failing):
                return body
            last = f"{response.status_code} {response.text[:300]}"
        except (httpx.TransportError, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise TimeoutError(f"/readyz not ready after {timeout:.0f} s (last: {last})")


def checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response.json() if response.content else None


# Results --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load,
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
