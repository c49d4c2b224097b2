"""Which sentences of the relevant passages the evidence step offers the model, best first.

A small model picks evidence poorly from every sentence of five passages, while word overlap
with the question finds the answer's sentence well: measured by `scripts/bench_evidence.py` on
the train splits, the sentence holding the answer is among the first four of this ranking for
93–100% of questions (docs/benchmarks.md). The answer critic (generation/critic.py) was
measured as a replacement and kept out: it puts the answer's sentence first more often on SQuAD
but less often on HotpotQA, and among the first four no more often on either (docs/benchmarks.md,
"The answer critic"). The ranking fuses two orders by weighted reciprocal
rank: BM25 of each sentence against the question (the service's BM25 tokenizer, over these
sentences only), and reading order (retrieval rank, then position), which carries what lexical
overlap misses: a definition's first sentence that never repeats the question's words.

Pure and cheap: no model, a few hundred tokens.
"""

from __future__ import annotations

import math
import threading
from collections import Counter

from generation.reasoning.values import Passage
from retrieval.bm25_index import Tokenizer
from retrieval.fusion import reciprocal_rank_fusion

# Weighted reciprocal rank fusion (retrieval/fusion.py), ranks counted from 1: 1 / rank for
# BM25 plus ORDER_WEIGHT / rank for reading order. Chosen on the train splits and eval-dev
# (scripts/bench_evidence.py; k in 0, 4, 19, 59 with ranks from 1, weight in 0.25, 0.5, 1). k = 0
# lets a clear lexical winner lead; the half weight keeps the first sentences of the best
# passages close behind it.
_RRF_K = 0
_ORDER_WEIGHT = 0.5
_tokenizer: Tokenizer | None = None
_lock = threading.Lock()


def tokenize(texts: list[str]) -> list[list[str]]:
    """Each text as the service's BM25 tokens (lower case, no stopwords, Snowball stems)."""
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            _tokenizer = Tokenizer()
    return _tokenizer.tokens(texts)


def bm25(query: list[str], docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Okapi BM25 of each tokenized doc for the query, with the statistics of `docs` alone."""
    avg = sum(map(len, docs)) / len(docs) if docs else 0.0
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for d in docs:
        tf = Counter(d)
        score = 0.0
        for t in set(query) & tf.keys():
            idf = math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5))
            norm = k1 * (1 - b + b * len(d) / avg) if avg else k1
            score += idf * tf[t] * (k1 + 1) / (tf[t] + norm)
        scores.append(score)
    return scores


def ranked_sentence_ids(question: str, passages: list[Passage]) -> list[str]:
    """Every sentence id of `passages`, the likeliest evidence first."""
    ids = [p.sentence_id(i) for p in passages for i in range(len(p.sentences))]
    texts = [p.sentence_text(i) for p in passages for i in range(len(p.sentences))]
    if not ids:
        return []
    tokens = tokenize([question, *texts])
    lexical = bm25(tokens[0], tokens[1:])
    by_lexical = sorted(range(len(ids)), key=lambda i: (-lexical[i], i))
    fused = reciprocal_rank_fusion(
        [by_lexical, range(len(ids))], k=_RRF_K, weights=[1.0, _ORDER_WEIGHT]
    )
    return [ids[i] for i, _ in fused]
