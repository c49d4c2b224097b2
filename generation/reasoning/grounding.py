"""Whether text is supported by evidence: an answer must be held by the selected evidence or
is replaced by an extractive one, and every analysis sentence must cite evidence that holds it.

Pure functions, no I/O. A capable model's replies pass through unchanged: its JSON is complete
and its answers use words of the evidence it cited.
"""

from __future__ import annotations

import re
from typing import Literal

_WORD = re.compile(r"[a-z0-9]+(?:['/-][a-z0-9]+)*")
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    it its this that these those there here what which who whom whose when where why how does do
    did done not no yes so than then too very can could should would will shall may might must
    has have had having about into over under also just only such any all some each both either
    neither one two i you he she we they them their our your his her my me us answer question
    document documents evidence sentence sentences stand stands stood mean means meant
    called""".split()
)

# A bare sentence id ("2.3", "[1.2]", "{1.2}"): a small model's non-answer.
_SENTENCE_ID = re.compile(r"^\W*\d+(?:\.\d+)?\W*$")

AnswerSource = Literal["model", "extractive"]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _content_words(text: str) -> set[str]:
    words = set()
    for word in _WORD.findall(text.casefold()):
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        words.add(_stem(word))
    return words


# The share of an answer's new words that quotes must hold to support it.
SUPPORTED = 0.5


def support(answer: str, question: str, quotes: list[str]) -> float:
    """The share of what the answer adds to the question (its new content words) that the
    quotes hold; 0 when it adds nothing or is a bare sentence id."""
    if _SENTENCE_ID.match(answer):
        return 0.0
    new = _content_words(answer) - _content_words(question)
    if not new:
        return 0.0
    return len(new & _content_words(" ".join(quotes))) / len(new)


def is_supported(answer: str, question: str, quotes: list[str]) -> bool:
    """True when the answer says something the question did not, and what it says is mostly
    in the evidence: at least one new content word, half of them found in the quotes."""
    return support(answer, question, quotes) >= SUPPORTED


def extractive_answer(quotes: list[str], limit: int) -> str:
    """The first evidence quote as the answer, whitespace collapsed, clipped at a word."""
    text = " ".join(quotes[0].split()) if quotes else ""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def answer_span(answer: str, question: str, quotes: list[str], max_words: int = 15) -> str:
    """The shortest stretch of one quote that holds the answer's words found there (the quote
    with the most of them), at most `max_words` words; "" when no quote shares a word with
    what the answer adds to the question."""
    wanted = _content_words(answer) - _content_words(question)
    best = ""
    best_hits = 0
    for quote in quotes:
        words = list(_WORD.finditer(quote.casefold()))
        hits = [i for i, w in enumerate(words) if _stem(w.group()) in wanted]
        if len(hits) <= best_hits or hits[-1] - hits[0] >= max_words:
            continue
        best_hits = len(hits)
        best = quote[words[hits[0]].start() : words[hits[-1]].end()]
    return " ".join(best.split())


def grounded_answer(
    answer: str, question: str, quotes: list[str], limit: int
) -> tuple[str, AnswerSource]:
    """The model's answer when the evidence supports it, else an extractive one from the
    evidence (which was verified verbatim): the span of a cited sentence that holds what the
    model's answer shares with it, or the best cited sentence, so a weak model's drifting
    wording still gives a usable, grounded answer."""
    if not quotes or (answer.strip() and is_supported(answer, question, quotes)):
        return answer, "model"
    span = answer_span(answer, question, quotes)
    if span and is_supported(span, question, quotes):
        return span, "extractive"
    return extractive_answer(quotes, limit), "extractive"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKERS_ONLY = re.compile(r"^(\s*\[\d+\])+\s*[.!?]?\s*$")
_CITE = re.compile(r"\[(\d+)\]")


def analysis_sentences(analysis: str) -> list[str]:
    """The analysis cut into sentences; a marker run after a full stop ("… ROM. [2]") stays with
    the sentence before it."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(analysis.strip()):
        if pieces and _MARKERS_ONLY.match(piece):
            pieces[-1] = f"{pieces[-1]} {piece.strip()}"
        elif piece.strip():
            pieces.append(piece.strip())
    return pieces


def sentence_is_grounded(sentence: str, question: str, quotes: list[str]) -> bool:
    """A sentence is grounded in the quotes it cites when what it adds to the question is in
    them: no number that the quotes lack (invented dates and figures), and at most a third of
    its other new content words absent (room for connecting words)."""
    new = _content_words(_CITE.sub(" ", sentence)) - _content_words(question)
    absent = new - _content_words(" ".join(quotes))
    if any(any(ch.isdigit() for ch in word) for word in absent):
        return False
    return len(absent) * 3 <= len(new)


def grounded_analysis(
    analysis: str, question: str, quotes: dict[int, str]
) -> tuple[str, int, bool]:
    """The analysis with every sentence that cites no evidence ([n] of `quotes`), or is not
    grounded in what it cites, dropped. When nothing is left, the analysis is rewritten from the
    evidence: each quote with its marker. Returns (analysis, sentences dropped, rewritten)."""
    kept: list[str] = []
    dropped = 0
    for sentence in analysis_sentences(analysis):
        cited = [quotes[n] for n in map(int, _CITE.findall(sentence)) if n in quotes]
        if cited and sentence_is_grounded(sentence, question, cited):
            kept.append(sentence)
        else:
            dropped += 1
    if kept:
        return " ".join(kept), dropped, False
    rebuilt = " ".join(f"{' '.join(q.split())} [{n}]" for n, q in sorted(quotes.items()))
    return rebuilt, dropped, True
