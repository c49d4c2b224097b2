"""Scoring functions shared by `rag bench` and `rag eval` (pure, no I/O).

Answers: SQuAD's normalisation (lower case, punctuation and articles removed, whitespace
collapsed), exact match and token F1 against every gold answer (the best counts), and "gold
contained in the answer". Citations: precise when the quote holds a gold answer or is (part of)
a gold supporting sentence. Abstention: a response declines when it cites nothing, is not
`supported`, and its answer says the documents do not answer.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_DECLINE = re.compile(
    r"\b(do(es)?\s+not|don't|doesn't|did\s+not|cannot|can't|no)\b.{0,40}?"
    r"\b(contain|answer|mention|say|state|provide|include|specify|information|evidence|support)",
    re.IGNORECASE | re.DOTALL,
)


def normalize_answer(text: str) -> str:
    """SQuAD's official answer normalisation."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: Iterable[str]) -> float:
    """The best token F1 of `prediction` against any gold answer."""
    p_tokens = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        g_tokens = normalize_answer(gold).split()
        if not p_tokens or not g_tokens:
            best = max(best, float(p_tokens == g_tokens))
            continue
        common = collections.Counter(p_tokens) & collections.Counter(g_tokens)
        same = sum(common.values())
        if same == 0:
            continue
        precision, recall = same / len(p_tokens), same / len(g_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_gold(text: str, golds: Iterable[str]) -> bool:
    """A normalised gold answer appears in the normalised text (on word boundaries)."""
    haystack = f" {normalize_answer(text)} "
    return any((n := normalize_answer(g)) and f" {n} " in haystack for g in golds)


def _overlaps(quote: str, sentence: str) -> bool:
    """The quote is the sentence, part of it, or holds it (after normalisation)."""
    q, s = normalize_answer(quote), normalize_answer(sentence)
    return bool(q and s) and (q in s or s in q)


def citation_is_precise(quote: str, answers: Sequence[str], gold_sentences: Sequence[str]) -> bool:
    return contains_gold(quote, answers) or any(_overlaps(quote, s) for s in gold_sentences)


def evidence_recall(quotes: Sequence[str], gold_sentences: Sequence[str]) -> float | None:
    """Share of gold supporting sentences that some cited quote covers; None without gold."""
    if not gold_sentences:
        return None
    found = sum(any(_overlaps(q, s) for q in quotes) for s in gold_sentences)
    return found / len(gold_sentences)


def says_not_answered(answer: str) -> bool:
    return bool(_DECLINE.search(answer))


def is_declined(body: dict[str, Any]) -> bool:
    """The response declines to answer: no citation, not supported, and says so."""
    return (
        not body.get("citations")
        and not body.get("supported", False)
        and says_not_answered(str(body.get("answer", "")))
    )


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
