"""The self-reasoning pipeline (Xia et al. 2024, arXiv 2407.19813), as structured generations.

retrieve → relevance (RAP) → evidence (EAP) → analysis and answer (TAP). After each step the
output is verified and repaired: sentence ids must exist and come from chunks judged relevant,
[n] markers must point at selected evidence, and every citation is checked verbatim against the
document's stored text before it is returned. A reply that breaks the step's schema gets one
repair attempt, then the query fails with `generator_invalid_output`.

The modes live here; the step values and the pure parsing, validation and repair functions
live in generation/steps.py. `run` yields (event, data) pairs in the order of the streaming
contract: retrieval, relevance, evidence, analysis, answer, done.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from core import repository
from core.db import Database
from core.errors import RagError
from core.settings import PipelineSettings, RetrievalMode
from generation import prompts
from generation.answerability import Answerability, assess
from generation.generator import Completion, Generator, GeneratorUnavailable
from generation.grounding import grounded_analysis, grounded_answer, is_supported
from generation.prompts import Passage
from generation.steps import (
    Evidence,
    Judgement,
    StepOutputError,
    answer_citations,
    citation_of,
    clip,
    evidence_from_ids,
    parse_analysis,
    parse_answer,
    parse_evidence,
    parse_relevance,
    repair_markers,
    reply_json,
    sentence_rank,
)
from generation.verdicts import (
    answer_sentence,
    overrule_decline,
    turned_relevant,
    with_top_ranked_evidence,
)
from retrieval.search import Hit, Searcher

Mode = Literal["steps", "single_pass", "one_call", "closed_book"]
Event = tuple[str, dict[str, Any]]
T = TypeVar("T")

NO_SUPPORT_ANSWER = "The documents retrieved for this question do not contain the answer."
GENERATOR_DOWN_ANSWER = (
    "No answer could be generated because the generator is unavailable; "
    "the most relevant passages are listed instead."
)


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


@dataclass
class _Run:
    """What one query accumulates: usage and timings across steps."""

    started: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    generator_s: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)

    def add(self, completion: Completion) -> None:
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.cached_tokens += completion.cached_tokens
        self.generator_s += completion.seconds

    def mark(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings_ms[step] = round((now - since) * 1000, 2)
        return now


class SelfReasoningPipeline:
    def __init__(
        self, generator: Generator, searcher: Searcher, db: Database, settings: PipelineSettings
    ) -> None:
        self._generator = generator
        self._searcher = searcher
        self._db = db
        self._settings = settings

    @property
    def generator(self) -> Generator:
        return self._generator

    async def run(self, options: QueryOptions) -> AsyncIterator[Event]:
        run = _Run()
        result = await asyncio.to_thread(
            self._searcher.search,
            options.collection,
            options.question,
            options.top_k,
            options.retrieval,
        )
        hits = result.hits
        clock = run.mark("retrieve", run.started)
        yield (
            "retrieval",
            {
                "hits": [_hit_json(h) for h in hits],
                "index_version": result.index_version,
                "embedder": result.embedder,
                "retrieval": result.retrieval,
            },
        )
        model = options.adapter or self._generator.model
        check: Answerability | None = None
        if hits and options.mode in ("steps", "single_pass"):
            check = self._answerability(options.question, hits)
        try:
            if options.mode == "closed_book":
                steps = self._closed_book(options, run)
            elif not hits:
                steps = self._unsupported(options, run, [], clock)
            elif check is not None and not check.answerable:
                # Retrieval alone shows the documents cannot answer: decline without the model.
                judged = [Judgement(h.chunk_id, h.document_id, False, check.reason()) for h in hits]
                steps = self._unsupported(options, run, judged, clock, check.reason())
            elif options.mode == "one_call":
                steps = self._one_call(options, run, prompts.make_passages(hits), clock)
            elif options.mode == "single_pass":
                steps = self._single_pass(options, run, prompts.make_passages(hits), clock)
            else:
                steps = self._steps(options, run, prompts.make_passages(hits), clock)
            final: dict[str, Any] = {}
            async for event, data in steps:
                if event == "final":
                    final = data
                else:
                    yield event, data
        except GeneratorUnavailable:
            if not self._settings.retrieval_only_fallback:
                raise
            final = {
                "answer": GENERATOR_DOWN_ANSWER,
                "analysis": "",
                "citations": [],
                "relevance": [],
                "evidence": [],
                "degraded": "generator_unavailable",
                "hits": [_hit_json(h) for h in hits],
            }
            yield "answer", {"answer": final["answer"], "citations": []}
        run.timings_ms["total"] = round((time.perf_counter() - run.started) * 1000, 2)
        run.timings_ms["generator"] = round(run.generator_s * 1000, 2)
        yield (
            "done",
            {
                "answer": final.get("answer", ""),
                "analysis": final.get("analysis", ""),
                "citations": final.get("citations", []),
                "relevance": final.get("relevance", []),
                "evidence": final.get("evidence", []),
                **{
                    k: v
                    for k, v in final.items()
                    if k
                    in (
                        "supported",
                        "degraded",
                        "hits",
                        "answer_source",
                        "analysis_source",
                        "model_answer",
                    )
                },
                "cached": False,
                "model": model,
                "mode": options.mode,
                "index_version": result.index_version,
                "usage": {
                    "prompt_tokens": run.prompt_tokens,
                    "completion_tokens": run.completion_tokens,
                    "cached_prompt_tokens": run.cached_tokens,
                },
                "timings_ms": run.timings_ms,
                **({"answerability": asdict(check)} if check is not None else {}),
            },
        )

    def _answerability(self, question: str, hits: list[Hit]) -> Answerability:
        s = self._settings
        return assess(
            question,
            [h.text for h in hits],
            [h.similarity for h in hits],
            s.answerability_min_coverage,
            s.answerability_min_similarity,
            min_pair_coverage=s.answerability_min_pair_coverage,
            pair_similarity=s.answerability_pair_similarity,
            check_numbers=s.answerability_numbers,
        )

    # Modes --------------------------------------------------------------------------------

    async def _steps(
        self, options: QueryOptions, run: _Run, passages: list[Passage], clock: float
    ) -> AsyncIterator[Event]:
        s = self._settings
        system = prompts.system_message(options.question, passages)

        judged = await self._structured(
            prompts.relevance_request(system, options.question, passages, s),
            options.adapter,
            run,
            lambda data: parse_relevance(data, passages, s.reason_max_chars),
        )
        clock = run.mark("relevance", clock)
        judged = overrule_decline(options.question, passages, judged, s.overrule_decline_coverage)
        yield "relevance", {"relevance": [asdict(j) for j in judged]}
        relevant = [p for p, j in zip(passages, judged, strict=True) if j.relevant]
        if not relevant:
            async for item in self._unsupported(options, run, judged, clock):
                yield item
            return

        evidence = await self._structured(
            prompts.evidence_request(system, options.question, relevant, s),
            options.adapter,
            run,
            lambda data: parse_evidence(data, relevant, s.max_evidence, s.reason_max_chars),
        )
        clock = run.mark("evidence", clock)
        if s.evidence_top_ranked:
            evidence = with_top_ranked_evidence(
                options.question, relevant, evidence, s.max_evidence
            )
        evidence = await self._verified(evidence)
        if not evidence:  # nothing survived verification: there is no support to cite
            async for item in self._unsupported(options, run, judged, clock):
                yield item
            return
        yield "evidence", {"evidence": [asdict(e) for e in evidence]}

        request = prompts.analysis_request(system, options.question, [e.quote for e in evidence], s)
        analysis, answer = await self._structured(
            request,
            options.adapter,
            run,
            lambda data: parse_analysis(data, s.analysis_max_chars, s.answer_max_chars),
        )
        if not _says_something(answer):
            analysis, answer = await self._answer_again(
                request, options.adapter, run, analysis, answer
            )
        run.mark("analysis", clock)
        async for item in self._finish(
            options.question, judged, evidence, analysis, answer, passages
        ):
            yield item

    async def _single_pass(
        self, options: QueryOptions, run: _Run, passages: list[Passage], clock: float
    ) -> AsyncIterator[Event]:
        s = self._settings
        system = prompts.system_message(options.question, passages)

        def parse(data: Any) -> tuple[list[Judgement], list[Evidence], str, str]:
            if not isinstance(data, dict):
                raise StepOutputError("the reply is not a JSON object")
            judged = parse_relevance(data.get("relevance"), passages, s.reason_max_chars)
            relevant = [p for p, j in zip(passages, judged, strict=True) if j.relevant]
            try:
                evidence = parse_evidence(data, relevant, s.max_evidence, s.reason_max_chars)
            except StepOutputError:
                evidence = []  # verified away: the analysis then cites nothing
            analysis, answer = parse_analysis(data, s.analysis_max_chars, s.answer_max_chars)
            return judged, evidence, analysis, answer

        judged, evidence, analysis, answer = await self._structured(
            prompts.StepRequest(
                "trajectory",
                prompts.single_pass_messages(system, options.question, s.max_evidence),
                prompts.single_pass_schema(
                    passages,
                    s.max_evidence,
                    s.reason_max_chars,
                    s.analysis_max_chars,
                    s.answer_max_chars,
                ),
                s.max_tokens_relevance + s.max_tokens_evidence + s.max_tokens_analysis,
            ),
            options.adapter,
            run,
            parse,
        )
        run.mark("analysis", clock)
        yield "relevance", {"relevance": [asdict(j) for j in judged]}
        if not any(j.relevant for j in judged):
            async for item in self._unsupported(options, run, judged, clock):
                yield item
            return
        evidence = await self._verified(evidence)
        yield "evidence", {"evidence": [asdict(e) for e in evidence]}
        async for item in self._finish(
            options.question, judged, evidence, analysis, answer, passages
        ):
            yield item

    async def _one_call(
        self, options: QueryOptions, run: _Run, passages: list[Passage], clock: float
    ) -> AsyncIterator[Event]:
        """Baseline RAG: one call answers and cites sentence ids (no relevance or reasons)."""
        system = prompts.system_message(options.question, passages)

        def parse(data: Any) -> tuple[str, list[Evidence]]:
            if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
                raise StepOutputError("the reply has no answer")
            ids = [i for i in data.get("citations") or [] if isinstance(i, str)]
            cited = evidence_from_ids(ids, passages, {}, self._settings.max_evidence)
            return clip(data["answer"], self._settings.answer_max_chars), cited

        answer, evidence = await self._structured(
            prompts.StepRequest(
                "answer",
                prompts.one_call_messages(system, options.question),
                prompts.one_call_schema(passages, self._settings.answer_max_chars),
                self._settings.max_tokens_analysis,
            ),
            options.adapter,
            run,
            parse,
        )
        run.mark("analysis", clock)
        evidence = await self._verified(evidence)
        citations = [citation_of(e) for e in evidence]
        yield "answer", {"answer": answer, "citations": [asdict(c) for c in citations]}
        yield (
            "final",
            {
                "answer": answer,
                "evidence": [asdict(e) for e in evidence],
                "citations": [asdict(c) for c in citations],
                "supported": bool(citations),
            },
        )

    async def _closed_book(self, options: QueryOptions, run: _Run) -> AsyncIterator[Event]:
        started = time.perf_counter()
        answer = await self._own_knowledge(options, run)
        run.mark("analysis", started)
        yield "answer", {"answer": answer, "citations": []}
        yield "final", {"answer": answer, "supported": False}

    async def _own_knowledge(self, options: QueryOptions, run: _Run) -> str:
        """An answer from the model alone, with no documents (cites nothing)."""
        limit = self._settings.answer_max_chars
        return await self._structured(
            prompts.StepRequest(
                "answer",
                prompts.closed_book_messages(options.question),
                prompts.answer_schema(limit),
                self._settings.max_tokens_analysis,
            ),
            options.adapter,
            run,
            lambda data: parse_answer(data, limit),
        )

    async def _unsupported(
        self,
        options: QueryOptions,
        run: _Run,
        judged: list[Judgement],
        clock: float,
        why: str = "None of the retrieved passages was judged relevant to the question.",
    ) -> AsyncIterator[Event]:
        """No retrieved chunk is relevant (`why` says how that was found): say so, or answer
        unsupported when allowed."""
        relevance = [asdict(j) for j in judged]
        if "relevance" not in run.timings_ms:
            yield "relevance", {"relevance": relevance}
        yield "evidence", {"evidence": []}
        answer = NO_SUPPORT_ANSWER
        analysis = why
        if options.allow_unsupported:
            answer = await self._own_knowledge(options, run)
            analysis += " The answer below comes from the model's own knowledge and cites nothing."
            run.mark("analysis", clock)
        yield "analysis", {"analysis": analysis}
        yield "answer", {"answer": answer, "citations": []}
        yield (
            "final",
            {"answer": answer, "analysis": analysis, "relevance": relevance, "supported": False},
        )

    async def _finish(
        self,
        question: str,
        judged: list[Judgement],
        evidence: list[Evidence],
        analysis: str,
        answer: str,
        passages: list[Passage],
    ) -> AsyncIterator[Event]:
        evidence, judged = await self._support_answer(question, answer, evidence, passages, judged)
        analysis, _ = repair_markers(analysis, evidence)
        # Every analysis sentence must cite evidence and add nothing the evidence lacks.
        analysis, _dropped, rewritten = grounded_analysis(
            analysis, question, {e.id: e.quote for e in evidence}
        )
        analysis, cited = repair_markers(analysis, evidence)
        # Evidence that holds the model's answer is always cited: chosen by the evidence step
        # but not named by the analysis, or added by the answer check. Else grounding would
        # replace a supported answer with a quote of the sentences the analysis happened to cite.
        cited += [
            e.id
            for e in evidence
            if e.id not in cited and is_supported(answer, question, [e.quote])
        ]
        # An extractive answer is a cited sentence, from the best-ranked document.
        pool = [e for e in evidence if e.id in cited] or evidence
        ranked = sorted(pool, key=lambda e: sentence_rank(e.sentence))
        model_answer = answer
        answer, source = grounded_answer(
            answer, question, [e.quote for e in ranked], self._settings.answer_max_chars
        )
        citations = [citation_of(e) for e in answer_citations(answer, question, evidence, cited)]
        yield "analysis", {"analysis": analysis}
        yield "answer", {"answer": answer, "citations": [asdict(c) for c in citations]}
        yield (
            "final",
            {
                "answer": answer,
                "analysis": analysis,
                "citations": [asdict(c) for c in citations],
                "relevance": [asdict(j) for j in judged],
                "evidence": [asdict(e) for e in evidence],
                # Backed by a passage judged relevant and a verbatim-verified quote (API.md).
                "supported": bool(citations) and any(j.relevant for j in judged),
                "answer_source": source,
                "analysis_source": "evidence" if rewritten else "model",
                # What the model wrote, when grounding replaced it (benchmarks score both).
                **({"model_answer": model_answer} if source == "extractive" else {}),
            },
        )

    async def _support_answer(
        self,
        question: str,
        answer: str,
        evidence: list[Evidence],
        passages: list[Passage],
        judged: list[Judgement],
    ) -> tuple[list[Evidence], list[Judgement]]:
        """The evidence, plus the retrieved sentence that best supports the model's answer
        (generation/verdicts.py `answer_sentence`) when the chosen evidence does not: a capable
        model often answers from a heading or a neighbouring sentence it did not pick. Ties go
        to passages judged relevant: a small model's relevance verdicts miss a second hop's
        passage that its answer then comes from, and such a passage's judgement turns
        relevant, with the reason saying why. Verified verbatim like the rest; without such a
        sentence the evidence is unchanged and grounding decides."""
        quotes = [e.quote for e in evidence]
        if not answer.strip() or not evidence or is_supported(answer, question, quotes):
            return evidence, judged
        found = answer_sentence(answer, question, passages, judged, {e.sentence for e in evidence})
        if found is None:
            return evidence, judged
        passage, index, judgement = found
        sentence_id = passage.sentence_id(index)
        reason = {sentence_id: "holds the answer (added by the answer check)"}
        extra = evidence_from_ids([sentence_id], [passage], reason, 1)
        why = f"sentence {sentence_id} holds the answer: the answer check"
        return await self._verified([*evidence, *extra]), turned_relevant(judged, judgement, why)

    # Generation and verification ------------------------------------------------------------

    async def _structured(
        self,
        request: prompts.StepRequest,
        adapter: str | None,
        run: _Run,
        parse: Callable[[Any], T],
    ) -> T:
        """Generate, parse and validate one step; one repair attempt when the reply is bad."""
        step, messages, schema, max_tokens = (
            request.step,
            request.messages,
            request.schema,
            request.max_tokens,
        )
        completion = await self._generator.generate(
            messages, schema=schema, max_tokens=max_tokens, adapter=adapter
        )
        run.add(completion)
        try:
            return parse(reply_json(completion))
        except (ValueError, StepOutputError) as first:
            problem = str(first)
        repair = [
            *messages,
            {"role": "assistant", "content": completion.text},
            {
                "role": "user",
                "content": f"That reply was not valid ({problem}). Reply again with only a "
                "complete JSON object in the required format.",
            },
        ]
        completion = await self._generator.generate(
            repair, schema=schema, max_tokens=max_tokens * 2, adapter=adapter
        )
        run.add(completion)
        try:
            return parse(reply_json(completion))
        except (ValueError, StepOutputError) as second:
            raise RagError(
                "generator_invalid_output",
                f"the model's {step} reply did not match the required format after one repair "
                f"attempt: {second}",
            ) from second

    async def _answer_again(
        self,
        request: prompts.StepRequest,
        adapter: str | None,
        run: _Run,
        analysis: str,
        answer: str,
    ) -> tuple[str, str]:
        """The last step once more when its answer was only evidence numbers or punctuation
        (a small model's "[1], [2]"): told so, the model usually answers in words. When it does
        not, the first reply stands and grounding answers from the evidence."""
        s = self._settings
        retry = prompts.StepRequest(
            request.step,
            [
                *request.messages,
                {
                    "role": "assistant",
                    "content": json.dumps({"answer": answer.strip(), "analysis": analysis}),
                },
                {"role": "user", "content": prompts.ANSWER_AGAIN},
            ],
            request.schema,
            request.max_tokens,
        )
        try:
            again = await self._structured(
                retry,
                adapter,
                run,
                lambda data: parse_analysis(data, s.analysis_max_chars, s.answer_max_chars),
            )
        except GeneratorUnavailable:
            raise
        except RagError:  # no valid reply the second time either
            return analysis, answer
        return again if _says_something(again[1]) else (analysis, answer)

    async def _verified(self, evidence: list[Evidence]) -> list[Evidence]:
        """Keep only evidence whose quote is the stored document text at its offsets."""
        if not evidence:
            return []
        texts = await asyncio.to_thread(self._document_texts, {e.document_id for e in evidence})
        kept = [
            e
            for e in evidence
            if (text := texts.get(e.document_id)) is not None and text[e.start : e.end] == e.quote
        ]
        # Renumber so evidence ids stay 1..n in order.
        return [
            Evidence(
                i,
                e.sentence,
                e.chunk_id,
                e.document_id,
                e.filename,
                e.quote,
                e.start,
                e.end,
                e.reason,
            )
            for i, e in enumerate(kept, 1)
        ]

    def _document_texts(self, document_ids: set[str]) -> dict[str, str]:
        with self._db.session() as session:
            return repository.document_texts(session, document_ids)


def _says_something(answer: str) -> bool:
    """The answer has a letter or digit (not only markers, already removed, and commas)."""
    return any(ch.isalnum() for ch in answer)


def _hit_json(h: Hit) -> dict[str, Any]:
    return asdict(h)
