"""Client commands against a running service: ingest, search, ask, migrate-embedder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli import http

UPLOAD_BATCH = 50


CollectionOption = Annotated[str, typer.Option(help="Collection name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")]
TERMINAL = ("succeeded", "failed", "cancelled")


def ingest(
    directory: Annotated[Path, typer.Argument(help="Folder whose files are uploaded.")],
    collection: Annotated[str, typer.Option(help="Collection to add to (created if missing).")],
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
    pattern: Annotated[
        str, typer.Option(help="Glob of files to upload, under DIRECTORY.")
    ] = "**/*",
) -> None:
    """Upload every supported file under DIRECTORY and wait for the jobs, file by file.

    Files of unsupported types are listed as skipped; files the service refuses or fails
    are listed with the reason.
    """
    with http.client(url, key) as client:
        ingest_directory(client, directory, collection, pattern)


def ingest_directory(client: Any, directory: Path, collection: str, pattern: str) -> None:
    from rich.progress import Progress

    from retrieval.parsing import SUPPORTED_MEDIA_TYPES

    candidates = sorted(p for p in directory.glob(pattern) if p.is_file())
    paths = [p for p in candidates if p.suffix.lower().lstrip(".") in SUPPORTED_MEDIA_TYPES]
    for skipped in (p for p in candidates if p not in paths):
        shown = skipped.suffix or "no extension"
        typer.echo(f"  skipped: {skipped.relative_to(directory)}: unsupported type ({shown})")
    if not paths:
        typer.echo(f"no supported files under {directory}", err=True)
        raise typer.Exit(1)
    if client.get(f"/v1/collections/{collection}").status_code == 404:
        http.check(client.post("/admin/v1/collections", json={"name": collection}))
    job_ids: list[str] = []
    refused: list[dict[str, Any]] = []
    with Progress() as progress:
        uploading = progress.add_task("uploading", total=len(paths))
        for start in range(0, len(paths), UPLOAD_BATCH):
            batch = paths[start : start + UPLOAD_BATCH]
            progress.update(uploading, description=f"uploading {batch[0].name}")
            files = [("files", (p.name, p.read_bytes())) for p in batch]
            response = client.post(f"/admin/v1/collections/{collection}/documents", files=files)
            if response.status_code < 500 and response.status_code >= 400:
                # Nothing in this batch could be accepted: list why, go on with the next.
                message = response.json().get("error", {}).get("message", response.text)
                refused.append({"filename": f"batch of {len(batch)}", "message": message})
            else:
                accepted = http.check(response)
                job_ids.append(accepted["job_id"])
                refused += accepted.get("errors", [])
            progress.advance(uploading, len(batch))
        progress.update(uploading, description="uploaded")
        embedding = progress.add_task("embedding", total=None)
        files_seen: list[dict[str, Any]] = []
        while job_ids:
            jobs = [http.check(client.get(f"/admin/v1/jobs/{j}")) for j in job_ids]
            files_seen = [f for j in jobs for f in j.get("files") or []]
            counts = _count(files_seen)
            working = next((f["filename"] for f in files_seen if f["status"] == "processing"), "")
            progress.update(
                embedding,
                completed=sum(j["progress"]["done"] for j in jobs),
                total=sum(j["progress"]["total"] for j in jobs),
                description=f"embedding {counts} {working}".rstrip(),
            )
            if all(j["status"] in TERMINAL for j in jobs):
                break
            time.sleep(0.5)
    info = http.check(client.get(f"/v1/collections/{collection}"))
    typer.echo(f"{collection}: {info['documents']} documents, {info['chunks']} chunks")
    typer.echo(f"this run: {_count(files_seen)}")
    for f in files_seen:
        if f["status"] == "failed":
            typer.echo(f"  failed: {f['filename']}: {f.get('error') or 'failed'}", err=True)
    for r in refused:
        typer.echo(f"  refused: {r.get('filename', '?')}: {r['message']}", err=True)


def _count(files: list[dict[str, Any]]) -> str:
    """ "3 done, 1 failed, 2 duplicate" for a list of job files."""
    ready = sum(1 for f in files if f["status"] == "ready")
    failed = sum(1 for f in files if f["status"] in ("failed", "refused"))
    duplicate = sum(1 for f in files if f["status"] == "duplicate")
    return f"{ready} done, {failed} failed, {duplicate} duplicate"


def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    collection: CollectionOption,
    top_k: Annotated[int, typer.Option("--top-k", help="How many hits to show.")] = 5,
    retrieval: Annotated[
        str | None, typer.Option(help="dense, lexical or hybrid (default: the collection's)")
    ] = None,
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Search a collection and print the hits with their file and character span."""
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
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    collection: CollectionOption,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Passages to retrieve (service default: 5).")
    ] = None,
    adapter: Annotated[
        str | None, typer.Option(help="LoRA adapter to answer with (rag adapters list).")
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Show each reasoning step as it arrives.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Compute a fresh answer, skip the query cache.")
    ] = False,
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Ask a question; prints the answer, the analysis and the verified citations."""
    body: dict[str, Any] = {"collection": collection, "question": question}
    if adapter:
        body["adapter"] = adapter
    if top_k is not None:
        body["top_k"] = top_k
    if no_cache:
        body["use_cache"] = False
    with http.client(url, key) as client:
        if stream and not as_json:
            result = _stream(client, body)
        else:
            from rich.console import Console

            with Console(stderr=True).status("thinking…"):
                result = http.check(client.post("/v1/query", json=body))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    print_answer(result)


def print_answer(result: dict[str, Any]) -> None:
    """The answer with labels: Answer, Analysis, Citations (file and character span)."""
    supported = "" if result.get("supported") else "  (not supported by the documents)"
    cached = "  (cached)" if result.get("cached") else ""
    typer.echo(f"Answer: {result['answer']}{supported}{cached}\n")
    if result.get("analysis"):
        typer.echo(f"Analysis: {result['analysis']}\n")
    if result["citations"]:
        typer.echo("Citations:")
    for c in result["citations"]:
        quote = " ".join(c["quote"].split())
        typer.echo(f'  [{c["id"]}] {c["filename"]} [{c["start"]}:{c["end"]}] "{quote}"')


def _stream(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    """POST the query with `stream: true`; print each step as its event arrives; return the
    final response (the `done` event)."""
    final: dict[str, Any] = {}
    with client.stream("POST", "/v1/query", json=dict(body, stream=True)) as response:
        if response.status_code >= 400:
            response.read()
            http.check(response)
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
                if event == "done":
                    final = data
                elif event == "error":
                    error = data.get("error", {})
                    typer.echo(f"error — {error.get('code')}: {error.get('message')}", err=True)
                    raise typer.Exit(1)
                else:
                    typer.echo(_step_line(event, data), err=True)
    return final


def _step_line(event: str, data: dict[str, Any]) -> str:
    if event == "retrieval":
        return f"· retrieved {len(data.get('hits', []))} passages"
    if event == "relevance":
        judged = data.get("relevance", [])
        return f"· relevant: {sum(1 for j in judged if j.get('relevant'))} of {len(judged)}"
    if event == "evidence":
        return f"· evidence: {len(data.get('evidence', []))} quotes"
    if event == "analysis":
        return "· analysis written"
    if event == "answer":
        return "· answer ready"
    return f"· {event}"


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
