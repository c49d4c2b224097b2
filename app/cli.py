"""The `rag` command line (operations contract in ../shared/API.md)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from app.cli_keys import keys

cli = typer.Typer(
    help="Retrieval-augmented generation service with self-reasoning.", no_args_is_help=True
)
cli.add_typer(keys, name="keys")

UrlOption = Annotated[str, typer.Option(envvar="RAG_URL", help="Base URL of a running service.")]
KeyOption = Annotated[
    str, typer.Option(envvar="RAG_API_KEY", help="API key, if the service has keys.")
]
UPLOAD_BATCH = 50


@cli.command()
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


@cli.command()
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


@cli.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head)."""
    from core.migrate import upgrade
    from core.settings import get_settings

    upgrade(get_settings())
    typer.echo("database is at the latest revision")


@cli.command()
def requeue() -> None:
    """Re-enqueue every document the database lists as queued or processing.

    The reconciliation step after a broker lost its data (a Redis without persistence was
    restarted): the database still records the work, the broker no longer does. Safe to repeat:
    ingestion tasks skip finished documents and a unique constraint stops duplicate chunks.
    """
    from core.db import Database
    from core.settings import get_settings
    from workers.queue import make_queue, requeue_unfinished

    settings = get_settings()
    if settings.embedded_worker:
        typer.echo("the embedded default re-enqueues unfinished documents when it starts", err=True)
        raise typer.Exit(2)
    db = Database(settings)
    queue = make_queue(settings)
    try:
        count = requeue_unfinished(db, queue)
    finally:
        queue.close()
        db.dispose()
    typer.echo(f"re-enqueued {count} unfinished documents")


def _client(url: str, key: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(120.0, connect=5.0))


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text
        typer.echo(f"error {response.status_code} — {message}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


@cli.command()
def ingest(
    directory: Path,
    collection: Annotated[str, typer.Option(help="Collection to add to (created if missing).")],
    url: UrlOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    pattern: Annotated[str, typer.Option(help="Glob of files to upload.")] = "**/*",
) -> None:
    """Upload every supported file under DIRECTORY and wait for the jobs, with a progress bar."""
    with _client(url, key) as client:
        _ingest(client, directory, collection, pattern)


def _ingest(client: Any, directory: Path, collection: str, pattern: str) -> None:
    from rich.progress import Progress

    from retrieval.parsing import SUPPORTED_MEDIA_TYPES

    paths = sorted(
        p
        for p in directory.glob(pattern)
        if p.is_file() and p.suffix.lower().lstrip(".") in SUPPORTED_MEDIA_TYPES
    )
    if not paths:
        typer.echo(f"no supported files under {directory}", err=True)
        raise typer.Exit(1)
    if client.get(f"/v1/collections/{collection}").status_code == 404:
        _check(client.post("/admin/v1/collections", json={"name": collection}))
    job_ids: list[str] = []
    errors: list[dict[str, Any]] = []
    with Progress() as progress:
        uploading = progress.add_task("uploading", total=len(paths))
        for start in range(0, len(paths), UPLOAD_BATCH):
            batch = paths[start : start + UPLOAD_BATCH]
            files = [("files", (p.name, p.read_bytes())) for p in batch]
            accepted = _check(
                client.post(f"/admin/v1/collections/{collection}/documents", files=files)
            )
            job_ids.append(accepted["job_id"])
            progress.advance(uploading, len(batch))
        embedding = progress.add_task("embedding", total=None)
        while True:
            jobs = [_check(client.get(f"/admin/v1/jobs/{j}")) for j in job_ids]
            done = sum(j["progress"]["done"] for j in jobs)
            total = sum(j["progress"]["total"] for j in jobs)
            progress.update(embedding, completed=done, total=total)
            if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
                errors = [e for j in jobs for e in j["errors"]]
                break
            time.sleep(0.5)
    info = _check(client.get(f"/v1/collections/{collection}"))
    typer.echo(f"{collection}: {info['documents']} documents, {info['chunks']} chunks")
    for error in errors:
        typer.echo(f"  failed: {error.get('filename', '?')}: {error['message']}", err=True)


@cli.command()
def search(
    query: str,
    collection: Annotated[str, typer.Option()],
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    url: UrlOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search a collection and print the hits."""
    with _client(url, key) as client:
        result = _check(
            client.post(
                "/v1/search", json={"collection": collection, "query": query, "top_k": top_k}
            )
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for rank, hit in enumerate(result["hits"], 1):
        snippet = " ".join(hit["text"].split())[:160]
        typer.echo(
            f"{rank}. {hit['score']:.3f}  {hit['filename']} "
            f"[{hit['start']}:{hit['end']}]\n   {snippet}"
        )


@cli.command()
def ask(
    question: str,
    collection: Annotated[str, typer.Option()],
    adapter: Annotated[str | None, typer.Option()] = None,
    url: UrlOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask a question; prints the answer, the analysis and the verified citations."""
    body: dict[str, Any] = {"collection": collection, "question": question}
    if adapter:
        body["adapter"] = adapter
    with _client(url, key) as client:
        result = _check(client.post("/v1/query", json=body))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['answer']}\n\n{result['analysis']}\n")
    for c in result["citations"]:
        quote = " ".join(c["quote"].split())
        typer.echo(f'[{c["id"]}] {c["filename"]} [{c["start"]}:{c["end"]}] "{quote}"')


@cli.command(name="migrate-embedder")
def migrate_embedder(
    collection: Annotated[str, typer.Option(help="Collection to re-embed.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Embedder id (GET /v1/embedders lists them).")
    ] = None,
    rollback: Annotated[bool, typer.Option(help="Switch back to the previous embedder.")] = False,
    url: UrlOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
) -> None:
    """Re-embed a collection with another embedder and switch to it, with a progress bar.

    The collection keeps answering from its current index until the new one is verified.
    Ctrl-C stops watching, not the migration (cancel with POST /admin/v1/jobs/{id}/cancel).
    """
    if rollback == (to is not None):
        typer.echo("give either --to EMBEDDER or --rollback", err=True)
        raise typer.Exit(2)
    path = f"/admin/v1/collections/{collection}/embedder-migrations"
    with _client(url, key) as client:
        if rollback:
            accepted = _check(client.post(f"{path}/rollback"))
        else:
            accepted = _check(client.post(path, json={"embedder": to}))
        job = _watch_job(client, accepted["job_id"], "re-embedding")
        info = _check(client.get(f"/v1/collections/{collection}"))
    for error in job["errors"]:
        typer.echo(f"  {error['message']}", err=True)
    typer.echo(
        f"{collection}: job {job['job_id']} {job['status']}; serving {info['embedder']} "
        f"(previous: {info.get('previous_embedder')}), index version {info['index_version']}"
    )
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def _watch_job(client: Any, job_id: str, label: str) -> dict[str, Any]:
    from rich.progress import Progress

    with Progress() as progress:
        task = progress.add_task(label, total=None)
        while True:
            job: dict[str, Any] = _check(client.get(f"/admin/v1/jobs/{job_id}"))
            progress.update(task, completed=job["progress"]["done"], total=job["progress"]["total"])
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)


@cli.command(name="eval")
def evaluate(
    corpus: Annotated[Path, typer.Option(help="Folder of documents to ingest.")],
    questions: Annotated[Path, typer.Option(help="JSON lines: question, answers, doc.")],
    collection: str = "eval",
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    modes: Annotated[
        str, typer.Option(help="Comma-separated modes.")
    ] = "closed_book,one_call,steps",
    url: Annotated[
        str | None, typer.Option(help="A running service; default: an in-process embedded one.")
    ] = None,
    key: KeyOption = "",
    output: Annotated[Path | None, typer.Option(help="Also write the results as JSON.")] = None,
) -> None:
    """Ingest CORPUS, then report recall@k and answer/citation quality for each mode."""
    from rich.progress import Progress

    from generation.evaluation import Evaluator, load_questions, markdown_table

    items = load_questions(questions)[:limit]
    with _connect(url, key) as client:
        _ingest(client, corpus, collection, "**/*")
        evaluator = Evaluator(client, collection, top_k)
        recall = evaluator.recall(items)
        rows = []
        with Progress() as progress:
            for mode in modes.split(","):
                task = progress.add_task(mode, total=len(items))
                score = evaluator.score_mode(mode, items, partial(progress.advance, task))
                rows.append(score.row())
    table = markdown_table(recall, top_k, rows)
    typer.echo(table)
    if output:
        output.write_text(json.dumps({"recall": recall, "top_k": top_k, "modes": rows}, indent=2))


@contextmanager
def _connect(url: str | None, key: str) -> Iterator[Any]:
    """An HTTP client for a running service, or an in-process embedded service."""
    if url:
        with _client(url, key) as client:
            yield client
        return
    from fastapi.testclient import TestClient

    from app.main import create_app

    typer.echo("starting an in-process embedded service", err=True)
    # Its database may hold API keys too; then the key is needed in process as well.
    headers = {"Authorization": f"Bearer {key}"} if key else None
    with TestClient(create_app(), headers=headers) as client:
        yield client


def main() -> None:
    # Keep tokenizers from forking warnings; the model is local either way.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(args=sys.argv[1:])


if __name__ == "__main__":
    main()
