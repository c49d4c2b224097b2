"""Client commands against a running service: ingest, search, ask, migrate-embedder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli import http

UPLOAD_BATCH = 50


def ingest(
    directory: Path,
    collection: Annotated[str, typer.Option(help="Collection to add to (created if missing).")],
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
    pattern: Annotated[str, typer.Option(help="Glob of files to upload.")] = "**/*",
) -> None:
    """Upload every supported file under DIRECTORY and wait for the jobs, with a progress bar."""
    with http.client(url, key) as client:
        ingest_directory(client, directory, collection, pattern)


def ingest_directory(client: Any, directory: Path, collection: str, pattern: str) -> None:
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
        http.check(client.post("/admin/v1/collections", json={"name": collection}))
    job_ids: list[str] = []
    errors: list[dict[str, Any]] = []
    with Progress() as progress:
        uploading = progress.add_task("uploading", total=len(paths))
        for start in range(0, len(paths), UPLOAD_BATCH):
            batch = paths[start : start + UPLOAD_BATCH]
            files = [("files", (p.name, p.read_bytes())) for p in batch]
            accepted = http.check(
                client.post(f"/admin/v1/collections/{collection}/documents", files=files)
            )
            job_ids.append(accepted["job_id"])
            progress.advance(uploading, len(batch))
        embedding = progress.add_task("embedding", total=None)
        while True:
            jobs = [http.check(client.get(f"/admin/v1/jobs/{j}")) for j in job_ids]
            done = sum(j["progress"]["done"] for j in jobs)
            total = sum(j["progress"]["total"] for j in jobs)
            progress.update(embedding, completed=done, total=total)
            if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
                errors = [e for j in jobs for e in j["errors"]]
                break
            time.sleep(0.5)
    info = http.check(client.get(f"/v1/collections/{collection}"))
    typer.echo(f"{collection}: {info['documents']} documents, {info['chunks']} chunks")
    for error in errors:
        typer.echo(f"  failed: {error.get('filename', '?')}: {error['message']}", err=True)


def search(
    query: str,
    collection: Annotated[str, typer.Option()],
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    retrieval: Annotated[
        str | None, typer.Option(help="dense, lexical or hybrid (default: the collection's)")
    ] = None,
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search a collection and print the hits."""
    body: dict[str, Any] = {"collection": collection, "query": query, "top_k": top_k}
    if retrieval:
        body["retrieval"] = retrieval
    with http.client(url, key) as client:
        result = http.check(client.post("/v1/search", json=body))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for rank, hit in enumerate(result["hits"], 1):
        snippet = " ".join(hit["text"].split())[:160]
        typer.echo(
            f"{rank}. {hit['score']:.4f}  {hit['filename']} "
            f"[{hit['start']}:{hit['end']}]\n   {snippet}"
        )


def ask(
    question: str,
    collection: Annotated[str, typer.Option()],
    adapter: Annotated[str | None, typer.Option()] = None,
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask a question; prints the answer, the analysis and the verified citations."""
    body: dict[str, Any] = {"collection": collection, "question": question}
    if adapter:
        body["adapter"] = adapter
    with http.client(url, key) as client:
        result = http.check(client.post("/v1/query", json=body))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['answer']}\n\n{result['analysis']}\n")
    for c in result["citations"]:
        quote = " ".join(c["quote"].split())
        typer.echo(f'[{c["id"]}] {c["filename"]} [{c["start"]}:{c["end"]}] "{quote}"')


def migrate_embedder(
    collection: Annotated[str, typer.Option(help="Collection to re-embed.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Embedder id (GET /v1/embedders lists them).")
    ] = None,
    rollback: Annotated[bool, typer.Option(help="Switch back to the previous embedder.")] = False,
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
) -> None:
    """Re-embed a collection with another embedder and switch to it, with a progress bar.

    The collection keeps answering from its current index until the new one is verified.
    Ctrl-C stops watching, not the migration (cancel with POST /admin/v1/jobs/{id}/cancel).
    """
    if rollback == (to is not None):
        typer.echo("give either --to EMBEDDER or --rollback", err=True)
        raise typer.Exit(2)
    path = f"/admin/v1/collections/{collection}/embedder-migrations"
    with http.client(url, key) as client:
        if rollback:
            accepted = http.check(client.post(f"{path}/rollback"))
        else:
            accepted = http.check(client.post(path, json={"embedder": to}))
        job = http.watch_job(client, accepted["job_id"], "re-embedding")
        info = http.check(client.get(f"/v1/collections/{collection}"))
    for error in job["errors"]:
        typer.echo(f"  {error['message']}", err=True)
    typer.echo(
        f"{collection}: job {job['job_id']} {job['status']}; serving {info['embedder']} "
        f"(previous: {info.get('previous_embedder')}), index version {info['index_version']}"
    )
    if job["status"] != "succeeded":
        raise typer.Exit(1)
