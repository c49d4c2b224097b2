"""Client commands against a running service: ingest (app/cli/folder_sync.py), search, ask,
migrate-embedder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from app.cli import http
from app.cli.folder_sync import OnExisting, sync_folder

CollectionOption = Annotated[str, typer.Option(help="Collection name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")]
QueryMode = Literal["steps", "single_pass", "one_call", "closed_book"]
# How long `rag ask` waits. The embedded default answers in 25-90 s on two cores; requests
# share one model, so a question behind two others (or beside an ingest) takes minutes. Ten
# minutes covers that; past it the user is told the service was still working, and may wait
# longer with --timeout.
ASK_TIMEOUT_S = 600.0


def ingest(
    directory: Annotated[Path, typer.Argument(help="Folder whose files are uploaded.")],
    collection: Annotated[str, typer.Option(help="Collection to add to (created if missing).")],
    url: http.UrlOption = "http://127.0.0.1:8000",
    key: http.KeyOption = "",
    pattern: Annotated[
        str, typer.Option(help="Glob of files to upload, under DIRECTORY.")
    ] = "**/*",
    on_existing: Annotated[
        OnExisting,
        typer.Option(
            "--on-existing",
            help="An edited file: replace its document once ingested, or keep both.",
        ),
    ] = "replace",
    delete_missing: Annotated[
        bool,
        typer.Option(
            "--delete-missing", help="Delete the documents whose file is gone (listed first)."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would change; change nothing.")
    ] = False,
) -> None:
    """Bring a collection in step with DIRECTORY and wait for the jobs, file by file.

    Each file is a document named by its path under DIRECTORY. Unchanged files are skipped,
    new ones uploaded, edited ones replace their document (the service swaps them when the new
    version is ready). Files of unsupported types are listed as skipped; files the service
    refuses or fails are listed with the reason.
    """
    with http.client(url, key) as client:
        sync_folder(
            client,
            directory,
            collection,
            pattern,
            on_existing=on_existing,
            delete_missing=delete_missing,
            dry_run=dry_run,
        )


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
    mode: Annotated[
        QueryMode | None,
        typer.Option(
            help="steps: relevance, evidence, analysis as three calls; single_pass: one call "
            "for all three; one_call, closed_book: baselines (service default: steps)."
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to wait for the answer (0: no limit). The embedded model takes "
            "25-90 s a question on two cores, minutes when busy.",
        ),
    ] = ASK_TIMEOUT_S,
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
    if mode is not None:
        body["mode"] = mode
    # Giving up closes the connection, and the service then stops computing the answer.
    hint = "the answer was dropped; wait longer with --timeout SECONDS (0: no limit)"
    with http.client(url, key, timeout, hint) as client:
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
                elif event not in ("answer_delta", "answer_reset"):
                    # The answer is printed whole from `done`, as checked, not as written.
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
