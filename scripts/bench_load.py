"""Bounded load test (not part of the test suite): `rag serve` on 127.0.0.1 with API keys, N
concurrent cached queries while an ingestion job runs in another collection; reports errors,
latency percentiles and throughput. Exits 1 if any request failed.

    .venv/bin/python scripts/bench_load.py [--requests 200] [--concurrency 200] [--ingest 30]

Runs the embedded default (SQLite, in-process ingestion) in a temporary data directory unless
RAG_DATABASE__URL / RAG_BROKER__URL are set in the environment. Rate limits are lifted for the
run (RAG_RATE_LIMIT__*=0): this measures the service, not the limiter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "eval-dev" / "corpus"
QUESTION = "What does BIOS stand for?"
BIOS = "foldoc-basic-input-output-system-20.md"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rag(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def start_server(
    env: dict[str, str], data_dir: str, port: int
) -> tuple[subprocess.Popen[bytes], Path]:
    """`rag serve` on 127.0.0.1:`port`, its output in `data_dir`/serve.log."""
    log = Path(data_dir) / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return server, log


def wait_ready(
    client: httpx.Client, server: subprocess.Popen[bytes], log: Path, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError(f"the server did not become ready; see {log}")
        time.sleep(1)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/admin/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} did not finish")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def fire(
    url: str, key: str, collection: str, requests: int, concurrency: int
) -> tuple[list[float], list[str], int, float]:
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    cached = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=120, limits=limits
    ) as client:

        async def one() -> None:
            nonlocal cached
            async with slots:
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/query", json={"collection": collection, "question": QUESTION}
                    )
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    return
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:120]}")
                elif response.json().get("cached"):
                    cached += 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        wall = time.perf_counter() - started
    return latencies, errors, cached, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=30, help="documents in the ingestion job")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="rag-load-")
    port = free_port()
    env = dict(os.environ)
    env.update(
        RAG_DATA_DIR=data_dir,
        RAG_RATE_LIMIT__QUERY_PER_MINUTE="0",
        RAG_RATE_LIMIT__ADMIN_PER_MINUTE="0",
        TOKENIZERS_PARALLELISM="false",
    )
    admin = rag(env, "keys", "create", "--role", "admin", "--name", "bench-admin")
    query = rag(env, "keys", "create", "--role", "query", "--name", "bench-query")
    server, log = start_server(env, data_dir, port)
    url = f"http://127.0.0.1:{port}"
    try:
        admin_client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=300
        )
        wait_ready(admin_client, server, log)

        files = sorted(CORPUS.glob("*.md"))
        for name in ("load", "load-ingest"):
            admin_client.post("/admin/v1/collections", json={"name": name}).raise_for_status()
        upload = admin_client.post(
            "/admin/v1/collections/load/documents",
            files=[("files", (BIOS, (CORPUS / BIOS).read_bytes()))],
        )
        wait_job(admin_client, upload.json()["job_id"])
        warm = time.perf_counter()
        first = admin_client.post("/v1/query", json={"collection": "load", "question": QUESTION})
        first.raise_for_status()
        print(f"first (uncached) query: {time.perf_counter() - warm:.2f}s")

        # The ingestion job goes to another collection: a new document in "load" itself would
        # (correctly) invalidate the cached answer.
        others = [p for p in files if p.name != BIOS][: args.ingest]
        job = admin_client.post(
            "/admin/v1/collections/load-ingest/documents",
            files=[("files", (p.name, p.read_bytes())) for p in others],
        )
        job.raise_for_status()
        latencies, errors, cached, wall = asyncio.run(
            fire(url, query, "load", args.requests, args.concurrency)
        )
        ingest = wait_job(admin_client, job.json()["job_id"])
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"requests: {args.requests} at concurrency {args.concurrency}; errors: {len(errors)}")
    for e in errors[:10]:
        print(f"  {e}")
    if latencies:
        print(
            f"latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms; cached {cached}/{args.requests}"
        )
    print(f"throughput {args.requests / wall:.1f} req/s over {wall:.2f}s")
    print(
        f"ingestion job: {ingest['status']}, {ingest['progress']['done']}/"
        f"{ingest['progress']['total']} documents, {len(ingest['errors'])} errors"
    )
    return 1 if errors or ingest["status"] != "succeeded" else 0


if __name__ == "__main__":
    sys.exit(main())
