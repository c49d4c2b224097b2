"""A steps answer while the embedded default ingests a large upload, against the same answer
alone (not part of the test suite).

`rag serve` (embedded default: SQLite, in-process ingestion, the default model) in a temporary
data directory. Collection "ask" holds the gold documents of the first --questions eval-dev
questions and some others. Then, each timed:
  1. the questions alone, in steps mode, uncached;
  2. an upload of --files files to collection "bulk", alone;
  3. an upload of as many files of the same size to "bulk-2", with the same questions asked
     while it is ingested.
eval-dev's entries are short (about 0.9 kB), so each uploaded file joins --join of them (about
36 kB, a manual page's size); the two uploads join them in different orders: no duplicates.
Prints each answer's seconds alone and during the upload, the ratio of the medians, and both
uploads' durations (what answering first costs the upload).

    .venv/bin/python scripts/bench_answer_during_upload.py [--questions 5] [--files 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_load import CORPUS, free_port, rag, start_server, wait_job, wait_ready

QUESTIONS = CORPUS.parent / "questions.jsonl"


def ask(client: httpx.Client, question: str) -> float:
    started = time.perf_counter()
    response = client.post(
        "/v1/query",
        json={"collection": "ask", "question": question, "mode": "steps", "use_cache": False},
    )
    response.raise_for_status()
    return time.perf_counter() - started


def upload(client: httpx.Client, collection: str, files: list[tuple[str, bytes]]) -> str:
    client.post("/admin/v1/collections", json={"name": collection}).raise_for_status()
    job = client.post(
        f"/admin/v1/collections/{collection}/documents", files=[("files", f) for f in files]
    )
    job.raise_for_status()
    return str(job.json()["job_id"])


def job_running(client: httpx.Client, job_id: str) -> bool:
    job: dict[str, Any] = client.get(f"/admin/v1/jobs/{job_id}").json()
    return job["status"] in ("queued", "running")


def joined_files(sources: list[Path], count: int, join: int, order: int) -> list[tuple[str, bytes]]:
    """`count` files, each `join` of `sources` one after another (their order set by
    `order`), named bulk-<order>-<n>.md."""
    files = []
    for n in range(count):
        # File n starts with source n; the second upload strides differently: no two alike.
        parts = [sources[(n + k * 31 * order) % len(sources)] for k in range(join)]
        text = "\n\n".join(p.read_text() for p in parts)
        files.append((f"bulk-{order}-{n}.md", text.encode()))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--join", type=int, default=40, help="eval-dev entries per file")
    args = parser.parse_args()

    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines()][: args.questions]
    gold = {row["doc"] for row in rows}
    others = [p for p in sorted(CORPUS.glob("*.md")) if p.name not in gold]
    data_dir = tempfile.mkdtemp(prefix="rag-upload-")
    port = free_port()
    env = dict(os.environ, RAG_DATA_DIR=data_dir, TOKENIZERS_PARALLELISM="false")
    env.update(RAG_RATE_LIMIT__QUERY_PER_MINUTE="0", RAG_RATE_LIMIT__ADMIN_PER_MINUTE="0")
    env.pop("RAG_GENERATION__LLAMACPP__MODEL", None)  # the default model
    admin = rag(env, "keys", "create", "--role", "admin", "--name", "bench-admin")
    server, log = start_server(env, data_dir, port)
    url = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=900
        )
        wait_ready(client, server, log)

        files = [CORPUS / name for name in sorted(gold)] + others[:20]
        wait_job(client, upload(client, "ask", [(p.name, p.read_bytes()) for p in files]))
        ask(client, rows[0]["question"])  # warm: the model loaded, the first prompt cached
        alone = [ask(client, row["question"]) for row in rows]

        sources = others[20:]
        bulk = joined_files(sources, args.files, args.join, 1)
        started = time.perf_counter()
        wait_job(client, upload(client, "bulk", bulk), timeout=3600)
        upload_alone = time.perf_counter() - started

        started = time.perf_counter()
        job_id = upload(client, "bulk-2", joined_files(sources, args.files, args.join, 7))
        during: list[float] = []
        overlapped = 0
        time.sleep(5)  # the upload is being encoded
        for row in rows:
            overlapped += job_running(client, job_id)
            during.append(ask(client, row["question"]))
        job = wait_job(client, job_id, timeout=3600)
        upload_during = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)

    size = sum(len(b) for _, b in bulk) / len(bulk) / 1000
    print(
        f"{len(rows)} eval-dev questions, steps mode, uncached; "
        f"uploads of {len(bulk)} files of {size:.0f} kB"
    )
    print("| question | alone s | during the upload s |")
    print("| --- | ---: | ---: |")
    for row, a, d in zip(rows, alone, during, strict=True):
        print(f"| {row['question']} | {a:.1f} | {d:.1f} |")
    ratio = statistics.median(during) / statistics.median(alone)
    print(
        f"median {statistics.median(alone):.1f} s alone, {statistics.median(during):.1f} s during "
        f"the upload ({ratio:.2f}×); {overlapped}/{len(rows)} asked while it was still ingesting"
    )
    print(
        f"upload: {upload_alone:.0f} s alone, {upload_during:.0f} s with the answers "
        f"({job['status']}, {job['progress']['done']}/{job['progress']['total']} documents)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
