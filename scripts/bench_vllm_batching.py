"""Continuous batching on this CPU: steps queries through the service at 1, 4 and 8 at once,
answered by vLLM (`scripts/vllm-cpu.sh`, the `openai` backend with
RAG_GENERATION__OPENAI__MAX_CONCURRENCY set to the level) and by the embedded llama.cpp backend,
same model, same collection, same questions, in one run (not part of the test suite).

    .venv/bin/python scripts/bench_vllm_batching.py [--levels 1,4,8] [--queries 8]
        [--model smollm2-135m-instruct] [--rounds 1] [--llamacpp-threads 1]

Each level runs its questions on each backend in turn (vLLM, then llama.cpp), so the two are
measured minutes apart on the same machine; with --rounds N the whole sweep repeats. The cache
is bypassed (`use_cache: false`), so every query is generated, and vLLM's prefix cache is
emptied before each level (the three steps of a query still share their prefix). Prints
queries per minute per backend and level and the ratios (vLLM at N over vLLM at 1: what
batching gains; vLLM over llama.cpp at each level), and writes them to bench-results/. Needs
Postgres and Redis on 127.0.0.1 (as the tests do); scripts/vllm-cpu.sh installs vLLM on first
use. llama.cpp runs on --llamacpp-threads threads (1 by default, the one core vLLM computes
on).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from bench_common import (
    BROKER_URL,
    REPO_ROOT,
    Service,
    checked,
    free_port,
    log,
    machine_info,
    markdown_table,
    migrate,
    percentile,
    service_env,
    services,
    start_api,
    start_worker,
    temp_database,
    wait_ready,
    write_results,
)

EVAL_DEV = REPO_ROOT.parent / "shared" / "eval-dev"
WARM_UP = "What is this collection about?"


def eval_dev_questions(count: int) -> list[dict[str, Any]]:
    lines = (EVAL_DEV / "questions.jsonl").read_text().splitlines()
    questions = [json.loads(line) for line in lines if line.strip()]
    return questions[:count]


def start_vllm(model: str, log_dir: Path) -> tuple[Service, str]:
    port = free_port()
    vllm = Service(
        "vllm",
        [str(REPO_ROOT / "scripts" / "vllm-cpu.sh"), "--port", str(port), "--model", model],
        # Dev mode serves POST /reset_prefix_cache, used between levels.
        dict(os.environ) | {"VLLM_SERVER_DEV_MODE": "1"},
        log_dir,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 1500  # the first run installs vLLM
    while time.monotonic() < deadline:
        vllm.check_alive()
        try:
            if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                log(f"vLLM answers after {time.perf_counter() - vllm.started:.0f} s")
                return vllm, url
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise TimeoutError(f"vLLM did not answer:\n{vllm.tail()}")


def ingest(base_url: str, docs: list[str]) -> str:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        checked(client.post("/admin/v1/collections", json={"name": "batching"}))
        corpus = EVAL_DEV / "corpus"
        files = [("files", (name, (corpus / name).read_bytes())) for name in docs]
        job = checked(client.post("/admin/v1/collections/batching/documents", files=files))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = checked(client.get(f"/admin/v1/jobs/{job['job_id']}"))
            if status["status"] in ("succeeded", "failed", "cancelled"):
                if status["status"] != "succeeded":
                    raise RuntimeError(f"ingestion {status['status']}: {status}")
                return "batching"
            time.sleep(0.5)
    raise TimeoutError("ingestion did not finish")


def ask(client: httpx.Client, question: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    body = checked(
        client.post(
            "/v1/query",
            json={
                "collection": "batching",
                "question": question,
                "mode": "steps",
                "use_cache": False,
            },
        )
    )
    return time.perf_counter() - started, body


def measure(base_url: str, questions: list[str], level: int) -> dict[str, Any]:
    """`questions` through the API from `level` clients at once."""
    with httpx.Client(base_url=base_url, timeout=1800) as client:
        pool = ThreadPoolExecutor(level)
        try:
            started = time.perf_counter()
            results = list(pool.map(lambda q: ask(client, q), questions))
            wall = time.perf_counter() - started
        finally:
            # On Ctrl-C, wait only for the queries in flight.
            pool.shutdown(cancel_futures=True)
    latencies = [seconds for seconds, _ in results]
    completion = sum(body["usage"]["completion_tokens"] for _, body in results)
    prompt = sum(body["usage"]["prompt_tokens"] for _, body in results)
    cached = sum(body["usage"].get("cached_prompt_tokens", 0) for _, body in results)
    return {
        "queries": len(questions),
        "wall_s": round(wall, 1),
        "queries_per_min": round(len(questions) / wall * 60, 2),
        "p50_s": round(percentile(latencies, 50), 1),
        "max_s": round(max(latencies), 1),
        "completion_tokens": completion,
        "completion_tokens_per_s": round(completion / wall, 1),
        "prompt_tokens": prompt,
        "cached_prompt_tokens": cached,
        "generated": sum(1 for _, body in results if body["usage"]["prompt_tokens"] > 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,4,8", help="queries at once (comma-separated)")
    parser.add_argument("--queries", type=int, default=8, help="questions per level")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="catalog model")
    parser.add_argument("--rounds", type=int, default=1, help="times to repeat the sweep")
    parser.add_argument(
        "--llamacpp-threads",
        type=int,
        default=1,
        help="llama.cpp threads (0: all cores). 1 matches vLLM, which computes on one core and "
        "keeps the other for its HTTP frontend; all cores collapse when other work shares them",
    )
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    picked = eval_dev_questions(args.queries)
    questions = [q["question"] for q in picked]
    docs = sorted({q["doc"] for q in picked})
    info = machine_info()
    runs: list[dict[str, Any]] = []

    with (
        tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp,
        temp_database("bench_vllm") as url,
        services() as procs,
    ):
        migrate(url)
        log_dir = Path(tmp)
        vllm, vllm_url = start_vllm(args.model, log_dir)
        procs.append(vllm)
        env = service_env(
            RAG_DATABASE__URL=url,
            RAG_BROKER__URL=BROKER_URL,
            RAG_DATA_DIR=f"{tmp}/data",
            RAG_GENERATION__LLAMACPP__MODEL=args.model,
            RAG_GENERATION__LLAMACPP__MODELS_DIR=str(REPO_ROOT / "models"),
            RAG_GENERATION__LLAMACPP__N_THREADS=str(args.llamacpp_threads),
            RAG_GENERATION__ADAPTERS_DIR="",
            RAG_RATE_LIMIT__QUERY_PER_MINUTE="0",
            RAG_RATE_LIMIT__ADMIN_PER_MINUTE="0",
        )
        procs.append(start_worker(env, log_dir))

        def api(backend: str, level: int) -> tuple[Service, str]:
            extra = {"RAG_GENERATION__BACKEND": backend}
            if backend == "openai":
                extra |= {
                    "RAG_GENERATION__OPENAI__BASE_URL": vllm_url,
                    "RAG_GENERATION__OPENAI__MODEL": args.model,
                    "RAG_GENERATION__OPENAI__STRUCTURED_OUTPUT": "json_schema",
                    "RAG_GENERATION__OPENAI__MAX_CONCURRENCY": str(level),
                    "RAG_GENERATION__OPENAI__TIMEOUT_S": "1800",
                }
            service, base_url = start_api(env | extra, log_dir, f"api-{backend}-{level}")
            with httpx.Client(base_url=base_url) as client:
                wait_ready(client, [service, *procs], ignore=frozenset())
            return service, base_url

        for round_no in range(args.rounds):
            for level in levels:
                for backend in ("openai", "llamacpp"):
                    service, base_url = api(backend, level)
                    try:
                        if not runs:
                            ingest(base_url, docs)
                        with httpx.Client(base_url=base_url, timeout=1800) as client:
                            ask(client, WARM_UP)  # loads the model / opens connections
                        if backend == "openai":
                            # Every level asks the same questions: without this, vLLM would
                            # find the earlier levels' prompts in its prefix cache.
                            root = vllm_url.removesuffix("/v1")
                            httpx.post(f"{root}/reset_prefix_cache", timeout=60)
                        result = measure(base_url, questions, level)
                    except Exception:
                        log(f"--- {service.name} log tail ---\n{service.tail()}")
                        raise
                    finally:
                        service.stop()
                    name = "vllm" if backend == "openai" else "llamacpp"
                    runs.append({"round": round_no, "backend": name, "level": level, **result})
                    log(f"round {round_no} {name} x{level}: {result}")

    def qpm(backend: str, level: int) -> float:
        values = [
            float(r["queries_per_min"])
            for r in runs
            if (r["backend"], r["level"]) == (backend, level)
        ]
        return sum(values) / len(values)

    rows = [
        [
            r["round"],
            r["backend"],
            r["level"],
            r["queries"],
            r["wall_s"],
            r["queries_per_min"],
            r["p50_s"],
            r["completion_tokens_per_s"],
            r["cached_prompt_tokens"],
        ]
        for r in runs
    ]
    print(
        markdown_table(
            [
                "round",
                "backend",
                "at once",
                "queries",
                "wall s",
                "queries/min",
                "p50 s",
                "completion tok/s",
                "cached prompt tok",
            ],
            rows,
        )
    )
    ratios = [
        [
            level,
            round(qpm("vllm", level) / qpm("vllm", levels[0]), 2),
            round(qpm("llamacpp", level) / qpm("llamacpp", levels[0]), 2),
            round(qpm("vllm", level) / qpm("llamacpp", level), 2),
        ]
        for level in levels
    ]
    print()
    print(
        markdown_table(
            [
                "at once",
                f"vLLM / vLLM at {levels[0]}",
                f"llama.cpp / llama.cpp at {levels[0]}",
                "vLLM / llama.cpp",
            ],
            ratios,
        )
    )
    path = write_results(
        "vllm-batching",
        {"machine": info, "model": args.model, "runs": runs, "ratios": ratios, "args": vars(args)},
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
