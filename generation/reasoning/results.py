"""What a query produces: the events of the streaming contract, in order, and the final result.

`SelfReasoningPipeline.run` yields these typed events — retrieval, relevance, evidence,
analysis, answer, done, and while the answer is written answer_delta (and answer_reset when an
attempt whose text was sent is discarded) — and the HTTP edge turns each into `event: <name>`
and its `data()`.
`QueryResult` is the whole response (`done`'s data, and the body without streaming); the query
cache stores its JSON and `from_json` reads it back, so a cached answer replays the same events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from generation.reasoning.answerability import Answerability
from generation.reasoning.values import Citation, Evidence, Judgement
from retrieval.search import Hit


@dataclass(frozen=True)
class Usage:
    """Generator tokens a query spent; `cached_prompt_tokens` the backend took from its
    prefix cache (vLLM, when reported)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class Outcome:
    """What a mode concluded; the pipeline adds the query's model, usage and timings to make
    the QueryResult."""

    answer: str = ""
    analysis: str = ""
    citations: list[Citation] = field(default_factory=list)
    relevance: list[Judgement] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    supported: bool | None = None
    degraded: str | None = None
    answer_source: str | None = None
    analysis_source: str | None = None
    model_answer: str | None = None


@dataclass(frozen=True)
class QueryResult:
    """The answer to one query, as API.md's query response. Optional fields left as None are
    left out of the JSON."""

    answer: str
    analysis: str
    citations: list[Citation]
    relevance: list[Judgement]
    evidence: list[Evidence]
    model: str
    mode: str
    index_version: int
    usage: Usage
    timings_ms: dict[str, float]
    # Backed by a passage judged relevant and a verbatim-verified quote (API.md); None when no
    # step decided it (the retrieval-only fallback).
    supported: bool | None = None
    # "generator_unavailable": the passages (`hits`) stand instead of an answer.
    degraded: str | None = None
    # The retrieved passages (None only in a cached answer computed before they were kept).
    hits: list[Hit] | None = None
    answer_source: str | None = None  # "model", or "extractive" when grounding replaced it
    analysis_source: str | None = None  # "model", or "evidence" when grounding rewrote it
    model_answer: str | None = None  # what the model wrote, when grounding replaced it
    answerability: Answerability | None = None
    cached: bool = False
    # A cached answer's `timings_ms` are the lookup's; these are the run that computed it.
    original_timings_ms: dict[str, float] | None = None
    # A follow-up's question as rewritten to stand alone: what was searched for.
    standalone_question: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "answer": self.answer,
            "analysis": self.analysis,
            "citations": [asdict(c) for c in self.citations],
            "relevance": [asdict(j) for j in self.relevance],
            "evidence": [asdict(e) for e in self.evidence],
        }
        optional: dict[str, Any] = {
            "supported": self.supported,
            "degraded": self.degraded,
            "hits": None if self.hits is None else [asdict(h) for h in self.hits],
            "answer_source": self.answer_source,
            "analysis_source": self.analysis_source,
            "model_answer": self.model_answer,
            "standalone_question": self.standalone_question,
        }
        body.update((k, v) for k, v in optional.items() if v is not None)
        body.update(
            cached=self.cached,
            model=self.model,
            mode=self.mode,
            index_version=self.index_version,
            usage=asdict(self.usage),
            timings_ms=self.timings_ms,
        )
        if self.answerability is not None:
            body["answerability"] = asdict(self.answerability)
        if self.original_timings_ms is not None:
            body["original_timings_ms"] = self.original_timings_ms
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueryResult:
        """The result `to_json` wrote (a cached answer); fields it lacks take their defaults."""
        hits = data.get("hits")
        check = data.get("answerability")
        return cls(
            answer=data.get("answer", ""),
            analysis=data.get("analysis", ""),
            citations=[Citation(**c) for c in data.get("citations", [])],
            relevance=[Judgement(**j) for j in data.get("relevance", [])],
            evidence=[Evidence(**e) for e in data.get("evidence", [])],
            model=data.get("model", ""),
            mode=data.get("mode", ""),
            index_version=data.get("index_version", 0),
            usage=Usage(**data.get("usage", {})),
            timings_ms=data.get("timings_ms", {}),
            supported=data.get("supported"),
            degraded=data.get("degraded"),
            hits=None if hits is None else [Hit(**h) for h in hits],
            answer_source=data.get("answer_source"),
            analysis_source=data.get("analysis_source"),
            model_answer=data.get("model_answer"),
            answerability=None if check is None else Answerability(**check),
            cached=data.get("cached", False),
            original_timings_ms=data.get("original_timings_ms"),
            standalone_question=data.get("standalone_question"),
        )


@dataclass(frozen=True)
class RetrievalEvent:
    name: ClassVar[str] = "retrieval"
    hits: list[Hit]
    index_version: int
    embedder: str
    retrieval: str  # dense, lexical or hybrid

    def data(self) -> dict[str, Any]:
        return {
            "hits": [asdict(h) for h in self.hits],
            "index_version": self.index_version,
            "embedder": self.embedder,
            "retrieval": self.retrieval,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetrievalEvent:
        return cls(
            hits=[Hit(**h) for h in data.get("hits", [])],
            index_version=data.get("index_version", 0),
            embedder=data.get("embedder", ""),
            retrieval=data.get("retrieval", "dense"),
        )


@dataclass(frozen=True)
class RelevanceEvent:
    name: ClassVar[str] = "relevance"
    relevance: list[Judgement]

    def data(self) -> dict[str, Any]:
        return {"relevance": [asdict(j) for j in self.relevance]}


@dataclass(frozen=True)
class EvidenceEvent:
    name: ClassVar[str] = "evidence"
    evidence: list[Evidence]

    def data(self) -> dict[str, Any]:
        return {"evidence": [asdict(e) for e in self.evidence]}


@dataclass(frozen=True)
class AnalysisEvent:
    name: ClassVar[str] = "analysis"
    analysis: str

    def data(self) -> dict[str, Any]:
        return {"analysis": self.analysis}


@dataclass(frozen=True)
class AnswerDeltaEvent:
    """New characters of the answer as the model writes it (the decoded JSON string, raw: it may
    hold evidence markers the final answer drops). The `answer` event that follows is the
    answer after the checks, which may differ."""

    name: ClassVar[str] = "answer_delta"
    text: str

    def data(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(frozen=True)
class AnswerResetEvent:
    """The text sent in answer_delta events so far was discarded: the model writes the answer
    again (`reason`: "repair", its reply broke the format; "answer_again", its answer was only
    evidence numbers). Deltas after it start the answer over."""

    name: ClassVar[str] = "answer_reset"
    reason: str

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason}


@dataclass(frozen=True)
class AnswerEvent:
    name: ClassVar[str] = "answer"
    answer: str
    citations: list[Citation]

    def data(self) -> dict[str, Any]:
        return {"answer": self.answer, "citations": [asdict(c) for c in self.citations]}


@dataclass(frozen=True)
class DoneEvent:
    name: ClassVar[str] = "done"
    result: QueryResult

    def data(self) -> dict[str, Any]:
        return self.result.to_json()


AnswerTextEvent = AnswerDeltaEvent | AnswerResetEvent
QueryEvent = (
    RetrievalEvent
    | RelevanceEvent
    | EvidenceEvent
    | AnalysisEvent
    | AnswerTextEvent
    | AnswerEvent
    | DoneEvent
)


def replay(retrieval: RetrievalEvent, result: QueryResult) -> list[QueryEvent]:
    """The events of a result computed before (a cached answer), in contract order: no
    answer_delta (the answer is complete at once)."""
    return [
        retrieval,
        RelevanceEvent(result.relevance),
        EvidenceEvent(result.evidence),
        AnalysisEvent(result.analysis),
        AnswerEvent(result.answer, result.citations),
        DoneEvent(result),
    ]
