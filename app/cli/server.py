"""Operator commands that run the service's processes or touch its database directly:
serve, worker, migrate, requeue."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    graceful_timeout: Annotated[
        int, typer.Option(help="Seconds in-flight requests may finish after SIGTERM.")
    ] = 30,
) -> None:
    """Start the API with the current settings (the embedded default when none are set)."""
    import uvicorn

    from core.log_config import logging_config
    from core.prometheus_dir import clear_multiprocess_dir
    from core.settings import get_settings

    settings = get_settings()
    _refuse_open_bind(host, settings)
    _refuse_unservable_model(settings)
    clear_multiprocess_dir()  # before the app (and its metrics) is imported
    if settings.embedded_worker and workers > 1:
        typer.echo("the embedded default runs one API process; ignoring --workers", err=True)
        workers = 1
    mode = "embedded: SQLite + in-process ingestion" if settings.embedded_worker else "deployment"
    typer.echo(
        f"rag serving on http://{host}:{port} ({mode}; data in {settings.data_dir.resolve()})",
        err=True,
    )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # On SIGTERM uvicorn stops accepting and waits this long for in-flight requests.
        timeout_graceful_shutdown=graceful_timeout,
        log_config=logging_config(settings.log),
    )


def _refuse_unservable_model(settings: Any) -> None:
    """Exit before binding when the embedded model setting cannot be served, saying why."""
    if settings.generation.backend != "llamacpp":
        return
    from generation.llm.llamacpp import preflight
    from generation.model_files.resolve import ModelConfigError

    try:
        resolved = preflight(settings.generation.llamacpp)
    except ModelConfigError as exc:
        typer.echo(f"cannot serve the embedded model: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"embedded model: {resolved.name} ({resolved.path})", err=True)


def _refuse_open_bind(host: str, settings: Any) -> None:
    """Exit before binding when `host` is reachable from outside and no API key exists."""
    from app.auth import bind_refusal, is_loopback
    from core import api_keys
    from core.db import Database
    from core.migrate import upgrade

    if settings.database.auto_migrate:
        upgrade(settings)
    db = Database(settings)
    try:
        with db.session() as session:
            keys_exist = api_keys.key_count(session) > 0
    finally:
        db.dispose()
    refusal = bind_refusal(host, keys_exist, settings)
    if refusal:
        typer.echo(refusal, err=True)
        raise typer.Exit(2)
    if not keys_exist:
        why = "it is loopback" if is_loopback(host) else "RAG_AUTH__ALLOW_UNAUTHENTICATED is set"
        typer.echo(
            f"no API keys: serving on {host} without authentication ({why}); "
            "create one with `rag keys create --role admin`",
            err=True,
        )


def worker(
    concurrency: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    loglevel: str = "INFO",
) -> None:
    """Start a Celery worker with the current settings (needs RAG_BROKER__URL)."""
    from core.prometheus_dir import clear_multiprocess_dir
    from core.settings import get_settings

    clear_multiprocess_dir()  # before the tasks (and their metrics) are imported
    from workers.celery_app import celery_app

    settings = get_settings()
    if settings.embedded_worker:
        typer.echo(
            "RAG_BROKER__URL is not set: the embedded default ingests inside `rag serve`.", err=True
        )
        raise typer.Exit(2)
    # --quiet drops Celery's multi-line start-up banner, which is not a JSON log line.
    quiet = ["--quiet"] if settings.log.format == "json" else []
    argv = [*quiet, "worker", f"--loglevel={loglevel}", "-Q", "rag"]
    argv.append(f"--concurrency={concurrency or settings.broker.worker_concurrency}")
    celery_app.worker_main(argv)


def migrate() -> None:
    """Apply database migrations (alembic upgrade head)."""
    from core.migrate import upgrade
    from core.settings import get_settings

    upgrade(get_settings())
    typer.echo("database is at the latest revision")


def requeue() -> None:
    """Re-enqueue every document the database lists as queued or processing.

    The reconciliation step after a broker lost its data (a Redis without persistence was
    restarted): the database still records the work, the broker no longer does. Safe to repeat:
    ingestion tasks skip finished documents and a unique constraint stops duplicate chunks.
    """
    from core.db import Database
    from core.settings import get_settings
    from workers.queue import CeleryQueue, requeue_unfinished

    settings = get_settings()
    if settings.embedded_worker:
        typer.echo("the embedded default re-enqueues unfinished documents when it starts", err=True)
        raise typer.Exit(2)
    db = Database(settings)
    queue = CeleryQueue(settings)
    try:
        count = requeue_unfinished(db, queue)
    finally:
        queue.close()
        db.dispose()
    typer.echo(f"re-enqueued {count} unfinished documents")
