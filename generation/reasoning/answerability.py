"""Whether the retrieved passages can answer a question at all, judged before the model is
asked: by the answer critic (generation/critic.py), which scores every sentence of the
passages for "states the answer to this question". When none reaches the critic's threshold,
the reasoning modes decline without a generation.

A small model's relevance step calls almost any passage on the question's topic relevant, so
it never declines by itself. The word-overlap rules this replaces (coverage, sentence pairs,
numbers; five settings) declined 64% of SQuAD 2.0's unanswerable train questions, the critic at
its threshold 79%, with false abstention within the noise of theirs (docs/benchmarks.md, "The
answer critic"; scripts/bench_critic.py). It reads meaning, not key words: no question is
declined because an English word list found none of its words in the passages. It does not
notice a document missing from a collection of near neighbours (HotpotQA's distractors) the way
the coverage rule did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from generation.reasoning.sentence_scores import SentenceScores
from generation.reasoning.values import Passage


@dataclass(frozen=True)
class Answerability:
    """The critic's best sentence of the passages (`sentence`, its id; None without one), its
    `score` and the `threshold` it had to reach; the nearest passage's cosine `similarity`
    (None when no passage came from dense retrieval), for the reader. `answerable` is False
    when no sentence reached the threshold; `declined_by` then says "critic"."""

    answerable: bool
    score: float
    threshold: float
    sentence: str | None
    similarity: float | None = None
    declined_by: Literal["critic"] | None = None

    def reason(self) -> str:
        """Why the question was declined, for the relevance verdicts and the analysis."""
        if self.sentence is None:
            return "The retrieved passages hold no sentence to answer from."
        return (
            "No sentence of the retrieved passages states the answer: the answer critic's best, "
            f"sentence {self.sentence}, scores {self.score:.2f} (under {self.threshold:.2f})."
        )


def judge(scores: SentenceScores, passages: list[Passage]) -> Answerability:
    """Answerable when some sentence of `passages` reaches the critic's threshold."""
    sentence, best = scores.best(passages)
    known = [p.hit.similarity for p in passages if p.hit.similarity is not None]
    answerable = sentence is not None and best >= scores.threshold
    return Answerability(
        answerable=answerable,
        score=round(best, 4),
        threshold=scores.threshold,
        sentence=sentence,
        similarity=max(known) if known else None,
        declined_by=None if answerable else "critic",
    )
