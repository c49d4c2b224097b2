"""Running a benchmark set through the service's REST API and scoring every mode.

The runner talks HTTP (an httpx client for a running deployment, or FastAPI's TestClient for the
embedded service in process), so it measures what a user gets. It ingests the set's documents
into a fresh collection, searches each question once (recall@k; the modes then see the same
retrieval), asks it in every mode with the cache off, and scores the answers, the citations and
abstention. For the reasoning modes it also says where a wrong answer was lost.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from benchmark import scoring
from benchmark.datasets import BenchQuestion, BenchSet

REASONING_MODES = ("steps", "single_pass")
ALL_MODES = ("steps", "single_pass", "one_call", "closed_book")


def split_mode(spec: str) -> tuple[str, str | None]:
    """A mode as the runner names it: MODE, or MODE@ADAPTER to ask with that LoRA adapter
    (so one run compares a base model and its adapter over the same retrieval)."""
    mode, _, adapter = spec.partition("@")
    return mode, adapter or None


# Where a wrong answer of a reasoning mode was lost, in pipeline order.
LOSS_STAGES = (
    "not_retrieved",
    "declined_by_retrieval",  # the answerability check declined before the model was asked
    "judged_irrelevant",
    "no_gold_evidence",
    "answer_wrong",
    "replaced_by_grounding",
)
UPLOAD_BATCH = 50


class HttpClient(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...
    def post(self, url: str, **kwargs: Any) -> Any: ...


class BenchError(RuntimeError):
    """The service refused something the benchmark needs (the message has its error)."""


def _body(response: Any) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise BenchError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code} {message}"
        )
    return response.json() if response.content else None


@dataclass
class QuestionResult:
    id: str
    mode: str
    kind: str
    question: str
    answer: str = ""
    correct: bool = False
    exact_match: float = 0.0
    f1: float = 0.0
    declined: bool = False
    supported: bool = False  # the service said the answer is backed by what it cites
    citations: int = 0
    verbatim: int = 0
    precise: int = 0
    evidence_recall: float | None = None
    answer_source: str | None = None
    model_answer: str | None = None  # the model's own answer, when grounding replaced it
    analysis: str = ""
    loss: str | None = None  # a LOSS_STAGES entry, "ok", or None (not a reasoning mode)
    error: str | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ModeReport:
    mode: str
    results: list[QuestionResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        rs = self.results
        answerable = [r for r in rs if r.kind == "answerable"]
        unanswerable = [r for r in rs if r.kind != "answerable"]
        ok = [r for r in rs if r.error is None]
        citations = sum(r.citations for r in rs)
        recalls = [r.evidence_recall for r in answerable if r.evidence_recall is not None]
        latencies = [r.latency_ms for r in ok]
        losses = Counter(r.loss for r in answerable if r.loss)
        return {
            "mode": self.mode,
            "questions": len(rs),
            "answerable": len(answerable),
            "unanswerable": len(unanswerable),
            "accuracy": _mean([r.correct for r in answerable]),
            "exact_match": _mean([r.exact_match for r in answerable]),
            "f1": _mean([r.f1 for r in answerable]),
            "citations": citations,
            "citation_verbatim": _ratio(sum(r.verbatim for r in rs), citations),
            "citation_precision": _ratio(
                sum(r.precise for r in answerable), sum(r.citations for r in answerable)
            ),
            "evidence_recall": _mean(recalls),
            "declined": _mean([r.declined for r in unanswerable]),
            "false_abstention": _mean([r.declined for r in answerable]),
            # Of the answers marked supported, the share that is right (an unanswerable
            # question's answer marked supported is wrong): what `supported: true` is worth.
            "supported": _mean([r.supported for r in rs]),
            "supported_right": _mean(
                [r.correct and r.kind == "answerable" for r in rs if r.supported]
            ),
            "errors": sum(r.error is not None for r in rs),
            "extractive_answers": sum(r.answer_source == "extractive" for r in rs),
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "latency_p95_ms": round(scoring.percentile(latencies, 0.95), 1) if latencies else None,
            "prompt_tokens_mean": _mean([r.prompt_tokens for r in ok]),
            "completion_tokens_mean": _mean([r.completion_tokens for r in ok]),
            "losses": {stage: losses.get(stage, 0) for stage in ("ok", *LOSS_STAGES)}
            if split_mode(self.mode)[0] in REASONING_MODES
            else None,
        }


def _mean(values: Sequence[float | bool]) -> float | None:
    return round(sum(float(v) for v in values) / len(values), 3) if values else None


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


@dataclass
class BenchReport:
    dataset: str
    split: str
    collection: str
    top_k: int
    model: str
    retrieval_recall: float | None
    retrieval_recall_all: float | None
    modes: list[ModeReport]
    notes: list[str]
    ingest_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "collection": self.collection,
            "top_k": self.top_k,
            "model": self.model,
            "retrieval_recall_at_k": self.retrieval_recall,
            "retrieval_recall_all_gold_at_k": self.retrieval_recall_all,
            "ingest_s": round(self.ingest_s, 1),
            "notes": self.notes,
            "summary": [m.summary() for m in self.modes],
            "questions": [asdict(r) for m in self.modes for r in m.results],
        }


class BenchRunner:
    def __init__(
        self,
        client: HttpClient,
        collection: str,
        *,
        top_k: int = 5,
        modes: Sequence[str] = ("steps", "one_call"),
        progress: Callable[[str, int], None] | None = None,
        extra: dict[str, Any] | None = None,
        on_result: Callable[[QuestionResult], None] | None = None,
    ) -> None:
        unknown = {split_mode(m)[0] for m in modes} - set(ALL_MODES)
        if unknown:
            raise ValueError(f"unknown modes {sorted(unknown)}; known: {', '.join(ALL_MODES)}")
        self._client = client
        self._collection = collection
        self._top_k = top_k
        self._modes = list(modes)
        self._progress = progress or (lambda _stage, _n: None)
        self._extra = extra or {}
        self._on_result = on_result or (lambda _r: None)
        self._texts: dict[str, str] = {}

    # Ingestion ------------------------------------------------------------------------------

    def ingest(self, bench: BenchSet) -> float:
        """Create the collection (it must not exist) and ingest every document; seconds."""
        started = time.perf_counter()
        _body(self._client.post("/admin/v1/collections", json={"name": self._collection}))
        names = sorted(bench.documents)
        jobs = []
        for start in range(0, len(names), UPLOAD_BATCH):
            batch = names[start : start + UPLOAD_BATCH]
            files = [
                ("files", (n, bench.documents[n].encode("utf-8"), "text/plain")) for n in batch
            ]
            accepted = _body(
                self._client.post(
                    f"/admin/v1/collections/{self._collection}/documents", files=files
                )
            )
            jobs.append(accepted["job_id"])
            self._progress("upload", len(batch))
        for job_id in jobs:
            while True:
                job = _body(self._client.get(f"/admin/v1/jobs/{job_id}"))
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    if job["status"] != "succeeded" or job.get("errors"):
                        raise BenchError(
                            f"ingest job {job_id} {job['status']}: {job.get('errors')}"
                        )
                    break
                time.sleep(0.3)
        return time.perf_counter() - started

    # Questions ------------------------------------------------------------------------------

    def run(self, bench: BenchSet, ingest_s: float = 0.0) -> BenchReport:
        hits_by_question: dict[str, list[dict[str, Any]]] = {}
        for q in bench.questions:
            search = {"collection": self._collection, "query": q.question, "top_k": self._top_k}
            hits_by_question[q.id] = _body(self._client.post("/v1/search", json=search))["hits"]
            self._progress("search", 1)
        answerable = [q for q in bench.questions if q.answerable and q.gold_docs]
        recall_any = _mean(
            [_retrieved(q, hits_by_question[q.id], all_gold=False) for q in answerable]
        )
        recall_all = _mean(
            [_retrieved(q, hits_by_question[q.id], all_gold=True) for q in answerable]
        )
        reports, model = [], ""
        for mode in self._modes:
            report = ModeReport(mode)
            for q in bench.questions:
                result, served = self._ask(q, mode, hits_by_question[q.id])
                model = served or model
                report.results.append(result)
                self._on_result(result)
                self._progress(mode, 1)
            reports.append(report)
        return BenchReport(
            bench.name,
            bench.split,
            self._collection,
            self._top_k,
            model,
            recall_any,
            recall_all if any(len(q.gold_docs) > 1 for q in answerable) else None,
            reports,
            bench.notes,
            ingest_s,
        )

    def _ask(
        self, q: BenchQuestion, mode: str, hits: list[dict[str, Any]]
    ) -> tuple[QuestionResult, str]:
        result = QuestionResult(q.id, mode, q.kind, q.question)
        name, adapter = split_mode(mode)
        body = {
            "collection": self._collection,
            "question": q.question,
            "top_k": self._top_k,
            "mode": name,
            "use_cache": False,
            **self._extra,
            **({"adapter": adapter} if adapter else {}),
        }
        started = time.perf_counter()
        response = self._client.post("/v1/query", json=body)
        result.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        try:
            data = _body(response)
        except BenchError as exc:
            result.error = str(exc)
            return result, ""
        self._score(result, q, data, hits)
        return result, str(data.get("model", ""))

    def _score(
        self, r: QuestionResult, q: BenchQuestion, data: dict[str, Any], hits: list[dict[str, Any]]
    ) -> None:
        r.answer = str(data.get("answer", ""))
        r.supported = bool(data.get("supported"))
        r.answer_source = data.get("answer_source")
        r.model_answer = data.get("model_answer")
        r.analysis = str(data.get("analysis", ""))
        usage = data.get("usage") or {}
        r.prompt_tokens = int(usage.get("prompt_tokens", 0))
        r.completion_tokens = int(usage.get("completion_tokens", 0))
        r.declined = scoring.is_declined(data)
        citations = data.get("citations") or []
        quotes = [str(c["quote"]) for c in citations]
        r.citations = len(citations)
        r.verbatim = sum(self._is_verbatim(c) for c in citations)
        if not q.answerable:
            return
        r.correct = scoring.contains_gold(r.answer, q.answers) and not r.declined
        r.exact_match = scoring.exact_match(r.answer, q.answers)
        r.f1 = scoring.token_f1(r.answer, q.answers)
        r.precise = sum(
            scoring.citation_is_precise(quote, q.answers, q.gold_sentences) for quote in quotes
        )
        r.evidence_recall = scoring.evidence_recall(quotes, q.gold_sentences)
        if split_mode(r.mode)[0] in REASONING_MODES:
            r.loss = "ok" if r.correct else _loss_stage(q, data, hits)

    def _is_verbatim(self, citation: dict[str, Any]) -> bool:
        document_id = str(citation["document_id"])
        if document_id not in self._texts:
            response = self._client.get(
                f"/v1/collections/{self._collection}/documents/{document_id}"
            )
            self._texts[document_id] = str((_body(response) or {}).get("text") or "")
        text = self._texts[document_id]
        return text[int(citation["start"]) : int(citation["end"])] == str(citation["quote"])


def _retrieved(q: BenchQuestion, hits: list[dict[str, Any]], *, all_gold: bool) -> bool:
    found = {h["filename"] for h in hits} & set(q.gold_docs)
    return found == set(q.gold_docs) if all_gold else bool(found)


def _loss_stage(q: BenchQuestion, data: dict[str, Any], hits: list[dict[str, Any]]) -> str:
    """Where the pipeline lost the answer of an answerable question it got wrong."""
    gold_chunks = {h["chunk_id"] for h in hits if h["filename"] in q.gold_docs}
    if not gold_chunks:
        return "not_retrieved"
    if (data.get("answerability") or {}).get("answerable") is False:
        return "declined_by_retrieval"
    judged = {j["chunk_id"]: j["relevant"] for j in data.get("relevance") or []}
    if not any(judged.get(c) for c in gold_chunks):
        return "judged_irrelevant"
    quotes = [str(e["quote"]) for e in data.get("evidence") or []]
    if not any(scoring.citation_is_precise(x, q.answers, q.gold_sentences) for x in quotes):
        return "no_gold_evidence"
    model_answer = str(data.get("model_answer") or "")
    if data.get("answer_source") == "extractive" and scoring.contains_gold(model_answer, q.answers):
        return "replaced_by_grounding"
    return "answer_wrong"


# Reports ------------------------------------------------------------------------------------

MODE_LABELS = {
    "closed_book": "closed-book",
    "one_call": "one-call RAG",
    "steps": "self-reasoning (steps)",
    "single_pass": "self-reasoning (single pass)",
}
_COLUMNS = (
    ("mode", "mode"),
    ("n", "questions"),
    ("accuracy", "accuracy"),
    ("EM", "exact_match"),
    ("F1", "f1"),
    ("cit. verbatim", "citation_verbatim"),
    ("cit. precision", "citation_precision"),
    ("evidence recall", "evidence_recall"),
    ("declined", "declined"),
    ("false abstention", "false_abstention"),
    ("supported", "supported"),
    ("supported right", "supported_right"),
    ("errors", "errors"),
    ("p50 ms", "latency_p50_ms"),
    ("p95 ms", "latency_p95_ms"),
    ("prompt tok", "prompt_tokens_mean"),
    ("completion tok", "completion_tokens_mean"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
    return str(value)


def markdown_report(report: dict[str, Any]) -> str:
    """The JSON report as Markdown: the mode table, then the loss table for reasoning modes."""
    lines = [
        f"**{report['dataset']}** ({report['split']} split), model {report['model'] or '?'}, "
        f"top_k {report['top_k']}; retrieval recall@{report['top_k']}: "
        f"{_cell(report['retrieval_recall_at_k'])}"
        + (
            f" (all gold paragraphs: {_cell(report['retrieval_recall_all_gold_at_k'])})"
            if report.get("retrieval_recall_all_gold_at_k") is not None
            else ""
        ),
        "",
        "| " + " | ".join(title for title, _ in _COLUMNS) + " |",
        "|" + " --- |" * len(_COLUMNS),
    ]
    for s in report["summary"]:
        row = dict(s, mode=MODE_LABELS.get(s["mode"], s["mode"]))
        lines.append("| " + " | ".join(_cell(row[key]) for _, key in _COLUMNS) + " |")
    loss_rows = [s for s in report["summary"] if s.get("losses")]
    if loss_rows:
        stages = ("ok", *LOSS_STAGES)
        lines += [
            "",
            "Where answerable questions were lost (reasoning modes):",
            "",
            "| mode | " + " | ".join(s.replace("_", " ") for s in stages) + " |",
            "|" + " --- |" * (len(stages) + 1),
        ]
        for s in loss_rows:
            counts = " | ".join(str(s["losses"][k]) for k in stages)
            lines.append(f"| {MODE_LABELS.get(s['mode'], s['mode'])} | {counts} |")
    for note in report.get("notes") or []:
        lines.append(f"\nNote: {note}")
    return "\n".join(lines)
