"""Evaluation over a question set: retrieval recall@k and answer/citation quality per mode.

Talks to the service through its HTTP API (any client with httpx's get/post), so it measures
what users get. Questions are JSON lines with `question`, `answers` (accepted strings) and `doc`
(the file holding the answer).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MODES = ("closed_book", "one_call", "steps")
MODE_LABELS = {"closed_book": "closed-book", "one_call": "one-call RAG", "steps": "self-reasoning"}


class HttpClient(Protocol):
    def get(self, url: str) -> Any: ...
    def post(self, url: str, *, json: Any = ...) -> Any: ...


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    doc: str


def load_questions(path: Path) -> list[Question]:
    questions: list[Question] = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            questions.append(
                Question(
                    str(row.get("id", len(questions))),
                    row["question"],
                    tuple(row["answers"]),
                    row["doc"],
                )
            )
    return questions


@dataclass
class ModeScore:
    mode: str
    answered: int = 0
    correct: int = 0
    errors: int = 0
    citations: int = 0
    verbatim: int = 0
    precise: int = 0
    # Answers the pipeline took from the evidence because the model's was not supported.
    extractive: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms) or [0.0]
        return {
            "mode": MODE_LABELS.get(self.mode, self.mode),
            "questions": self.answered + self.errors,
            "accuracy": _ratio(self.correct, self.answered + self.errors),
            "citations": self.citations,
            "citation_verbatim": _ratio(self.verbatim, self.citations),
            "citation_precision": _ratio(self.precise, self.citations),
            "errors": self.errors,
            "extractive_answers": self.extractive,
            "latency_p50_ms": round(statistics.median(lat), 1),
            "latency_p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1),
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def contains_any(text: str, answers: Iterable[str]) -> bool:
    lowered = text.casefold()
    return any(a.casefold() in lowered for a in answers)


class Evaluator:
    def __init__(self, client: HttpClient, collection: str, top_k: int = 5) -> None:
        self._client = client
        self._collection = collection
        self._top_k = top_k
        self._texts: dict[str, str] = {}

    def recall(self, questions: list[Question]) -> float:
        found = 0
        for q in questions:
            response = self._client.post(
                "/v1/search",
                json={"collection": self._collection, "query": q.question, "top_k": self._top_k},
            )
            hits = response.json()["hits"]
            found += any(h["filename"] == q.doc for h in hits)
        return round(found / len(questions), 3) if questions else 0.0

    def score_mode(
        self, mode: str, questions: list[Question], progress: Callable[[], None] | None = None
    ) -> ModeScore:
        score = ModeScore(mode)
        for q in questions:
            started = time.perf_counter()
            response = self._client.post(
                "/v1/query",
                json={
                    "collection": self._collection,
                    "question": q.question,
                    "top_k": self._top_k,
                    "mode": mode,
                    "use_cache": False,
                },
            )
            score.latencies_ms.append((time.perf_counter() - started) * 1000)
            if progress:
                progress()
            if response.status_code != 200:
                score.errors += 1
                continue
            body = response.json()
            score.answered += 1
            score.correct += contains_any(body["answer"], q.answers)
            score.extractive += body.get("answer_source") == "extractive"
            for citation in body["citations"]:
                score.citations += 1
                text = self._document_text(citation["document_id"])
                score.verbatim += text[citation["start"] : citation["end"]] == citation["quote"]
                score.precise += contains_any(citation["quote"], q.answers)
        return score

    def _document_text(self, document_id: str) -> str:
        if document_id not in self._texts:
            response = self._client.get(
                f"/v1/collections/{self._collection}/documents/{document_id}"
            )
            self._texts[document_id] = response.json().get("text") or ""
        return self._texts[document_id]


TABLE_COLUMNS = (
    ("mode", "mode"),
    ("accuracy", "accuracy"),
    ("citation verbatim", "citation_verbatim"),
    ("citation precision", "citation_precision"),
    ("citations", "citations"),
    ("errors", "errors"),
    ("extractive answers", "extractive_answers"),
    ("p50 ms", "latency_p50_ms"),
    ("p95 ms", "latency_p95_ms"),
)


def markdown_table(recall: float, top_k: int, rows: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(title for title, _ in TABLE_COLUMNS) + " |"
    rule = "|" + " --- |" * len(TABLE_COLUMNS)
    body = ["| " + " | ".join(str(r[key]) for _, key in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join([f"retrieval recall@{top_k}: {recall}", "", header, rule, *body])
