"""The values of the self-reasoning pipeline: what a query asks for, the passages the model
reads, and what each step decides. Frozen dataclasses, no behaviour beyond small accessors; the
events and the final result of a query are in generation/reasoning/results.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.settings import RetrievalMode
from retrieval.chunker import Sentence
from retrieval.search import Hit

Mode = Literal["steps", "single_pass", "one_call", "closed_book"]


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation: a follow-up's history."""

    question: str
    answer: str


@dataclass(frozen=True)
class QueryOptions:
    collection: str
    question: str
    top_k: int
    adapter: str | None = None
    mode: Mode = "steps"
    allow_unsupported: bool = False
    use_cache: bool = True
    # dense, hybrid or lexical; None: the collection's setting, else the server default.
    retrieval: RetrievalMode | None = None
    # The conversation so far: the question is a follow-up, rewritten to stand alone
    # (generation/reasoning/follow_ups.py) before anything else uses it.
    history: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk as the model sees it: numbered, split into numbered sentences."""

    number: int
    hit: Hit
    sentences: tuple[Sentence, ...]  # offsets relative to the chunk text

    def sentence_id(self, index: int) -> str:
        return f"{self.number}.{index + 1}"

    def sentence_text(self, index: int) -> str:
        s = self.sentences[index]
        return self.hit.text[s.start : s.end]


@dataclass(frozen=True)
class Judgement:
    """The relevance step's verdict on one retrieved chunk, with its reason."""

    chunk_id: int
    document_id: str
    relevant: bool
    reason: str


@dataclass(frozen=True)
class Evidence:
    """A sentence chosen as evidence: `id` is its [n] number, `sentence` its "d.s" id, the
    quote the stored text at [start, end) of the document."""

    id: int
    sentence: str
    chunk_id: int
    document_id: str
    filename: str
    quote: str
    start: int
    end: int
    reason: str


@dataclass(frozen=True)
class Citation:
    id: int
    document_id: str
    filename: str
    chunk_id: int
    quote: str
    start: int
    end: int


class StepOutputError(ValueError):
    """A step's reply parsed as JSON but does not satisfy the step's rules."""
