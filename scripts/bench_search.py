"""`/v1/search` latency over HTTP at 100k chunks, deployment mode (Postgres + broker settings).

    .venv/bin/python scripts/bench_search.py [--chunks 100000] [--queries 300] [--no-flat]
        [--chunks 3000]  # a small collection

A fresh database gets one collection of synthetic documents whose chunks carry real corpus text but
random L2-normalized vectors (dim 384), plus the real chunks of a few corpus documents embedded with
the real model (torch, as the workers embed), so the questions about those documents have a true
answer. The API runs as a uvicorn subprocess with default settings (IVF past 50k vectors, questions
encoded by the int8 twin and batched across concurrent searches); next to it run the same API with
the torch query encoder (RAG_EMBEDDER__QUERY_ENCODER=same), without query batching, with a 2 ms
batching window, without the collection-state cache (RAG_DATABASE__STATE_CACHE=false: one more
database read per search), without chunk-row snapshots (RAG_RETRIEVAL__SNAPSHOT_ROWS=0: hits
hydrated by a database read), optionally with OMP_NUM_THREADS=1 (--one-thread), and with
RAG_INDEX__KIND=flat (--no-flat skips it). Each is started in turn: readiness, then the first
search, which waits for the index build (reported, next to an explicit rebuild through the admin
route at the end), then 20 warm-up searches. The timed queries then go sequentially, each to every
API through its own keep-alive client and to `embed_query` in this process (torch and int8), in a
shuffled order per query, so the shared machine's drifting load hits every variant alike; /healthz
gives the HTTP floor. Then the queries go `--concurrency` at a time to each API in alternating
rounds: searches/s batched vs not. The flat run gives the IVF results' overlap with exact search,
and "answer found" shows the twin's questions find what the torch ones find. Prints Markdown tables
and writes bench-results/*.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from bench_common import (
    BROKER_URL,
    REPO_ROOT,
    Service,
    checked,
    latency_summary,
    log,
    machine_info,
    markdown_table,
    migrate,
    percentile,
    psycopg_dsn,
    service_env,
    services,
    start_api,
    temp_database,
    wait_ready,
    write_results,
)

EMBEDDER = "all-MiniLM-L6-v2"
DIM = 384
COLLECTION = "bench"
TARGET_P50_MS = 20.0
EVAL_DIR = REPO_ROOT.parent / "shared" / "eval-dev"


@dataclass(frozen=True)
class Question:
    text: str
    doc: str  # filename of the document that answers it


@dataclass(frozen=True)
class RealDocument:
    filename: str
    text: str
    spans: list[tuple[int, int, int, str]]  # (ordinal, start, end, text)


# Data -----------------------------------------------------------------------------------------


def load_real_documents(corpus: Path) -> list[RealDocument]:
    from core.settings import Settings
    from retrieval.chunker import chunk_text
    from retrieval.parsing import detect_media_type, extract_text

    ingest = Settings().ingest
    documents = []
    for path in sorted(corpus.iterdir()):
        data = path.read_bytes()
        text = extract_text(data, detect_media_type(path.name, data))
        spans = [
            (s.ordinal, s.start, s.end, s.text)
            for s in chunk_text(text, ingest.chunk_size, ingest.chunk_overlap)
        ]
        documents.append(RealDocument(path.name, text, spans))
    return documents


def load_questions(path: Path) -> list[Question]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Question(r["question"], r["doc"]) for r in rows]


def first_sentence(text: str, limit: int = 160) -> str:
    line = next((ln.strip("# ").strip() for ln in text.splitlines() if len(ln.strip()) > 20), "")
    return (line or text)[:limit]


def build_queries(
    questions: list[Question], documents: list[RealDocument], n: int, warmup: int, seed: int
) -> tuple[list[str], list[str]]:
    """(warm-up queries, timed queries): every question, then opening lines of corpus chunks."""
    rng = random.Random(seed)
    snippets = list(
        dict.fromkeys(first_sentence(s[3]) for d in documents for s in d.spans if s[3].strip())
    )
    rng.shuffle(snippets)
    timed = [q.text for q in questions][:n]
    timed += snippets[warmup : warmup + n - len(timed)]
    rng.shuffle(timed)
    return snippets[:warmup], timed


@dataclass
class BenchData:
    documents: list[RealDocument]  # every corpus document (the synthetic chunks' text)
    real: list[RealDocument]  # the documents embedded for real
    real_vectors: np.ndarray
    questions_with_answer: list[Question]  # questions whose document is among `real`
    warmup: list[str]
    timed: list[str]


def load_bench_data(
    corpus: Path,
    questions_path: Path,
    real_documents: int,
    queries: int,
    warmup: int,
    seed: int,
    embedder: Any,
) -> BenchData:
    """The corpus, the documents `embedder` (torch, as the workers embed) embeds for real, and
    the warm-up and timed queries."""
    documents = load_real_documents(corpus)
    by_name = {d.filename: d for d in documents}
    questions = [q for q in load_questions(questions_path) if q.doc in by_name]
    answered = list(dict.fromkeys(q.doc for q in questions))[:real_documents]
    real = [by_name[name] for name in answered]
    warm, timed = build_queries(questions, documents, queries, warmup, seed)
    return BenchData(
        documents,
        real,
        embedder.embed_documents([s[3] for d in real for s in d.spans]),
        [q for q in questions if q.doc in answered],
        warm,
        timed,
    )


def load_database(
    database_url: str,
    documents: list[RealDocument],
    real: list[RealDocument],
    real_vectors: np.ndarray,
    chunks: int,
    n_documents: int,
    seed: int,
) -> dict[str, Any]:
    """Insert the collection, documents, chunks and embeddings with COPY; returns counts."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    collection_id = hashlib.md5(b"bench-collection", usedforsecurity=False).hexdigest()
    n_real = sum(len(d.spans) for d in real)
    n_synthetic = chunks - n_real
    per_doc = math.ceil(n_synthetic / n_documents)
    pool = [s[3] for d in documents for s in d.spans]
    rng = np.random.default_rng(seed)

    doc_rows: list[tuple[Any, ...]] = []
    chunk_rows: list[tuple[Any, ...]] = []
    chunk_id = 0
    for d in range(math.ceil(n_synthetic / per_doc)):
        doc_id = f"s{d:031d}"
        parts = [f"# Synthetic document {d}"]
        offset = len(parts[0])
        for ordinal in range(min(per_doc, n_synthetic - d * per_doc)):
            text = pool[(d * per_doc + ordinal) % len(pool)]
            offset += 2  # the "\n\n" joining parts
            chunk_id += 1
            chunk_rows.append(
                (chunk_id, doc_id, collection_id, ordinal, offset, offset + len(text), text)
            )
            parts.append(text)
            offset += len(text)
        body = "\n\n".join(parts)
        doc_rows.append((doc_id, f"synthetic-{d:04d}.md", body))
    for i, doc in enumerate(real):
        doc_id = f"r{i:031d}"
        doc_rows.append((doc_id, doc.filename, doc.text))
        for ordinal, start, end, text in doc.spans:
            chunk_id += 1
            chunk_rows.append((chunk_id, doc_id, collection_id, ordinal, start, end, text))

    vectors = rng.standard_normal((n_synthetic, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.ascontiguousarray(np.vstack([vectors, real_vectors]), dtype="<f4")
    assert len(vectors) == len(chunk_rows) == chunks

    with psycopg.connect(psycopg_dsn(database_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO collections (id, name, embedder, index_version, created_at)"
            " VALUES (%s, %s, %s, 1, %s)",
            (collection_id, COLLECTION, EMBEDDER, now),
        )
        with cur.copy(
            "COPY documents (id, collection_id, filename, media_type, sha256, size_bytes,"
            " status, text, created_at, updated_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                ["varchar", "varchar", "varchar", "varchar", "varchar", "int4"]
                + ["varchar", "text", "timestamptz", "timestamptz"]
            )
            for doc_id, filename, body in doc_rows:
                raw = body.encode()
                sha = hashlib.sha256(raw).hexdigest()
                copy.write_row(
                    (doc_id, collection_id, filename, "text/markdown", sha, len(raw))
                    + ("ready", body, now, now)
                )
        with cur.copy(
            "COPY chunks (id, document_id, collection_id, ordinal, start_offset, end_offset,"
            " text) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "varchar", "varchar", "int4", "int4", "int4", "text"])
            for row in chunk_rows:
                copy.write_row(row)
        with cur.copy(
            "COPY embeddings (chunk_id, embedder, collection_id, vector) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "varchar", "varchar", "bytea"])
            for row, vector in zip(chunk_rows, vectors, strict=True):
                copy.write_row((row[0], EMBEDDER, collection_id, vector.tobytes()))
        cur.execute("SELECT setval(pg_get_serial_sequence('chunks', 'id'), %s)", (chunk_id,))
        conn.commit()
    with psycopg.connect(psycopg_dsn(database_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    seconds = time.perf_counter() - started
    log(f"loaded {len(doc_rows)} documents, {chunk_id} chunks ({n_real} real) in {seconds:.1f} s")
    return {
        "documents": len(doc_rows),
        "chunks": chunk_id,
        "real_chunks": n_real,
        "real_documents": len(real),
        "load_s": round(seconds, 2),
    }


# Measurements ---------------------------------------------------------------------------------


@dataclass
class Variant:
    """One API process under test, or the encoder timed in this process (api is None)."""

    label: str
    env: dict[str, str] = field(default_factory=dict)
    encoder: Any = None  # the in-process query encoder timed (api is None)
    api: Service | None = None
    client: httpx.Client | None = None
    info: dict[str, Any] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)
    hits: list[list[dict[str, Any]]] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)


def search(client: httpx.Client, query: str, top_k: int) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    response = client.post(
        "/v1/search", json={"collection": COLLECTION, "query": query, "top_k": top_k}
    )
    elapsed = (time.perf_counter() - started) * 1000
    hits: list[dict[str, Any]] = checked(response)["hits"]
    return elapsed, hits


def start_variant(
    variant: Variant, procs: list[Service], log_dir: Path, warmup: list[str], top_k: int
) -> None:
    """Start its API, wait for readiness, time the first search (the index build), warm up."""
    name = "api-" + re.sub(r"[^A-Za-z0-9]+", "-", variant.label).strip("-")
    variant.api, base_url = start_api(variant.env, log_dir, name=name)
    procs.append(variant.api)
    variant.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(600.0, connect=5.0))
    wait_ready(variant.client, [variant.api], timeout=600)
    variant.info["api_ready_s"] = round(time.perf_counter() - variant.api.started, 2)
    first_ms, _ = search(variant.client, warmup[0], top_k)
    variant.info["first_search_ms"] = round(first_ms, 1)
    variant.info["readyz_after_first_search"] = checked(variant.client.get("/readyz"))["checks"]
    log(f"{variant.label}: first search (waits for the index build) {first_ms:.0f} ms")
    for query in warmup[1:]:
        search(variant.client, query, top_k)


def run_interleaved(variants: list[Variant], queries: list[str], top_k: int, seed: int) -> None:
    """Each query goes to every variant in a shuffled order, so drifting load hits all alike."""
    rng = random.Random(seed)
    order = list(variants)
    for query in queries:
        rng.shuffle(order)
        for variant in order:
            if variant.client is None:
                started = time.perf_counter()
                variant.encoder.embed_query(query)
                variant.ms.append((time.perf_counter() - started) * 1000)
            else:
                ms, hits = search(variant.client, query, top_k)
                variant.ms.append(ms)
                variant.hits.append(hits)
        for variant in order:
            if variant.client is not None:
                started = time.perf_counter()
                checked(variant.client.get("/healthz"))
                variant.health_ms.append((time.perf_counter() - started) * 1000)


def run_concurrent(
    variants: list[Variant], queries: list[str], top_k: int, concurrency: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Searches `concurrency` at a time (each thread its own client), round by round over the
    variants in turn, so drifting load hits all alike: searches/s and latency per variant."""
    from concurrent.futures import ThreadPoolExecutor

    per_round = max(concurrency, len(queries) // rounds)
    seconds = {v.label: 0.0 for v in variants}
    latencies: dict[str, list[float]] = {v.label: [] for v in variants}
    clients = {
        v.label: [httpx.Client(base_url=str(v.client.base_url)) for _ in range(concurrency)]
        for v in variants
        if v.client is not None
    }

    def one(args: tuple[httpx.Client, str]) -> float:
        return search(args[0], args[1], top_k)[0]

    try:
        with ThreadPoolExecutor(concurrency) as threads:
            for r in range(rounds):
                batch = queries[(r * per_round) % len(queries) :][:per_round]
                for v in variants if r % 2 == 0 else variants[::-1]:
                    pool = clients[v.label]
                    started = time.perf_counter()
                    ms = list(
                        threads.map(one, [(pool[i % concurrency], q) for i, q in enumerate(batch)])
                    )
                    seconds[v.label] += time.perf_counter() - started
                    latencies[v.label] += ms
    finally:
        for pool in clients.values():
            for client in pool:
                client.close()
    return {
        label: {
            "searches": len(latencies[label]),
            "per_s": round(len(latencies[label]) / seconds[label], 1),
            "p50_ms": round(percentile(latencies[label], 50), 1),
            "p95_ms": round(percentile(latencies[label], 95), 1),
        }
        for label in seconds
    }


def rebuild(variant: Variant) -> None:
    """Time an explicit rebuild from the database through the admin route (nothing else runs)."""
    assert variant.client is not None
    started = time.perf_counter()
    rebuilt = checked(variant.client.post(f"/admin/v1/collections/{COLLECTION}/index/rebuild"))
    variant.info["rebuild_s"] = round(time.perf_counter() - started, 2)
    variant.info["rebuild_vectors"] = rebuilt["vectors"]
    log(f"{variant.label}: explicit rebuild {variant.info['rebuild_s']} s")


def answer_rate(
    hits: list[list[dict[str, Any]]], timed: list[str], questions: list[Question]
) -> tuple[int, int]:
    """Share of the questions with a true answer whose document is among the hits."""
    expected = {q.text: q.doc for q in questions}
    found = [
        any(h["filename"] == expected[q] for h in query_hits)
        for q, query_hits in zip(timed, hits, strict=True)
        if q in expected
    ]
    return (sum(found), len(found))


def overlap(a: list[list[dict[str, Any]]], b: list[list[dict[str, Any]]]) -> float:
    """Mean share of b's chunk ids (exact search) that a also returned."""
    shares = []
    for hits_a, hits_b in zip(a, b, strict=True):
        ids_b = {h["chunk_id"] for h in hits_b}
        if ids_b:
            shares.append(len(ids_b & {h["chunk_id"] for h in hits_a}) / len(ids_b))
    return sum(shares) / len(shares) if shares else float("nan")


# Main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=EVAL_DIR / "corpus")
    parser.add_argument("--questions", type=Path, default=EVAL_DIR / "questions.jsonl")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--real-documents", type=int, default=15, help="embedded for real")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--no-flat", dest="flat", action="store_false", help="skip exact run")
    parser.add_argument(
        "--one-thread", action="store_true", help="add a run with OMP_NUM_THREADS=1 for the API"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--concurrent-rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from core.settings import EmbedderSettings
    from retrieval.embedders import QUERY_TWINS, load_embedder

    embedder = load_embedder(EMBEDDER, EmbedderSettings())  # torch, as the workers embed
    data = load_bench_data(
        args.corpus,
        args.questions,
        args.real_documents,
        args.queries,
        args.warmup,
        args.seed,
        embedder,
    )
    documents, real, real_vectors = data.documents, data.real, data.real_vectors
    questions_with_answer, warmup, timed = data.questions_with_answer, data.warmup, data.timed
    twin = load_embedder(QUERY_TWINS[EMBEDDER], EmbedderSettings())
    for query in warmup:
        embedder.embed_query(query)
        twin.embed_query(query)

    from core.settings import IndexSettings
    from retrieval.faiss_index import choose_kind

    kind = choose_kind(IndexSettings(), args.chunks)
    encoders = [
        Variant("embed_query in-process, torch", encoder=embedder),
        Variant("embed_query in-process, int8 twin", encoder=twin),
    ]
    # The default: int8 twin for queries, batching with no window.
    apis = [
        Variant(f"{kind} (default)"),
        Variant("torch query encoder", {"RAG_EMBEDDER__QUERY_ENCODER": "same"}),
        Variant("no query batching", {"RAG_EMBEDDER__QUERY_BATCH_MAX": "1"}),
        Variant("batch window 2 ms", {"RAG_EMBEDDER__QUERY_BATCH_WINDOW_MS": "2"}),
        Variant("no collection-state cache", {"RAG_DATABASE__STATE_CACHE": "false"}),
        Variant("no row snapshots", {"RAG_RETRIEVAL__SNAPSHOT_ROWS": "0"}),
    ]
    if args.one_thread:
        apis.append(Variant(f"{kind}, 1 thread", {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}))
    if args.flat and kind != "flat":
        apis.append(Variant("flat", {"RAG_INDEX__KIND": "flat"}))

    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    with (
        tempfile.TemporaryDirectory(prefix="bench-search-") as tmp,
        temp_database("bench_search") as url,
        services() as procs,
    ):
        try:
            migrate(url)
            results["data"] = load_database(
                url, documents, real, real_vectors, args.chunks, args.documents, args.seed
            )
            for i, variant in enumerate(apis):
                variant.env = service_env(
                    RAG_DATABASE__URL=url,
                    RAG_BROKER__URL=BROKER_URL,
                    RAG_DATA_DIR=f"{tmp}/data-{i}",
                    **variant.env,
                )
                start_variant(variant, procs, Path(tmp), warmup, args.top_k)
            log(f"{len(timed)} queries, each to {len(apis)} APIs and the in-process encoder")
            run_interleaved(apis + encoders, timed, args.top_k, args.seed)
            log(f"{args.concurrency} concurrent searches, {args.concurrent_rounds} rounds")
            results["concurrent"] = run_concurrent(
                [v for v in apis if v.label != "flat"],
                timed,
                args.top_k,
                args.concurrency,
                args.concurrent_rounds,
            )
            for variant in apis:
                rebuild(variant)
        except Exception:
            for proc in procs:
                log(f"--- {proc.name} log tail ---\n{proc.tail()}")
            raise
        finally:
            for variant in apis:
                if variant.client is not None:
                    variant.client.close()

    encoder_p50 = {v.label: percentile(v.ms, 50) for v in encoders}
    flat = next((v for v in apis if v.label == "flat" or kind == "flat"), None)
    rows = []
    for v in apis:
        found, asked = answer_rate(v.hits, timed, questions_with_answer)
        encoder = encoders[0] if "torch" in v.label else encoders[1]
        v.info.update(
            search=latency_summary(v.ms),
            healthz=latency_summary(v.health_ms),
            true_answer_found=[found, asked],
            encoder_p50_ms=round(encoder_p50[encoder.label], 2),
            encoder_share_of_p50=round(encoder_p50[encoder.label] / percentile(v.ms, 50), 3),
        )
        if flat is not None and v is not flat:
            v.info["overlap_with_flat"] = round(overlap(v.hits, flat.hits), 3)
        s = v.info["search"]
        rows.append(
            [
                v.label,
                s["p50_ms"],
                s["p95_ms"],
                s["mean_ms"],
                s["max_ms"],
                v.info["healthz"]["p50_ms"],
                f"{v.info['encoder_p50_ms']:.1f} ({v.info['encoder_share_of_p50']:.0%})",
                f"{v.info['first_search_ms'] / 1000:.1f} / {v.info['rebuild_s']:.1f}",
                f"{found}/{asked}",
                f"{v.info['overlap_with_flat']:.0%}" if "overlap_with_flat" in v.info else "",
            ]
        )
    rows.extend(
        [v.label, *[latency_summary(v.ms)[k] for k in ("p50_ms", "p95_ms", "mean_ms", "max_ms")]]
        + [""] * 5
        for v in encoders
    )
    data = results["data"]
    print(f"### /v1/search, {data['chunks']:,} chunks, top_k={args.top_k}, {len(timed)} queries\n")
    headers = ["run", "p50 ms", "p95 ms", "mean ms", "max ms", "healthz p50"]
    headers += ["embed_query p50 (share)", "build s (1st search / rebuild)", "answer found"]
    headers += ["overlap w/ flat"]
    print(markdown_table(headers, rows))
    print(
        f"\nAll runs interleaved query by query. DB load {data['load_s']} s; "
        f"{data['real_chunks']} real chunks answer {len(questions_with_answer)} questions."
    )
    print(f"\n### {args.concurrency} concurrent searches\n")
    conc = results["concurrent"]
    base = conc["no query batching"]["per_s"]
    print(
        markdown_table(
            ["run", "searches/s", "vs no batching", "p50 ms", "p95 ms"],
            [
                [label, c["per_s"], f"{c['per_s'] / base:.2f}x", c["p50_ms"], c["p95_ms"]]
                for label, c in conc.items()
            ],
        )
    )
    p50 = apis[0].info["search"]["p50_ms"]
    verdict = "met" if p50 <= TARGET_P50_MS else "NOT met"
    print(f"Target p50 <= {TARGET_P50_MS:.0f} ms ({apis[0].label}): {verdict} ({p50} ms).")

    results.update(
        runs=[
            {"run": v.label} | v.info | {"latencies_ms": [round(x, 2) for x in v.ms]} for v in apis
        ],
        embed_query={v.label: latency_summary(v.ms) for v in encoders},
        queries={"warmup": len(warmup), "timed": len(timed)},
        p50_target_ms=TARGET_P50_MS,
    )
    path = write_results("search", results)
    print(f"\nresults: {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
