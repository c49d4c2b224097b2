"""Whether the retrieved passages can answer a question at all, judged from retrieval alone.

A small model's relevance step calls almost any passage on the question's topic relevant, so
it never declines (measured: no unanswerable SQuAD 2.0 question declined by any mode). What
retrieval knows is cheaper and steadier: how many of the question's words the passages hold,
and how near in meaning the nearest passage is (the dense cosine). A question whose retrieved
passages miss many of its words *and* are all far from it in meaning is about something the
collection does not hold, whatever the model says; the pipeline then declines without asking
the model. Either signal alone is not enough: a paraphrased question shares few words with its
answer's passage, and a short keyword question can sit far from it in embedding space.

Two narrower rules catch questions that the passages cover only in pieces:

- **pairs**: the words of a question that has an answer sit together, in one sentence or two.
  When no two sentences of the passages (from any passages, so a two-hop question's bridge
  counts) hold `min_pair_coverage` of its words, and no passage is within `pair_similarity`
  in meaning, the words were found scattered over text about something else;
- **numbers**: a number of three or more digits the question asks about ("in 1806", "by
  1998") that no passage mentions; a decade ("the 1970s") counts as mentioned by any of its
  years.

The thresholds are settings (`PipelineSettings.answerability_*`), chosen on the train splits
with `scripts/bench_answerability.py` (docs/benchmarks.md). The cosine is the embedder's own
scale: another embedder needs its own threshold. Pure and cheap: no model, a few hundred tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from generation.reasoning.evidence_ranking import tokenize
from generation.reasoning.grounding import STOPWORDS
from retrieval.chunker import Sentence, split_sentences

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


# Digits with their inner separators ("1,000", "3.5"), compared with the commas taken out, and a
# decade's "s" ("1970s", "1940's"), which any year of that decade answers. Only numbers of three
# digits or more count: years, sizes, amounts. Shorter ones are too often written another way
# ("1755, 56, 57" for 1756 and 1757; "two" for 2).
_NUMBER = re.compile(r"(\d+(?:[.,]\d+)*)(?:['\u2019]?(s)\b)?")
_MIN_DIGITS = 3

Rule = Literal["coverage", "pairs", "numbers"]


@dataclass(frozen=True)
class Answerability:
    """What retrieval says about a question: `covered` of its `total` content words appear in
    the passages, at most `pair_covered` of them in any two sentences, the nearest passage has
    cosine `similarity` (None when no passage came from dense retrieval), and the passages
    never mention the question's `missing_numbers`. `answerable` is False when a rule fired;
    `declined_by` names the first that did."""

    covered: int
    total: int
    similarity: float | None
    answerable: bool
    pair_covered: int = 0
    missing_numbers: list[str] = field(default_factory=list)
    declined_by: Rule | None = None

    def reason(self) -> str:
        """Why the question was declined, for the relevance verdicts and the analysis."""
        near = "" if self.similarity is None else f" (nearest: cosine {self.similarity:.2f})"
        if self.declined_by == "numbers":
            numbers = ", ".join(self.missing_numbers)
            return f"The retrieved passages never mention {numbers}, which the question asks about."
        if self.declined_by == "pairs":
            return (
                f"No two sentences of the retrieved passages hold more than {self.pair_covered} "
                f"of the question's {self.total} key words, and none is close to it in "
                f"meaning{near}."
            )
        return (
            f"The retrieved passages hold {self.covered} of the question's {self.total} key "
            f"words and none is close to it in meaning{near}."
        )


def question_words(question: str) -> set[str]:
    """The question's content words as BM25 stems, without question-frame words."""
    return set(tokenize([question])[0]) - _FRAME_WORDS


def _sentence_words(wanted: set[str], text: str) -> list[tuple[Sentence, set[str]]]:
    """Each sentence of `text`, with the words of `wanted` it holds."""
    sentences = split_sentences(text)
    tokens = tokenize([text[s.start : s.end] for s in sentences]) if sentences else []
    return [(s, wanted.intersection(t)) for s, t in zip(sentences, tokens, strict=True)]


def best_sentence_coverage(question: str, text: str) -> tuple[Sentence | None, int, int]:
    """(the sentence of `text` holding the most of the question's key words, how many it holds,
    how many there are); None when the question has none or no sentence holds one."""
    wanted = question_words(question)
    best: Sentence | None = None
    held = 0
    for sentence, words in _sentence_words(wanted, text):
        if len(words) > held:
            best, held = sentence, len(words)
    return best, held, len(wanted)


def numbers(text: str) -> set[str]:
    """The numbers of three or more digits in `text`, without thousands commas; a decade
    ("1970s") as itself, with its "s"."""
    found = ((n.replace(",", ""), s) for n, s in _NUMBER.findall(text))
    return {n + s for n, s in found if sum(c.isdigit() for c in n) >= _MIN_DIGITS}


def missing_numbers(question: str, texts: Sequence[str]) -> list[str]:
    """The question's numbers that no text mentions: a decade is mentioned by any of its years."""
    held = numbers(" ".join(texts))
    years = {n.rstrip("s") for n in held}
    missing = []
    for number in sorted(numbers(question)):
        if number.endswith("0s"):
            decade = number[:-2]  # "1970s" -> "197": 1970-1979
            if any(len(y) == len(number) - 1 and y.startswith(decade) for y in years):
                continue
        elif number.rstrip("s") in years:
            continue
        missing.append(number)
    return missing


def assess(
    question: str,
    texts: Sequence[str],
    similarities: Sequence[float | None],
    min_coverage: float,
    min_similarity: float,
    *,
    min_pair_coverage: float = 0.0,
    pair_similarity: float = 0.0,
    check_numbers: bool = False,
) -> Answerability:
    """Judge `question` against the retrieved passages' `texts` and their dense cosines.

    Not answerable when any rule fires: the passages together hold under `min_coverage` of the
    question's content words and the best known cosine is under `min_similarity`; or a number
    of the question appears in no passage (`check_numbers`); or no two sentences hold
    `min_pair_coverage` of the words and the best cosine is under `pair_similarity`. Never
    declines when `min_coverage` is 0 (the check is off), when no passage has a cosine
    (lexical retrieval: one signal is not enough), or when there are no passages.
    A question with no content word is judged by its numbers alone.
    """
    wanted = question_words(question)
    found_by_sentence = [words for text in texts for _, words in _sentence_words(wanted, text)]
    found = set().union(*found_by_sentence)
    known = [s for s in similarities if s is not None]
    best = max(known) if known else None
    covered, total = len(found), len(wanted)
    # Distinct word sets only: a question has a handful of words, so there are few of them
    # however many sentences the passages have.
    distinct = list({frozenset(words) for words in found_by_sentence if words})
    pair_covered = max(
        (len(a | b) for i, a in enumerate(distinct) for b in distinct[i:]), default=0
    )
    missing = missing_numbers(question, texts) if check_numbers else []
    rule: Rule | None = None
    if min_coverage > 0 and best is not None and texts:
        if total and covered / total < min_coverage and best < min_similarity:
            rule = "coverage"
        elif missing:
            rule = "numbers"
        elif total and pair_covered / total < min_pair_coverage and best < pair_similarity:
            rule = "pairs"
    return Answerability(covered, total, best, rule is None, pair_covered, missing, rule)
