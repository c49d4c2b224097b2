"""The answer critic's verdict on every sentence of the retrieved passages, scored once per
question (generation/critic.py), and what the pipeline reads from it:

- `best`: the sentence likeliest to state the answer, and whether any does (the threshold):
  without one the reasoning modes decline before the model is asked (answerability.py), and
  with one a relevance step that judged every passage irrelevant is overruled (revisions.py);
- `states_answer`: whether a cited sentence states the answer, which `supported` requires
  (conclusion.py).

The evidence step's candidates stay with the BM25 and reading-order ranking
(evidence_ranking.py): measured against it, the critic's order was no better among the first
four and worse on HotpotQA (docs/benchmarks.md).

Sentence ids are the passages' own ("2.3": passage 2, sentence 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.critic import AnswerCritic
from generation.reasoning.values import Passage


@dataclass(frozen=True)
class SentenceScores:
    by_id: dict[str, float]  # sentence id -> probability that it states the answer
    threshold: float

    def best(self, passages: list[Passage]) -> tuple[str | None, float]:
        """The sentence of `passages` likeliest to state the answer (the first in reading order
        among equals) and its score; (None, 0.0) without sentences."""
        ids = [p.sentence_id(i) for p in passages for i in range(len(p.sentences))]
        if not ids:
            return None, 0.0
        first = max(ids, key=lambda i: self.by_id.get(i, 0.0))  # max keeps the first of equals
        return first, self.by_id.get(first, 0.0)

    def states_answer(self, sentence_id: str) -> bool:
        return self.by_id.get(sentence_id, 0.0) >= self.threshold


def score_sentences(critic: AnswerCritic, question: str, passages: list[Passage]) -> SentenceScores:
    """Every sentence of `passages` scored against `question` in one batch (a few ms each)."""
    ids = [p.sentence_id(i) for p in passages for i in range(len(p.sentences))]
    texts = [p.sentence_text(i) for p in passages for i in range(len(p.sentences))]
    scores = critic.scores(question, texts) if texts else []
    return SentenceScores(dict(zip(ids, scores, strict=True)), critic.threshold)
