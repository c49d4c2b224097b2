"""The answer critic (generation/critic.py) against the rules it would replace, on what
retrieval returns, without the LLM: abstention, the evidence step's candidates, and the rerank
of retrieved chunks. Also a cheap learned combiner of today's signals (cosine, word coverage,
numbers, length; logistic regression on the critic's own training pairs), so the choice of a
cross-encoder is measured.

    .venv/bin/python scripts/bench_critic.py [--datasets squad2,squad,hotpotqa,../shared/eval-dev]
        [--questions 200] [--max-documents 60] [--holdout 0.2] [--critic DIR] [--json OUT]

Each set is loaded as `rag bench` loads it, train split (this chooses thresholds and keeps or
removes rules; the critic never trained on these questions: training/critic_data.py), with the
gold documents of `--holdout` of its answerable questions withheld ("left out"). Documents are
ingested into an in-process embedded service and each question searched through `/v1/search`
(default hybrid retrieval, top 10). Reported, with paired bootstrap 95% intervals over the
questions (benchmark/comparison.py's method) for critic − rule:

- abstention over the top 5 (what the pipeline sees): the share declined of unanswerable and
  left-out questions, and the false abstention (answerable, gold document retrieved, declined).
  Rule: generation/reasoning/answerability.py as it was at RULES_COMMIT (it is gone), with
  its settings then; critic: no sentence of the top 5 at or above the threshold; a grid;
- evidence candidates: the share of answerable questions whose passages hold a gold sentence
  (benchmark/scoring.py `citation_is_precise`) with one among the first 1 and 4 candidates:
  the BM25 + reading-order ranking (evidence_ranking.py at RULES_COMMIT) against the critic's;
- rerank: the gold document among the first 3 and 5 chunks: hybrid order against the top 10
  reordered by the critic's best sentence.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import types
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from app.cli import http
from benchmark.datasets import BenchQuestion, load_benchmark
from benchmark.runner import BenchRunner
from benchmark.scoring import citation_is_precise
from core.settings import Settings
from generation.critic import SHIPPED, AnswerCritic
from generation.reasoning.evidence_ranking import tokenize
from generation.reasoning.prompts import make_passages
from generation.reasoning.values import Passage
from retrieval.embedders import EmbedderPool
from retrieval.search import Hit
from training.critic_data import Pair, critic_pairs

# The last commit with the rules the critic replaced: the word-overlap answerability check and
# the BM25 + reading-order evidence ranking.
RULES_COMMIT = "6d2ac30"
# Its settings then (PipelineSettings.answerability_*).
RULE_SETTINGS: dict[str, Any] = {
    "min_coverage": 0.75,
    "min_similarity": 0.45,
    "min_pair_coverage": 0.4,
    "pair_similarity": 0.55,
    "check_numbers": True,
}
THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TOP = 5  # passages the pipeline reasons over
RERANK_FROM = 10


def rules_module(path: str, ref: str = RULES_COMMIT) -> types.ModuleType:
    """A module as it was at commit `ref` (the rules the critic replaced are gone from the
    tree); it must import only what the tree still has."""
    source = subprocess.run(
        ["git", "show", f"{ref}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    name = f"rules_{ref}_" + Path(path).stem
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, f"{ref}:{path}", "exec"), module.__dict__)  # noqa: S102 - our own code
    return module


ranking = rules_module("generation/reasoning/evidence_ranking.py")
sys.modules["generation.reasoning.evidence_ranking"] = ranking  # the old rule imports it
answerability = rules_module("generation/reasoning/answerability.py")


@dataclass
class Row:
    q: BenchQuestion
    hits: list[Hit]
    passages: list[Passage]
    critic: list[list[float]]  # per passage, per sentence
    combiner: list[list[float]]
    gold: list[list[bool]]  # per passage, per sentence: a gold sentence


def paired(first: Sequence[float], second: Sequence[float], rounds: int = 10_000) -> str:
    """mean(second − first) and its 95% paired bootstrap interval, as a table cell."""
    diffs = [b - a for a, b in zip(first, second, strict=True)]
    if not diffs:
        return "–"
    rng = random.Random(0)  # noqa: S311 - seeded resampling, not security
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    low, high = means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]
    return f"{sum(diffs) / n:+.3f} [{low:+.3f}, {high:+.3f}]"


def mean(values: Sequence[float]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "–"


# The combiner --------------------------------------------------------------------------------


class Combiner:
    """Logistic regression over today's signals for one (question, sentence)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._embed = embed
        self.weights = np.zeros(6)

    def features(self, question: str, sentences: list[str]) -> np.ndarray:
        vectors = self._embed([question, *sentences])
        cosine = vectors[1:] @ vectors[0]
        wanted = answerability.question_words(question)
        tokens = tokenize(sentences)
        rows = []
        for s, c, t in zip(sentences, cosine, tokens, strict=True):
            held = len(wanted & set(t))
            rows.append(
                [
                    1.0,
                    float(c),
                    held / len(wanted) if wanted else 0.0,
                    float(held),
                    float(bool(answerability.missing_numbers(question, [s]))),
                    math.log1p(len(s)),
                ]
            )
        return np.array(rows)

    def fit(self, pairs: list[Pair], l2: float = 1e-3) -> None:
        by_question: dict[str, list[Pair]] = {}
        for p in pairs:
            by_question.setdefault(p.question, []).append(p)
        x = np.vstack([self.features(q, [p.sentence for p in ps]) for q, ps in by_question.items()])
        y = np.array([p.label for ps in by_question.values() for p in ps], dtype=float)
        w = np.zeros(x.shape[1])
        for _ in range(25):  # Newton's method (IRLS)
            prob = 1 / (1 + np.exp(-(x @ w)))
            gradient = x.T @ (prob - y) + l2 * w
            hessian = (x * (prob * (1 - prob))[:, None]).T @ x + l2 * np.eye(len(w))
            w -= np.linalg.solve(hessian, gradient)
        self.weights = w

    def scores(self, question: str, sentences: list[str]) -> list[float]:
        z = self.features(question, sentences) @ self.weights
        return [float(v) for v in 1 / (1 + np.exp(-z))]


# Decisions -----------------------------------------------------------------------------------


def declines_by_score(scores: list[list[float]], threshold: float) -> bool:
    best = max((s for passage in scores[:TOP] for s in passage), default=0.0)
    return best < threshold


def declines_by_rule(row: Row) -> bool:
    top = row.hits[:TOP]
    verdict = answerability.assess(
        row.q.question, [h.text for h in top], [h.similarity for h in top], **RULE_SETTINGS
    )
    return not verdict.answerable


def declines_at(row: Row, table: Callable[[Row], list[list[float]]], threshold: float) -> bool:
    return declines_by_score(table(row), threshold)


def critic_of(row: Row) -> list[list[float]]:
    return row.critic


def critic_or_rule(row: Row, threshold: float) -> bool:
    return declines_at(row, critic_of, threshold) or declines_by_rule(row)


def gold_retrieved(row: Row) -> bool:
    return bool({h.filename for h in row.hits[:TOP]} & set(row.q.gold_docs))


def abstention(rows: list[Row], decide: Callable[[Row], bool]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"unanswerable": [], "left_out": [], "false": []}
    for row in rows:
        declined = float(decide(row))
        if row.q.kind != "answerable":
            out[row.q.kind].append(declined)
        elif gold_retrieved(row):
            out["false"].append(declined)
    return out


def evidence_hits(
    rows: list[Row], order: Callable[[Row], list[tuple[int, int]]], k: int
) -> list[float]:
    """Per answerable question whose top passages hold a gold sentence: one among the first k."""
    out = []
    for row in rows:
        if row.q.kind != "answerable" or not any(any(g) for g in row.gold[:TOP]):
            continue
        first = order(row)[:k]
        out.append(float(any(row.gold[p][i] for p, i in first)))
    return out


def service_order(row: Row) -> list[tuple[int, int]]:
    passages = row.passages[:TOP]
    ids = ranking.ranked_sentence_ids(row.q.question, passages)
    where = {
        p.sentence_id(i): (n, i) for n, p in enumerate(passages) for i in range(len(p.sentences))
    }
    return [where[i] for i in ids]


def score_order(
    scores: Callable[[Row], list[list[float]]],
) -> Callable[[Row], list[tuple[int, int]]]:
    def order(row: Row) -> list[tuple[int, int]]:
        table = scores(row)[:TOP]
        cells = [(p, i) for p, passage in enumerate(table) for i in range(len(passage))]
        return sorted(cells, key=lambda c: (-table[c[0]][c[1]], c))

    return order


def rerank_hits(rows: list[Row], rank: Callable[[Row], list[int]], k: int) -> list[float]:
    out = []
    for row in rows:
        if row.q.kind != "answerable" or not row.q.gold_docs:
            continue
        if not {h.filename for h in row.hits} & set(row.q.gold_docs):
            continue  # not among the candidates: no rerank can find it
        out.append(float(any(row.hits[i].filename in row.q.gold_docs for i in rank(row)[:k])))
    return out


def critic_rerank(row: Row) -> list[int]:
    best = [max(p, default=0.0) for p in row.critic]
    return sorted(range(len(row.hits)), key=lambda i: (-best[i], i))


# The run -------------------------------------------------------------------------------------


def rows_of(
    client: Any, name: str, args: argparse.Namespace, critic: AnswerCritic, combiner: Combiner
) -> list[Row]:
    bench = load_benchmark(
        name,
        split="train",
        questions=args.questions,
        max_documents=args.max_documents,
        holdout=args.holdout,
    )
    collection = f"critic-{uuid.uuid4().hex[:8]}"
    BenchRunner(client, collection, top_k=RERANK_FROM, modes=()).ingest(bench)
    rows = []
    for q in bench.questions:
        search = {"collection": collection, "query": q.question, "top_k": RERANK_FROM}
        found = client.post("/v1/search", json=search).json()["hits"]
        hits = [
            Hit(
                int(h["chunk_id"]), str(h["document_id"]), str(h["filename"]), str(h["text"]),
                float(h["score"]), int(h["start"]), int(h["end"]), h.get("similarity"),
            )
            for h in found
        ]  # fmt: skip
        passages = make_passages(hits)
        texts = [[p.sentence_text(i) for i in range(len(p.sentences))] for p in passages]
        flat = [t for ts in texts for t in ts]
        critic_flat = critic.scores(q.question, flat) if flat else []
        combiner_flat = combiner.scores(q.question, flat) if flat else []
        rows.append(
            Row(
                q,
                hits,
                passages,
                _unflatten(critic_flat, texts),
                _unflatten(combiner_flat, texts),
                [[citation_is_precise(t, q.answers, q.gold_sentences) for t in ts] for ts in texts],
            )
        )
    return rows


def _unflatten(values: list[float], shape: list[list[str]]) -> list[list[float]]:
    out, at = [], 0
    for ts in shape:
        out.append(values[at : at + len(ts)])
        at += len(ts)
    return out


def report(name: str, rows: list[Row], critic_threshold: float) -> dict[str, Any]:
    rule = abstention(rows, declines_by_rule)
    out: dict[str, Any] = {"set": name, "questions": len(rows), "abstention": {}}
    print(f"\n## {name}: {len(rows)} questions\n")
    print("| decider | declined (unanswerable) | declined (left out) | false abstention | "
          "Δ unanswerable vs rule | Δ false vs rule |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| rule (answerability.py) | {mean(rule['unanswerable'])} | {mean(rule['left_out'])} "
          f"| {mean(rule['false'])} | | |")  # fmt: skip
    tables: list[tuple[str, Callable[[Row], list[list[float]]]]] = [
        ("critic", lambda r: r.critic),
        ("combiner", lambda r: r.combiner),
    ]
    for label, table in tables:
        for t in THRESHOLDS:
            got = abstention(rows, partial(declines_at, table=table, threshold=t))
            mark = " (shipped)" if label == "critic" and t == critic_threshold else ""
            print(
                f"| {label} < {t}{mark} | {mean(got['unanswerable'])} | {mean(got['left_out'])} "
                f"| {mean(got['false'])} | {paired(rule['unanswerable'], got['unanswerable'])} "
                f"| {paired(rule['false'], got['false'])} |",
                flush=True,
            )
            out["abstention"][f"{label}<{t}"] = {k: mean(v) for k, v in got.items()}
    for t in (0.4, 0.5):  # the two together: does the rule still earn its place?
        both = abstention(rows, partial(critic_or_rule, threshold=t))
        print(
            f"| critic < {t} or rule | {mean(both['unanswerable'])} | {mean(both['left_out'])} "
            f"| {mean(both['false'])} | {paired(rule['unanswerable'], both['unanswerable'])} "
            f"| {paired(rule['false'], both['false'])} |",
            flush=True,
        )
    out["abstention"]["rule"] = {k: mean(v) for k, v in rule.items()}
    out["questions"] = [
        {
            "id": r.q.id,
            "kind": r.q.kind,
            "gold_retrieved": gold_retrieved(r),
            "rule_declines": declines_by_rule(r),
            "critic_best": max((x for p in r.critic[:TOP] for x in p), default=0.0),
            "combiner_best": max((x for p in r.combiner[:TOP] for x in p), default=0.0),
        }
        for r in rows
    ]
    print("\n| candidates | service hit@1 | critic hit@1 | Δ | service hit@4 | critic hit@4 "
          "| Δ | combiner hit@4 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    critic_order = score_order(lambda r: r.critic)
    combiner_order = score_order(lambda r: r.combiner)
    s1, c1 = evidence_hits(rows, service_order, 1), evidence_hits(rows, critic_order, 1)
    s4, c4 = evidence_hits(rows, service_order, 4), evidence_hits(rows, critic_order, 4)
    m4 = evidence_hits(rows, combiner_order, 4)
    print(f"| {len(s1)} | {mean(s1)} | {mean(c1)} | {paired(s1, c1)} | {mean(s4)} | {mean(c4)} "
          f"| {paired(s4, c4)} | {mean(m4)} |")  # fmt: skip
    out["evidence"] = {
        "n": len(s1),
        "service@1": mean(s1),
        "critic@1": mean(c1),
        "service@4": mean(s4),
        "critic@4": mean(c4),
        "combiner@4": mean(m4),
    }
    hybrid = lambda r: list(range(len(r.hits)))  # noqa: E731
    h3, r3 = rerank_hits(rows, hybrid, 3), rerank_hits(rows, critic_rerank, 3)
    h5, r5 = rerank_hits(rows, hybrid, 5), rerank_hits(rows, critic_rerank, 5)
    print("\n| rerank | hybrid recall@3 | critic recall@3 | Δ | hybrid recall@5 "
          "| critic recall@5 | Δ |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(h3)} | {mean(h3)} | {mean(r3)} | {paired(h3, r3)} | {mean(h5)} | {mean(r5)} "
          f"| {paired(h5, r5)} |", flush=True)  # fmt: skip
    out["rerank"] = {"n": len(h3), "hybrid@3": mean(h3), "critic@3": mean(r3),
                     "hybrid@5": mean(h5), "critic@5": mean(r5)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="squad2,squad,hotpotqa,../shared/eval-dev")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--max-documents", type=int, default=60)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--critic", type=Path, default=SHIPPED)
    parser.add_argument("--combiner-pairs", type=int, default=4000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    critic = AnswerCritic(args.critic, threads=2)
    pool = EmbedderPool(Settings().embedder)
    embedder = pool.get(pool.default_id())
    combiner = Combiner(lambda texts: np.asarray(embedder.embed_documents(texts)))
    combiner.fit(critic_pairs(Path("../shared/datasets"))[: args.combiner_pairs])
    print(f"combiner weights (bias, cosine, coverage, held, number missing, log length): "
          f"{np.round(combiner.weights, 3).tolist()}")  # fmt: skip
    results = []
    with http.connect(None, "") as client:
        for name in args.datasets.split(","):
            rows = rows_of(client, name, args, critic, combiner)
            results.append(report(Path(name).name, rows, critic.threshold))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
