"""How well retrieval alone tells an answerable question from one the documents cannot answer:
the check the pipeline runs before the reasoning steps (generation/reasoning/answerability.py).

    .venv/bin/python scripts/bench_answerability.py
        [--datasets squad2,squad,hotpotqa,../shared/eval-dev] [--questions 200]
        [--max-documents 60] [--holdout 0.2] [--split train]

Each set is loaded as `rag bench` loads it (train split by default: this chooses a setting),
with the gold documents of `--holdout` of its answerable questions withheld ("left out"). Its
documents are ingested into an in-process embedded service and every question is searched
through `/v1/search` (the default hybrid retrieval, top 5), so the texts and cosines are the
ones the pipeline sees. For each pair of thresholds (share of the question's words found in
the passages, nearest cosine) it prints the share declined of the unanswerable and left-out
questions, and the false abstention: the share declined of answerable questions whose gold
document was retrieved. No LLM is asked.
"""

from __future__ import annotations

import argparse
import itertools
import uuid
from pathlib import Path
from typing import Any

from app.cli import http
from benchmark.datasets import load_benchmark
from benchmark.runner import BenchRunner
from core.settings import PipelineSettings
from generation.reasoning.answerability import assess

COVERAGES = (0.5, 0.6, 0.67, 0.75, 0.8, 1.0)
SIMILARITIES = (0.3, 0.35, 0.4, 0.45, 0.5)
PAIR_COVERAGES = (0.3, 0.4, 0.5, 0.6)
PAIR_SIMILARITIES = (0.5, 0.55, 0.6)


def share(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.2f}" if flags else "–"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="squad2,squad,hotpotqa,../shared/eval-dev")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--max-documents", type=int, default=60)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--split", default="train", choices=("train", "benchmark"))
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    default = PipelineSettings()
    chosen = (default.answerability_min_coverage, default.answerability_min_similarity)
    grid: list[tuple[str, float, float, dict[str, Any]]] = [
        ("", c, sim, {}) for c, sim in itertools.product(COVERAGES, SIMILARITIES)
    ]
    grid += [("numbers", *chosen, {"check_numbers": True})]
    grid += [
        (f"numbers, pairs < {pc} and cosine < {ps}", *chosen, rules)
        for pc, ps in itertools.product(PAIR_COVERAGES, PAIR_SIMILARITIES)
        for rules in [{"check_numbers": True, "min_pair_coverage": pc, "pair_similarity": ps}]
    ]
    defaults = {
        "check_numbers": default.answerability_numbers,
        "min_pair_coverage": default.answerability_min_pair_coverage,
        "pair_similarity": default.answerability_pair_similarity,
    }
    print(
        "| set | coverage < | cosine < | other rules | declined (unanswerable) "
        "| declined (left out) | false abstention |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with http.connect(None, "") as client:
        for name in args.datasets.split(","):
            bench = load_benchmark(
                name,
                split=args.split,
                questions=args.questions,
                max_documents=args.max_documents,
                holdout=args.holdout,
            )
            collection = f"answerability-{uuid.uuid4().hex[:8]}"
            BenchRunner(client, collection, top_k=args.top_k, modes=()).ingest(bench)
            rows: list[tuple[Any, list[str], list[float | None], bool]] = []
            for q in bench.questions:
                search = {"collection": collection, "query": q.question, "top_k": args.top_k}
                hits = client.post("/v1/search", json=search).json()["hits"]
                gold_found = bool({h["filename"] for h in hits} & set(q.gold_docs))
                rows.append(
                    (q, [h["text"] for h in hits], [h.get("similarity") for h in hits], gold_found)
                )
            for label, coverage, similarity, rules in grid:
                declined: dict[str, list[bool]] = {"unanswerable": [], "left_out": [], "ok": []}
                for q, texts, sims, gold_found in rows:
                    verdict = assess(q.question, texts, sims, coverage, similarity, **rules)
                    if q.kind != "answerable":
                        declined[q.kind].append(not verdict.answerable)
                    elif gold_found:
                        declined["ok"].append(not verdict.answerable)
                is_default = (coverage, similarity) == chosen and rules == defaults
                marker = " (default)" if is_default else ""
                print(
                    f"| {Path(name).name} | {coverage} | {similarity} | {label or '–'}{marker} "
                    f"| {share(declined['unanswerable'])} | {share(declined['left_out'])} "
                    f"| {share(declined['ok'])} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
