"""Where one search's time goes, in process on Postgres, and what a database read costs after idle.

    .venv/bin/python scripts/bench_search_stages.py [--chunks 3000] [--queries 200]

The same collection as scripts/bench_search.py (synthetic chunks of real corpus text plus real
chunks embedded by the torch model, loaded with COPY into a fresh database). A `Searcher` is
built as the API builds it (collection-state cache and chunk-row snapshots on, hybrid retrieval by
default), and each timed search records its stages: the collection state, the question's encode
(int8 twin, through the query batcher), FAISS, BM25, and the hydration of its hits (from the
row snapshot, or the database read with RAG_RETRIEVAL__SNAPSHOT_ROWS=0).

Then the hydration read alone (`repository.chunk_rows` of ten hit ids, as a search reads them),
in interleaved rounds, right after another read ("back to back"), after encoding a question,
and after sleeping as long as an encode takes. The gap between the first and the others is
what a read costs when the database's and this process's threads have gone idle in between:
the wake-up, which a search always pays because its read follows the encode.

Prints Markdown tables and writes bench-results/search-stages-*.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_search as bs  # noqa: E402
from bench_common import (  # noqa: E402
    BROKER_URL,
    latency_summary,
    log,
    machine_info,
    markdown_table,
    migrate,
    percentile,
    service_env,
    temp_database,
    write_results,
)


def summary(ms: list[float]) -> dict[str, float]:
    """p50, p95 and mean of `latency_summary`, the columns of the tables here."""
    full = latency_summary(ms)
    return {key: full[key] for key in ("p50_ms", "p95_ms", "mean_ms")}


def timed(times: dict[str, list[float]], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, recording each call's milliseconds under `key`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.setdefault(key, []).append((time.perf_counter() - started) * 1000)

    return wrapper


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the read-after-idle part")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from core.settings import EmbedderSettings
    from retrieval.embedders import load_embedder

    embedder = load_embedder(bs.EMBEDDER, EmbedderSettings())  # torch, as the workers embed
    data = bs.load_bench_data(
        bs.EVAL_DIR / "corpus",
        bs.EVAL_DIR / "questions.jsonl",
        15,
        args.queries,
        20,
        args.seed,
        embedder,
    )
    warmup, queries = data.warmup, data.timed

    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp, temp_database("stages") as url:
        migrate(url)
        results["data"] = bs.load_database(
            url,
            data.documents,
            data.real,
            data.real_vectors,
            args.chunks,
            args.documents,
            args.seed,
        )
        os.environ.update(
            service_env(RAG_DATABASE__URL=url, RAG_BROKER__URL=BROKER_URL, RAG_DATA_DIR=tmp)
        )
        from core import repository
        from core.collection_state import CollectionStates
        from core.db import Database
        from core.settings import Settings
        from retrieval.bm25_store import Bm25Store
        from retrieval.embedders import EmbedderPool
        from retrieval.index_store import IndexStore
        from retrieval.row_snapshots import ChunkRowSnapshots
        from retrieval.search import Searcher

        settings = Settings()
        db = Database(settings)
        pool = EmbedderPool(settings.embedder)
        indexes = IndexStore(db, settings.index, settings.index_dir)
        lexical = Bm25Store(db, settings.retrieval.bm25, settings.index_dir / "bm25")
        states = CollectionStates(db, ping_s=settings.database.state_cache_ping_s)
        snapshots = ChunkRowSnapshots(db, settings.retrieval.snapshot_rows)
        searcher = Searcher(
            db, pool, indexes, lexical, settings.index, settings.retrieval, states, snapshots
        )
        encoder = pool.for_queries(pool.default_id())
        for query in warmup:
            searcher.search(bs.COLLECTION, query, 5)

        # Stages of each search, by wrapping the components the searcher calls.
        stages: dict[str, list[float]] = {}
        states.get = timed(stages, "collection state", states.get)  # type: ignore[method-assign]
        encoder.embed_query = timed(stages, "encode", encoder.embed_query)  # type: ignore[method-assign]
        dense = searcher._dense
        searcher._dense = timed(stages, "encode + FAISS", dense)  # type: ignore[method-assign]
        get_bm25 = lexical.get

        class TimedBm25:
            def __init__(self, index: Any) -> None:
                self.search = timed(stages, "BM25", index.search)

        lexical.get = lambda *a: TimedBm25(get_bm25(*a))  # type: ignore[method-assign]
        searcher._hydrate = timed(stages, "hydration", searcher._hydrate)  # type: ignore[method-assign]
        total: list[float] = []
        hits: list[list[int]] = []
        for query in queries:
            started = time.perf_counter()
            result = searcher.search(bs.COLLECTION, query, 5)
            total.append((time.perf_counter() - started) * 1000)
            hits.append([h.chunk_id for h in result.hits])
        results["stages"] = {"search": summary(total)} | {k: summary(v) for k, v in stages.items()}
        rows = [[k, *summary(v).values()] for k, v in [("search", total), *stages.items()]]
        print(f"### Stages of a search, {args.chunks:,} chunks, {len(queries)} queries\n")
        print(markdown_table(["stage", "p50 ms", "p95 ms", "mean ms"], rows))
        # What a cache of the rows of earlier hits would have held: each hit's row, and all the
        # rows a search needs (only then does it skip the read).
        seen: set[int] = set()
        rows_seen = searches_seen = 0
        for ids in hits:
            rows_seen += sum(1 for i in ids if i in seen)
            searches_seen += all(i in seen for i in ids)
            seen.update(ids)
        results["seen_before"] = {
            "hit_rows": round(rows_seen / max(1, sum(map(len, hits))), 3),
            "whole_searches": round(searches_seen / max(1, len(hits)), 3),
        }
        seen_rows, seen_searches = results["seen_before"].values()
        print(
            f"\nHits whose row an earlier search had read: {seen_rows:.0%}; searches all of "
            f"whose hits had been read before: {seen_searches:.0%}."
        )

        # The hydration read after idle: ten ids per read, as the searcher reads the head of its
        # ranking (here the hits of two neighbouring questions).
        heads = [list(dict.fromkeys(a + b))[:10] for a, b in zip(hits, hits[1:], strict=False)]
        encode_ms = statistics.median(stages["encode"]) / 1000

        def before_read(kind: str, i: int) -> None:
            if kind == "after encoding a question":
                encoder.embed_query(queries[i % len(queries)])
            elif kind == "after sleeping one encode":
                time.sleep(encode_ms)

        kinds = ["back to back", "after encoding a question", "after sleeping one encode"]
        reads: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                for i, ids in enumerate(heads):
                    before_read(kind, i)
                    started = time.perf_counter()
                    db.read(lambda session, ids=ids: repository.chunk_rows(session, ids))
                    reads[kind].append((time.perf_counter() - started) * 1000)
        results["hydration_read"] = {k: summary(v) for k, v in reads.items()}
        base = percentile(reads["back to back"], 50)
        rows = [
            [k, *summary(v).values(), f"{percentile(v, 50) / base:.2f}x"] for k, v in reads.items()
        ]
        print(f"\n### One hydration read (10 chunk rows), {args.rounds} interleaved rounds\n")
        print(markdown_table(["read", "p50 ms", "p95 ms", "mean ms", "p50 vs back to back"], rows))
        searcher.close()
        states.close()
        db.dispose()
    path = write_results("search-stages", results)
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
