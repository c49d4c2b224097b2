"""Embedder migration: re-embedding throughput vs first-time ingestion, and the longest pause a
search saw while the collection switched to the new index.

    .venv/bin/python scripts/bench_migration.py [--corpus DIR] [--limit N] [--to EMBEDDER]

Deployment shape: a fresh Postgres database, Redis broker, one Celery worker (solo pool) and
the API under uvicorn. In one run, with the same chunks:
1. first-time ingestion of the corpus into a collection created with the target embedder
   (parse + chunk + embed + store), timed from the first upload until every job succeeded;
2. ingestion of the corpus into a collection with the default embedder (not compared), then
   its migration to the target embedder, timed from the POST until the job succeeded, while a
   client searches that collection in a loop and records every latency.
Throughput ratio = re-embedding chunks/s / first-time ingestion chunks/s (target >= 0.9x).
The pause is the slowest search within 2 s of the switch (the first answer from the new
embedder), next to the p50 and max of the searches before the migration started.
Prints a Markdown table and writes bench-results/migration-*.json.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from bench_common import (
    REPO_ROOT,
    Service,
    checked,
    deployment_stack,
    latency_summary,
    log,
    machine_info,
    markdown_table,
    wait_ready,
    write_results,
)
from bench_ingest import CorpusFile, load_corpus, upload_batches, wait_jobs

QUERY = "What does BIOS stand for?"


def ingest(
    client: httpx.Client, name: str, embedder: str, files: list[CorpusFile], procs: list[Service]
) -> dict[str, Any]:
    checked(client.post("/admin/v1/collections", json={"name": name, "embedder": embedder}))
    started = time.perf_counter()
    job_ids, _ = upload_batches(client, name, files)
    jobs = wait_jobs(client, job_ids, procs, timeout=3600)
    elapsed = time.perf_counter() - started
    failed = [j for j in jobs.values() if j["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"ingestion jobs failed: {failed[:2]}")
    chunks = checked(client.get(f"/v1/collections/{name}"))["chunks"]
    log(f"ingested {chunks} chunks into {name} ({embedder}) in {elapsed:.1f} s")
    return {"chunks": chunks, "elapsed_s": round(elapsed, 3), "chunks_per_s": chunks / elapsed}


class SearchLoop:
    """Searches a collection every `interval_s` on its own connection; records (t, ms, embedder).

    Paced rather than back to back: on a small machine an unpaced loop would take a core from
    the worker and make the migration look slower than first-time ingestion for that reason.
    """

    def __init__(self, base_url: str, collection: str, interval_s: float) -> None:
        self._interval = interval_s
        self.samples: list[tuple[float, float, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base_url, collection))

    def _run(self, base_url: str, collection: str) -> None:
        body = {"collection": collection, "query": QUERY, "top_k": 5}
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not self._stop.wait(self._interval):
                started = time.perf_counter()
                try:
                    response = client.post("/v1/search", json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(type(exc).__name__)
                    continue
                ms = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                self.samples.append((started, ms, response.json()["embedder"]))

    def __enter__(self) -> SearchLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run(files: list[CorpusFile], target: str, interval_s: float) -> dict[str, Any]:
    with deployment_stack("bench-migration") as (base_url, procs):
        return measure(base_url, procs, files, target, interval_s)


def measure(
    base_url: str, procs: list[Service], files: list[CorpusFile], target: str, interval_s: float
) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        wait_ready(client, procs)
        default = checked(client.get("/v1/embedders"))["embedders"][0]["id"]
        # Warm both models in the worker before anything is timed.
        for embedder in (target, default):
            ingest(client, f"warm-{embedder}", embedder, files[:2], procs)
        first_time = ingest(client, "first-time", target, files, procs)
        ingest(client, "migrated", default, files, procs)

        with SearchLoop(base_url, "migrated", interval_s) as loop:
            time.sleep(3.0)  # searches before the migration: the baseline latency
            started_at = time.perf_counter()
            accepted = checked(
                client.post(
                    "/admin/v1/collections/migrated/embedder-migrations",
                    json={"embedder": target},
                )
            )
            jobs = wait_jobs(client, [accepted["job_id"]], procs, timeout=3600)
            elapsed = time.perf_counter() - started_at
            time.sleep(3.0)  # and after the switch
        job = jobs[accepted["job_id"]]
        if job["status"] != "succeeded":
            raise RuntimeError(f"migration did not succeed: {job}")
        chunks = job["progress"]["total"]

    before = [ms for t, ms, _ in loop.samples if t < started_at]
    switched = [t for t, _, embedder in loop.samples if embedder == target]
    switch_at = min(switched) if switched else float("nan")
    around = [ms for t, ms, _ in loop.samples if abs(t - switch_at) <= 2.0]
    order = [embedder for _, _, embedder in loop.samples]
    return {
        "target": target,
        "search_interval_s": interval_s,
        "chunks": chunks,
        "first_time": first_time,
        "migration_s": round(elapsed, 3),
        "migration_chunks_per_s": chunks / elapsed,
        "ratio": (chunks / elapsed) / first_time["chunks_per_s"],
        "searches": len(loop.samples),
        "search_errors": loop.errors[:20],
        "switches": sum(1 for a, b in zip(order, order[1:], strict=False) if a != b),
        "before": latency_summary(before),
        "during": latency_summary([ms for t, ms, _ in loop.samples if t >= started_at]),
        "around_switch": latency_summary(around),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "eval-dev" / "corpus"
    )
    parser.add_argument("--limit", type=int, help="only the first LIMIT files")
    parser.add_argument("--to", default="all-MiniLM-L6-v2-onnx-int8", help="target embedder")
    parser.add_argument(
        "--search-interval", type=float, default=0.05, help="seconds between searches"
    )
    args = parser.parse_args()
    files = load_corpus(args.corpus, args.limit)
    result = run(files, args.to, args.search_interval)

    rows = [
        [
            "first-time ingestion",
            result["first_time"]["elapsed_s"],
            result["first_time"]["chunks_per_s"],
            "baseline",
        ],
        [
            "re-embedding (migration)",
            result["migration_s"],
            result["migration_chunks_per_s"],
            f"{result['ratio']:.2f}x (target >= 0.9x)",
        ],
    ]
    print(f"### Embedder migration to {args.to}, {result['chunks']} chunks\n")
    print(markdown_table(["run", "wall s", "chunks/s", "ratio"], rows))
    lat = [
        ["before the migration", *_lat(result["before"])],
        ["during the migration", *_lat(result["during"])],
        ["within 2 s of the switch", *_lat(result["around_switch"])],
    ]
    print()
    print(markdown_table(["searches", "n", "p50 ms", "p95 ms", "max ms"], lat))
    print(
        f"\n{result['searches']} searches, {len(result['search_errors'])} errors, "
        f"results switched embedder {result['switches']} time(s)."
    )
    path = write_results("migration", {"machine": machine_info(), **result})
    print(f"\nresults: {path.relative_to(REPO_ROOT)}")
    return 0


def _lat(summary: dict[str, float]) -> list[Any]:
    return [summary["n"], summary["p50_ms"], summary["p95_ms"], summary["max_ms"]]


if __name__ == "__main__":
    sys.exit(main())
