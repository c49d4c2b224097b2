"""Whether the retrieved passages can answer a question at all, judged from retrieval alone.

A small model's relevance step calls almost any passage on the question's topic relevant, so
it never declines (measured: no unanswerable SQuAD 2.0 question declined by any mode). What
retrieval knows is cheaper and steadier: how many of the question's words the passages hold,
and how near in meaning the nearest passage is (the dense cosine). A question whose retrieved
passages miss many of its words *and* are all far from it in meaning is about something the
collection does not hold, whatever the model says; the pipeline then declines without asking
the model. Either signal alone is not enough: a paraphrased question shares few words with its
answer's passage, and a short keyword question can sit far from it in embedding space.

The thresholds are settings (`PipelineSettings.answerability_*`), chosen on the train splits
with `scripts/bench_answerability.py` (docs/benchmarks.md). The cosine is the embedder's own
scale: another embedder needs its own threshold. Pure and cheap: no model, a few hundred tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from generation.evidence_ranking import tokenize
from generation.grounding import STOPWORDS

# Words that frame a question rather than name its subject ("What year…", "Which type of…"),
# and the function words BM25's stopword list keeps ("what", "did"): a passage answers "What
# year did X end?" with "X ended in 1644", never with "year".
_FRAME_WORDS = frozenset(
    tokenize(
        [
            " ".join(sorted(STOPWORDS))
            + " name named names year years type types kind kinds many much called call mean "
            "means meaning term terms stand stands number percent percentage date day time "
            "first last one two three also example"
        ]
    )[0]
)


@dataclass(frozen=True)
class Answerability:
    """What retrieval says about a question: `covered` of its `total` content words appear in
    the passages, the nearest of which has cosine `similarity` (None when no passage came
    from dense retrieval); `answerable` is False when both fall below their thresholds."""

    covered: int
    total: int
    similarity: float | None
    answerable: bool

    def reason(self) -> str:
        """Why the question was declined, for the relevance verdicts and the analysis."""
        near = "" if self.similarity is None else f" (nearest: cosine {self.similarity:.2f})"
        return (
            f"The retrieved passages hold {self.covered} of the question's {self.total} key "
            f"words and none is close to it in meaning{near}."
        )


def question_words(question: str) -> set[str]:
    """The question's content words as BM25 stems, without question-frame words."""
    return set(tokenize([question])[0]) - _FRAME_WORDS


def assess(
    question: str,
    texts: Sequence[str],
    similarities: Sequence[float | None],
    min_coverage: float,
    min_similarity: float,
) -> Answerability:
    """Judge `question` against the retrieved passages' `texts` and their dense cosines.

    Not answerable when the passages together hold under `min_coverage` of the question's
    content words and the best known cosine is under `min_similarity`. Never declines when
    `min_coverage` is 0 (the check is off), when no passage has a cosine (lexical retrieval:
    one signal is not enough), or when the question has no content word.
    """
    wanted = question_words(question)
    found: set[str] = set()
    for tokens in tokenize(list(texts)):
        found.update(wanted.intersection(tokens))
    known = [s for s in similarities if s is not None]
    best = max(known) if known else None
    covered, total = len(found), len(wanted)
    declined = (
        min_coverage > 0
        and total > 0
        and best is not None
        and covered / total < min_coverage
        and best < min_similarity
    )
    return Answerability(covered, total, best, not declined)
