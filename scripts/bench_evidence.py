"""How often a sentence ranker, without the LLM, puts a gold sentence first among the retrieved
passages' sentences: the question the evidence step answers.

    .venv/bin/python scripts/bench_evidence.py [--datasets squad,squad2,hotpotqa,../shared/eval-dev]
        [--questions 100] [--max-documents 60]

Each set (train split only: this chooses a setting) is loaded as `rag bench` loads it. Its
documents are embedded whole with the default embedder, and each answerable question takes the
top 5 by cosine (a stand-in for the service's retrieval; SQuAD and HotpotQA paragraphs are about
one chunk). The candidates are the sentences of those passages, split as the prompts split them
(`generation.reasoning.prompts.make_passages`). A sentence is gold when it holds a gold answer
or is a gold supporting sentence (`citation_is_precise`, as the benchmark scores citations).
Rankers:

- dense: cosine of the question and the sentence (the same embedder);
- lexical: BM25 over the candidates, the service's tokenizer;
- order: the passages' retrieval order, then sentence order (what a model reading top-down sees);
- lexical + dense and all three: reciprocal rank fusion, k = 60;
- lexical + order: the service's weighted fusion
  (`generation.reasoning.evidence_ranking.ranked_sentence_ids`, the evidence step's candidates).

Prints hit@1..6 per ranker, over questions whose passages hold a gold sentence.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmark.datasets import load_benchmark
from benchmark.scoring import citation_is_precise
from core.settings import Settings
from generation.reasoning.evidence_ranking import bm25, ranked_sentence_ids
from generation.reasoning.prompts import make_passages
from retrieval.bm25_index import Tokenizer
from retrieval.embedders import EmbedderPool
from retrieval.search import Hit

RANKERS = ("order", "lexical", "dense", "lexical+dense", "lexical+order (service)", "all three")


def ranks(scores: list[float]) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    out = [0] * len(scores)
    for r, i in enumerate(order):
        out[i] = r
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="squad,squad2,hotpotqa,../shared/eval-dev")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--max-documents", type=int, default=60)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    pool = EmbedderPool(settings.embedder)
    embedder = pool.get(pool.default_id())
    tokenizer = Tokenizer()
    print(f"embedder {pool.default_id()}")
    ks = " | ".join(f"hit@{k}" for k in range(1, 7))
    print(f"| set | questions | gold in passages | ranker | {ks} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.datasets.split(","):
        bench = load_benchmark(
            name, split="train", questions=args.questions, max_documents=args.max_documents
        )
        names = list(bench.documents)
        doc_vectors = embedder.embed_documents([bench.documents[n] for n in names])
        asked = 0
        counted = 0
        hits: dict[str, list[int]] = {r: [0] * 6 for r in RANKERS}
        for q in bench.questions:
            if not q.answerable:
                continue
            asked += 1
            qv = embedder.embed_query(q.question)
            top = np.argsort(-(doc_vectors @ qv))[: args.top_k]
            fake = [
                Hit(int(i), f"d{i}", names[i], text, 0.0, 0, len(text))
                for i in top
                if (text := bench.documents[names[i]])
            ]
            passages = make_passages(fake)
            texts = [p.sentence_text(i) for p in passages for i in range(len(p.sentences))]
            gold = [citation_is_precise(t, q.answers, q.gold_sentences) for t in texts]
            if not any(gold):
                continue
            counted += 1
            order = [-float(i) for i in range(len(texts))]
            lexical = bm25(tokenizer.tokens([q.question])[0], tokenizer.tokens(texts))
            dense = list(embedder.embed_documents(texts) @ qv)
            rl, rd = ranks(lexical), ranks(dense)
            ro = ranks(order)
            fused = [1 / (60 + a) + 1 / (60 + b) for a, b in zip(rl, rd, strict=True)]
            service = ranked_sentence_ids(q.question, passages)
            ids = [p.sentence_id(i) for p in passages for i in range(len(p.sentences))]
            lex_order = [-float(service.index(i)) for i in ids]
            three = [f + 1 / (60 + c) for f, c in zip(fused, ro, strict=True)]
            columns = (order, lexical, dense, fused, lex_order, three)
            for ranker, scores in zip(RANKERS, columns, strict=True):
                r = ranks(list(scores))
                best = min(r[i] for i, g in enumerate(gold) if g)
                for k in range(6):
                    hits[ranker][k] += best <= k
        for ranker in RANKERS:
            cells = " | ".join(f"{h / max(1, counted):.2f}" for h in hits[ranker])
            print(f"| {Path(name).name} | {asked} | {counted} | {ranker} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
