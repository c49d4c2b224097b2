"""Query-path benchmark for the self-reasoning pipeline (embedded llama.cpp backend).

Measures, in one run:
- pipeline overhead = total time - generator time, p50 (self-reasoning, cache bypassed);
- prompt tokens the generator had to compute (prompt - reused prefix) for the three steps vs
  one-call RAG on the same questions;
- cached /v1/query p50 and throughput vs a bare FastAPI endpoint doing the same Redis GET;
- with --concurrency N: uncached one-call queries sent one at a time, then from N clients at
  once, throughput and p95 of each (the embedded backend generates one answer at a time).

    .venv/bin/python scripts/bench_query.py [--questions N] [--docs N] [--concurrency N]
        [--cached-only] [--set RAG_NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from bench_common import (
    REPO_ROOT,
    VENV_BIN,
    Service,
    checked,
    free_port,
    latency_summary,
    log,
    markdown_table,
    service_env,
    services,
    wait_ready,
    write_results,
)

CACHE_URL = "redis://127.0.0.1:6379/12"
BARE_APP = """
import redis.asyncio as redis
from fastapi import FastAPI
from fastapi.responses import Response

app = FastAPI()
client = redis.Redis.from_url("{url}")


@app.post("/bare")
async def bare() -> Response:
    raw = await client.get("{key}")
    return Response(raw, media_type="application/json")
"""


def timed_posts(
    client: httpx.Client, path: str, bodies: list[dict[str, Any]], threads: int, digits: int = 3
) -> dict[str, float]:
    """POST every body from `threads` clients at once; requests per second and latency."""

    def one(body: dict[str, Any]) -> float:
        started = time.perf_counter()
        checked(client.post(path, json=body))
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(one, bodies))
    elapsed = time.perf_counter() - started
    return {"rps": round(len(bodies) / elapsed, digits), **latency_summary(latencies)}


def load(client: httpx.Client, total: int, body: dict[str, Any], path: str) -> dict[str, float]:
    """`total` POSTs of the same body from 8 threads."""
    return timed_posts(client, path, [body] * total, 8, digits=1)


def uncached(
    client: httpx.Client, questions: list[dict[str, Any]], mode: str, threads: int
) -> dict[str, float]:
    """Every question once, cache bypassed, from `threads` clients."""
    bodies = [
        {"collection": "bench", "question": q["question"], "mode": mode, "use_cache": False}
        for q in questions
    ]
    return timed_posts(client, "/v1/query", bodies, threads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT.parent / "shared/eval-dev/corpus")
    parser.add_argument(
        "--questions-file", type=Path, default=REPO_ROOT.parent / "shared/eval-dev/questions.jsonl"
    )
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument(
        "--embedder", default="", help="the collection's embedder (default: the service's)"
    )
    parser.add_argument(
        "--cached-only", action="store_true", help="skip the LLM runs; only the cached path"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="also send the questions' uncached one-call queries from this many clients at once",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="RAG_NAME=VALUE",
        help="a setting for the service (repeatable), e.g. RAG_DATABASE__STATE_CACHE=false",
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    rows = [
        json.loads(line) for line in args.questions_file.read_text().splitlines() if line.strip()
    ]
    questions = rows[: args.questions]
    docs = sorted(
        {q["doc"] for q in questions}
        | {p.name for p in sorted(args.corpus.glob("*.md"))[: args.docs]}
    )
    cache = redis.Redis.from_url(CACHE_URL)
    cache.flushdb()
    results: dict[str, Any] = {"questions": len(questions), "documents": len(docs)}

    with tempfile.TemporaryDirectory() as tmp, services() as started:
        env = service_env(RAG_DATA_DIR=tmp, RAG_REDIS__URL=CACHE_URL, **overrides)
        port = free_port()
        api = Service(
            "api",
            [
                str(VENV_BIN / "uvicorn"),
                "app.main:create_app",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env,
            Path(tmp),
        )
        started.append(api)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        wait_ready(client, [api], ignore=frozenset())
        collection: dict[str, Any] = {"name": "bench"}
        if args.embedder:
            collection["embedder"] = args.embedder
        results["embedder"] = args.embedder or "default"
        checked(client.post("/admin/v1/collections", json=collection))
        files = [("files", (name, (args.corpus / name).read_bytes())) for name in docs]
        job = checked(client.post("/admin/v1/collections/bench/documents", files=files))["job_id"]
        while checked(client.get(f"/admin/v1/jobs/{job}"))["status"] not in ("succeeded", "failed"):
            time.sleep(0.5)

        per_mode: dict[str, list[dict[str, Any]]] = {"steps": [], "one_call": []}
        # Mode by mode, so no mode runs on a prefix the other just left in the KV cache.
        for mode in [] if args.cached_only else per_mode:
            for q in questions:
                body = {
                    "collection": "bench",
                    "question": q["question"],
                    "mode": mode,
                    "use_cache": False,
                }
                per_mode[mode].append(checked(client.post("/v1/query", json=body)))
        steps = per_mode["steps"] or [
            {"timings_ms": {"total": 0.0, "generator": 0.0, "retrieve": 0.0}}
        ]
        overhead = [r["timings_ms"]["total"] - r["timings_ms"]["generator"] for r in steps]
        retrieve = [r["timings_ms"]["retrieve"] for r in steps]
        computed = {
            mode: sum(r["usage"]["prompt_tokens"] - r["usage"]["cached_prompt_tokens"] for r in rs)
            for mode, rs in per_mode.items()
        }
        results["overhead_ms"] = latency_summary(overhead)
        results["retrieve_ms"] = latency_summary(retrieve)
        results["overhead_without_retrieve_p50_ms"] = round(
            statistics.median(o - r for o, r in zip(overhead, retrieve, strict=True)), 2
        )
        results["computed_prompt_tokens"] = computed
        results["prompt_tokens_total"] = {
            mode: sum(r["usage"]["prompt_tokens"] for r in rs) for mode, rs in per_mode.items()
        }
        results["computed_ratio_steps_vs_one_call"] = round(
            computed["steps"] / max(1, computed["one_call"]), 3
        )

        if args.concurrency > 1:
            one_at_a_time = uncached(client, questions, "one_call", 1)
            together = uncached(client, questions, "one_call", args.concurrency)
            results["uncached_one_call"] = {
                "one_at_a_time": one_at_a_time,
                f"concurrency_{args.concurrency}": together,
                "throughput_ratio": round(together["rps"] / one_at_a_time["rps"], 3),
            }

        cached_body = {"collection": "bench", "question": questions[0]["question"]}
        checked(client.post("/v1/query", json=cached_body))
        assert checked(client.post("/v1/query", json=cached_body))["cached"] is True
        key = next(k.decode() for k in cache.scan_iter("rag:query:*"))
        app_dir = Path(tmp) / "bare"
        app_dir.mkdir()
        (app_dir / "bare_app.py").write_text(BARE_APP.format(url=CACHE_URL, key=key))
        bare_port = free_port()
        bare = Service(
            "bare",
            [
                str(VENV_BIN / "uvicorn"),
                "bare_app:app",
                "--app-dir",
                str(app_dir),
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
            ],
            env,
            Path(tmp),
        )
        started.append(bare)
        bare_client = httpx.Client(base_url=f"http://127.0.0.1:{bare_port}", timeout=30)
        for _ in range(100):
            try:
                bare_client.post("/bare")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        for target, c, path in ((("service", client, "/v1/query")), ("bare", bare_client, "/bare")):
            load(c, 100, cached_body, path)  # warm-up
            sequential = [
                (time.perf_counter(), checked(c.post(path, json=cached_body)), time.perf_counter())
                for _ in range(300)
            ]
            results[f"cached_{target}"] = {
                "sequential": latency_summary([(end - s) * 1000 for s, _, end in sequential]),
                "concurrent": load(c, 1000, cached_body, path),
            }
        results["cached_throughput_ratio"] = round(
            results["cached_service"]["concurrent"]["rps"]
            / results["cached_bare"]["concurrent"]["rps"],
            3,
        )
    cache.flushdb()
    path = write_results("query", results)
    print(
        markdown_table(
            ["measure", "value"],
            [
                ["pipeline overhead p50 (total - generator), ms", results["overhead_ms"]["p50_ms"]],
                ["  of which retrieval p50, ms", results["retrieve_ms"]["p50_ms"]],
                [
                    "  overhead without retrieval p50, ms",
                    results["overhead_without_retrieve_p50_ms"],
                ],
                ["computed prompt tokens, three steps", computed["steps"]],
                ["computed prompt tokens, one-call RAG", computed["one_call"]],
                ["ratio steps / one-call", results["computed_ratio_steps_vs_one_call"]],
                ["cached query p50, ms", results["cached_service"]["sequential"]["p50_ms"]],
                ["bare Redis GET endpoint p50, ms", results["cached_bare"]["sequential"]["p50_ms"]],
                ["cached query throughput, req/s", results["cached_service"]["concurrent"]["rps"]],
                ["bare endpoint throughput, req/s", results["cached_bare"]["concurrent"]["rps"]],
                ["throughput ratio", results["cached_throughput_ratio"]],
                *uncached_rows(results, args.concurrency),
            ],
        )
    )
    log(f"results in {path}")


def uncached_rows(results: dict[str, Any], concurrency: int) -> list[list[Any]]:
    measured = results.get("uncached_one_call")
    if not measured:
        return []
    alone, together = measured["one_at_a_time"], measured[f"concurrency_{concurrency}"]
    return [
        ["uncached one-call, one at a time: req/s", alone["rps"]],
        ["  p50 / p95 ms", f"{alone['p50_ms']} / {alone['p95_ms']}"],
        [f"uncached one-call, {concurrency} at once: req/s", together["rps"]],
        ["  p50 / p95 ms", f"{together['p50_ms']} / {together['p95_ms']}"],
        ["  throughput ratio", measured["throughput_ratio"]],
    ]


if __name__ == "__main__":
    main()
