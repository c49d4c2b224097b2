"""What the client commands share: an HTTP client for a running service (or an in-process
embedded one), error printing, job watching and the common options."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import typer

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="RAG_URL", help="Base URL of a running service (or set RAG_URL)."),
]
KeyOption = Annotated[
    str, typer.Option(envvar="RAG_API_KEY", help="API key, if the service has keys.")
]


@contextmanager
def client(
    url: str, key: str, timeout: float = 120.0, wait_hint: str = ""
) -> Iterator[httpx.Client]:
    """An HTTP client for the service at `url` that waits up to `timeout` seconds for an
    answer (0: as long as it takes). A service that cannot be reached, or does not answer in
    time, ends the command with one line saying so (and `wait_hint`, how to wait longer), not
    a traceback."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(
        base_url=url, headers=headers, timeout=httpx.Timeout(timeout or None, connect=5.0)
    ) as http_client:
        try:
            yield http_client
        except httpx.TransportError as exc:
            typer.echo(unreachable(url, exc, timeout, wait_hint), err=True)
            raise typer.Exit(1) from None


def unreachable(
    url: str, exc: httpx.TransportError, timeout: float = 120.0, wait_hint: str = ""
) -> str:
    """One line for a transport failure: what, where, and the likely fix."""
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc).split("] ", 1)[-1].lower() or "connection failed"
        if "refused" in reason:
            reason = "connection refused"
        return f"cannot reach {url}: {reason}; is `rag serve` running (or --url / RAG_URL wrong)?"
    if isinstance(exc, httpx.ReadTimeout):
        # Connected and sent: the service is up, only slower than this command waits.
        hint = f"; {wait_hint}" if wait_hint else ""
        return f"gave up after {timeout:g} s: {url} is up but was still working on it{hint}"
    if isinstance(exc, httpx.TimeoutException):
        return f"cannot reach {url}: no answer in time ({type(exc).__name__})"
    return f"cannot reach {url}: {type(exc).__name__}: {exc}"


def check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text
        typer.echo(f"error {response.status_code} — {message}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


@contextmanager
def connect(url: str | None, key: str, model: str | None = None) -> Iterator[Any]:
    """An HTTP client for a running service at `url`, or else an in-process embedded service
    on a temporary data folder (SQLite, in-process ingestion, no Redis), so a quality run never
    touches the data of `rag serve`. `model` overrides the embedded model for that service."""
    if url:
        with client(url, key) as http_client:
            yield http_client
        return
    import tempfile
    from pathlib import Path

    from fastapi.testclient import TestClient

    from app.main import create_app
    from core.settings import get_settings

    base = get_settings()
    generation = base.generation
    if model:
        llamacpp = generation.llamacpp.model_copy(update={"model": model})
        generation = generation.model_copy(update={"llamacpp": llamacpp})
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        settings = base.model_copy(
            update={
                "data_dir": Path(tmp),
                "database": base.database.model_copy(update={"url": "", "auto_migrate": True}),
                "broker": base.broker.model_copy(update={"url": ""}),
                "redis": base.redis.model_copy(update={"url": ""}),
                "generation": generation,
            }
        )
        typer.echo(f"starting an in-process embedded service (data in {tmp})", err=True)
        with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
            yield test_client


def watch_job(client: Any, job_id: str, label: str) -> dict[str, Any]:
    """Poll a job with a progress bar until it ends; returns its last state."""
    from rich.progress import Progress

    with Progress() as progress:
        task = progress.add_task(label, total=None)
        while True:
            job: dict[str, Any] = check(client.get(f"/admin/v1/jobs/{job_id}"))
            progress.update(task, completed=job["progress"]["done"], total=job["progress"]["total"])
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)
