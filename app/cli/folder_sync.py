"""`rag ingest DIR`: keep a collection in step with a folder.

Each supported file is a document named by its path under the folder (`guides/setup.md`). A file
whose document holds the same bytes is skipped; a new file is uploaded; an edited one is uploaded
and replaces its document once ingested (the service swaps them in one transaction, unless
`--on-existing keep`); with `--delete-missing` the documents whose file is gone are deleted.
The plan is printed first; `--dry-run` prints it and changes nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import typer

from app.cli import http

UPLOAD_BATCH = 50
TERMINAL = ("succeeded", "failed", "cancelled")
OnExisting = Literal["replace", "keep"]


@dataclass(frozen=True)
class LocalFile:
    name: str  # the path under the folder, "/"-separated: the document's filename
    path: Path
    sha256: str

    @classmethod
    def read(cls, path: Path, directory: Path) -> LocalFile:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(path.relative_to(directory).as_posix(), path, digest)


@dataclass
class Plan:
    """What a run does: files to upload (new or changed), files skipped because their document
    holds the same bytes, and documents whose file is gone."""

    new: list[LocalFile] = field(default_factory=list)
    changed: list[LocalFile] = field(default_factory=list)
    unchanged: list[LocalFile] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    @property
    def uploads(self) -> list[LocalFile]:
        return sorted(self.new + self.changed, key=lambda f: f.name)


def make_plan(files: list[LocalFile], documents: list[dict[str, Any]]) -> Plan:
    """Compare the folder's files with the collection's documents, by name then content."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_name.setdefault(document_name(document), []).append(document)
    plan = Plan()
    for file in files:
        same_name = by_name.get(file.name, [])
        if any(d["sha256"] == file.sha256 for d in same_name):
            plan.unchanged.append(file)
        elif same_name:
            plan.changed.append(file)
        else:
            plan.new.append(file)
    names = {f.name for f in files}
    plan.missing = [d for d in documents if document_name(d) not in names]
    return plan


def document_name(document: dict[str, Any]) -> str:
    """The name a document was uploaded under (the full one when the stored one was cut)."""
    return str(document.get("original_filename") or document["filename"])


def sync_folder(
    client: Any,
    directory: Path,
    collection: str,
    pattern: str,
    *,
    on_existing: OnExisting = "replace",
    delete_missing: bool = False,
    dry_run: bool = False,
) -> None:
    """Bring `collection` in step with the supported files under `directory` (see the module)."""
    from retrieval.parsing import SUPPORTED_MEDIA_TYPES

    if not directory.is_dir():
        typer.echo(f"no such directory: {directory}", err=True)
        raise typer.Exit(1)
    candidates = sorted(p for p in directory.glob(pattern) if p.is_file())
    paths = [p for p in candidates if p.suffix.lower().lstrip(".") in SUPPORTED_MEDIA_TYPES]
    supported = set(paths)
    for skipped in (p for p in candidates if p not in supported):
        shown = skipped.suffix or "no extension"
        typer.echo(f"  skipped: {skipped.relative_to(directory)}: unsupported type ({shown})")
    if not paths:
        typer.echo(f"no supported files under {directory}", err=True)
        raise typer.Exit(1)
    listing = client.get(f"/v1/collections/{collection}/documents")
    exists = listing.status_code != 404
    documents = http.check(listing)["documents"] if exists else []
    files = [LocalFile.read(p, directory) for p in paths]
    plan = make_plan(files, documents)
    _print_plan(plan, collection, exists, on_existing, delete_missing, dry_run)
    if dry_run:
        typer.echo("dry run: nothing was changed")
        return
    if not exists:
        http.check(client.post("/admin/v1/collections", json={"name": collection}))
    deleted = _delete_missing(client, collection, plan.missing) if delete_missing else 0
    job_ids, replacing, refused = _upload(client, collection, plan.uploads, on_existing)
    files_seen = _wait(client, job_ids)
    info = http.check(client.get(f"/v1/collections/{collection}"))
    typer.echo(f"{collection}: {info['documents']} documents, {info['chunks']} chunks")
    replaced = sum(
        1 for f in files_seen if f["status"] == "ready" and f.get("document_id") in replacing
    )
    extras = {"unchanged": len(plan.unchanged), "replaced": replaced, "deleted": deleted}
    more = "".join(f", {n} {label}" for label, n in extras.items() if n)
    typer.echo(f"this run: {count_files(files_seen)}{more}")
    for f in files_seen:
        if f["status"] == "failed":
            kept = " (the previous version is kept)" if f.get("document_id") in replacing else ""
            typer.echo(f"  failed: {f['filename']}: {f.get('error') or 'failed'}{kept}", err=True)
    for r in refused:
        typer.echo(f"  refused: {r.get('filename', '?')}: {r['message']}", err=True)


def _print_plan(
    plan: Plan,
    collection: str,
    exists: bool,
    on_existing: OnExisting,
    delete_missing: bool,
    dry_run: bool,
) -> None:
    """What the run does, before it does it (a dry run's whole output)."""
    will = "would be" if dry_run else "is"
    if not exists:
        typer.echo(f"collection {collection} does not exist yet: it {will} created")
    if plan.unchanged:
        files = _plural(len(plan.unchanged), "file")
        typer.echo(f"  unchanged: {files} (their documents hold these bytes)")
    for file in plan.new:
        typer.echo(f"  new: {file.name}")
    if on_existing == "replace":
        change = "would replace its document" if dry_run else "replaces its document when ready"
    else:
        change = f"{will} kept beside the old version"
    for file in plan.changed:
        typer.echo(f"  changed: {file.name} ({change})")
    if plan.missing and delete_missing:
        for document in plan.missing:
            typer.echo(f"  missing: {document_name(document)} ({will} deleted)")
    elif plan.missing:
        typer.echo(
            f"  {_plural(len(plan.missing), 'document')} with no file here (kept; --delete-missing "
            "deletes them): "
            + ", ".join(document_name(d) for d in plan.missing[:5])
            + (", …" if len(plan.missing) > 5 else "")
        )


def _delete_missing(client: Any, collection: str, documents: list[dict[str, Any]]) -> int:
    """Delete the documents whose file is gone; the number deleted (one gone meanwhile is not
    an error). Done before the uploads, so that a renamed file is not a duplicate of itself."""
    deleted = 0
    for document in documents:
        response = client.delete(
            f"/admin/v1/collections/{collection}/documents/{document['document_id']}"
        )
        if response.status_code != 404:
            http.check(response)
            deleted += 1
    return deleted


def _upload(
    client: Any, collection: str, files: list[LocalFile], on_existing: OnExisting
) -> tuple[list[str], set[str], list[dict[str, Any]]]:
    """Upload in batches: (job ids, ids of the documents that replace others, refused files)."""
    from rich.progress import Progress

    job_ids: list[str] = []
    replacing: set[str] = set()
    refused: list[dict[str, Any]] = []
    if not files:
        return job_ids, replacing, refused
    with Progress() as progress:
        uploading = progress.add_task("uploading", total=len(files))
        for start in range(0, len(files), UPLOAD_BATCH):
            batch = files[start : start + UPLOAD_BATCH]
            progress.update(uploading, description=f"uploading {batch[0].name}")
            response = client.post(
                f"/admin/v1/collections/{collection}/documents",
                files=[("files", (f.name, f.path.read_bytes())) for f in batch],
                data={"on_existing": on_existing},
            )
            if 400 <= response.status_code < 500:
                # Nothing in this batch could be accepted: list why, go on with the next.
                message = response.json().get("error", {}).get("message", response.text)
                refused.append({"filename": f"batch of {len(batch)}", "message": message})
            else:
                accepted = http.check(response)
                job_ids.append(accepted["job_id"])
                replacing |= {d["document_id"] for d in accepted["documents"] if d.get("replaces")}
                refused += accepted.get("errors", [])
            progress.advance(uploading, len(batch))
        progress.update(uploading, description="uploaded")
    return job_ids, replacing, refused


def _wait(client: Any, job_ids: list[str]) -> list[dict[str, Any]]:
    """Follow the jobs to their end with a progress bar; every file of them, as they ended."""
    from rich.progress import Progress

    files_seen: list[dict[str, Any]] = []
    if not job_ids:
        return files_seen
    latest: dict[str, dict[str, Any]] = {}
    with Progress() as progress:
        embedding = progress.add_task("embedding", total=None)
        while True:
            # A job that ended is not read again: reads take CPU from the embedding.
            for j in job_ids:
                if latest.get(j, {}).get("status") not in TERMINAL:
                    latest[j] = http.check(client.get(f"/admin/v1/jobs/{j}"))
            jobs = list(latest.values())
            files_seen = [f for j in jobs for f in j.get("files") or []]
            working = next((f["filename"] for f in files_seen if f["status"] == "processing"), "")
            working = working or _queued_behind(jobs)
            progress.update(
                embedding,
                completed=sum(j["progress"]["done"] for j in jobs),
                total=sum(j["progress"]["total"] for j in jobs),
                description=f"embedding {count_files(files_seen)} {working}".rstrip(),
            )
            if all(j["status"] in TERMINAL for j in jobs):
                return files_seen
            time.sleep(0.5)


def _queued_behind(jobs: list[dict[str, Any]]) -> str:
    """ "(queued: 2 uploads ahead)" while none of `jobs` runs yet and others' are ahead of them
    (a job's `ahead`); else ""."""
    if any(j["status"] == "running" for j in jobs):
        return ""
    ahead = min((j["ahead"] for j in jobs if j.get("ahead") is not None), default=0)
    return f"(queued: {_plural(ahead, 'upload')} ahead)" if ahead else ""


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def count_files(files: list[dict[str, Any]]) -> str:
    """ "3 done, 1 failed, 2 duplicate" for a list of job files."""
    ready = sum(1 for f in files if f["status"] == "ready")
    failed = sum(1 for f in files if f["status"] in ("failed", "refused"))
    duplicate = sum(1 for f in files if f["status"] == "duplicate")
    return f"{ready} done, {failed} failed, {duplicate} duplicate"
