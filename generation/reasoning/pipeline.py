"""The self-reasoning pipeline (Xia et al. 2024, arXiv 2407.19813), as structured generations.

retrieve → answer critic → relevance (RAP) → evidence (EAP) → analysis and answer (TAP). The
answer critic (generation/critic.py) scores every retrieved sentence once: with none that states
the answer the question is declined before the model is asked, and `supported` needs a citation
it finds states the answer (answerability.py, sentence_scores.py). After each step the
output is verified and repaired: sentence ids must exist and come from chunks judged relevant,
[n] markers must point at selected evidence, and every citation is checked verbatim against the
document's stored text before it is returned (verification.py). A reply that breaks the step's
schema gets one repair attempt (step_calls.py), then the query fails with
`generator_invalid_output`.

The step that writes the answer streams it (answer_stream.py): its generation runs as a task while
`run` yields answer_delta events, before the answer's checks; the answer event after them is the
checked answer.

The modes live here; their values are in values.py, the reply parsers in replies.py, the rules
that revise the model's verdicts in revisions.py. `run` yields the typed events of results.py
in the order of the streaming contract: retrieval, relevance, evidence, analysis, answer, done
(answer_delta and answer_reset while the answer is written: in steps mode before analysis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from core.settings import PipelineSettings, RetrievalMode
from generation.critic import AnswerCritic
from generation.llm.generator import Generator, GeneratorUnavailable
from generation.reasoning import prompts
from generation.reasoning.answer_stream import StreamedCall
from generation.reasoning.answerability import Answerability, judge
from generation.reasoning.conclusion import conclude
from generation.reasoning.evidence_ranking import ranked_sentence_ids
from generation.reasoning.replies import (
    citation_of,
    clip,
    evidence_from_ids,
    parse_analysis,
    parse_answer,
    parse_evidence,
    parse_relevance,
)
from generation.reasoning.results import (
    AnalysisEvent,
    AnswerEvent,
    DoneEvent,
    EvidenceEvent,
    Outcome,
    QueryEvent,
    QueryResult,
    RelevanceEvent,
    RetrievalEvent,
)
from generation.reasoning.revisions import overrule_decline, with_top_ranked_evidence
from generation.reasoning.sentence_scores import SentenceScores, score_sentences
from generation.reasoning.step_calls import QueryRun, StepCaller
from generation.reasoning.values import (
    Evidence,
    Judgement,
    Passage,
    QueryOptions,
    StepOutputError,
)
from generation.reasoning.verification import DocumentTexts, verified
from retrieval.search import SearchResult

NO_SUPPORT_ANSWER = "The documents retrieved for this question do not contain the answer."
GENERATOR_DOWN_ANSWER = (
    "No answer could be generated because the generator is unavailable; "
    "the most relevant passages are listed instead."
)


class Retriever(Protocol):
    """What the pipeline searches with (retrieval/search.py's Searcher)."""

    def search(
        self,
        collection_name: str,
        query: str,
        top_k: int,
        retrieval: RetrievalMode | None = None,
    ) -> SearchResult: ...


ModeEvents = AsyncIterator[QueryEvent | Outcome]


class SelfReasoningPipeline:
    def __init__(
        self,
        generator: Generator,
        retriever: Retriever,
        texts: DocumentTexts,
        settings: PipelineSettings,
        critic: AnswerCritic,
    ) -> None:
        self._generator = generator
        self._critic = critic
        self._retriever = retriever
        self._texts = texts
        self._settings = settings
        self._calls = StepCaller(generator, settings)

    @property
    def generator(self) -> Generator:
        return self._generator

    @property
    def critic(self) -> AnswerCritic:
        return self._critic

    async def run(self, options: QueryOptions) -> AsyncIterator[QueryEvent]:
        run = QueryRun()
        result = await asyncio.to_thread(
            self._retriever.search,
            options.collection,
            options.question,
            options.top_k,
            options.retrieval,
        )
        hits = result.hits
        clock = run.mark("retrieve", run.started)
        yield RetrievalEvent(hits, result.index_version, result.embedder, result.retrieval)
        passages = prompts.make_passages(hits)
        scores = SentenceScores({}, self._critic.threshold)
        check: Answerability | None = None
        if hits and options.mode != "closed_book":
            # The answer critic reads every sentence once: the decline before the model, a
            # decline of the relevance step overruled, whether a citation states the answer.
            scores = await asyncio.to_thread(
                score_sentences, self._critic, options.question, passages
            )
            clock = run.mark("critic", clock)
            if options.mode in ("steps", "single_pass"):
                check = judge(scores, passages)
        try:
            if options.mode == "closed_book":
                steps = self._closed_book(options, run)
            elif not hits:
                steps = self._unsupported(options, run, [], clock)
            elif check is not None and not check.answerable:
                # No retrieved sentence states the answer: decline without the model.
                judged = [Judgement(h.chunk_id, h.document_id, False, check.reason()) for h in hits]
                steps = self._unsupported(options, run, judged, clock, check.reason())
            elif options.mode == "one_call":
                steps = self._one_call(options, run, passages, scores, clock)
            elif options.mode == "single_pass":
                steps = self._single_pass(options, run, passages, scores, clock)
            else:
                steps = self._steps(options, run, passages, scores, clock)
            outcome = Outcome()
            async for item in steps:
                if isinstance(item, Outcome):
                    outcome = item
                else:
                    yield item
        except GeneratorUnavailable:
            if not self._settings.retrieval_only_fallback:
                raise
            outcome = Outcome(answer=GENERATOR_DOWN_ANSWER, degraded="generator_unavailable")
            yield AnswerEvent(outcome.answer, [])
        timings = run.finish()
        yield DoneEvent(
            QueryResult(
                answer=outcome.answer,
                analysis=outcome.analysis,
                citations=outcome.citations,
                relevance=outcome.relevance,
                evidence=outcome.evidence,
                supported=outcome.supported,
                degraded=outcome.degraded,
                # What retrieval returned, so a client need not stream to see the passages.
                hits=hits,
                answer_source=outcome.answer_source,
                analysis_source=outcome.analysis_source,
                model_answer=outcome.model_answer,
                model=options.adapter or self._generator.model,
                mode=options.mode,
                index_version=result.index_version,
                usage=run.usage(),
                timings_ms=timings,
                answerability=check,
            )
        )

    # Modes --------------------------------------------------------------------------------

    async def _steps(
        self,
        options: QueryOptions,
        run: QueryRun,
        passages: list[Passage],
        scores: SentenceScores,
        clock: float,
    ) -> ModeEvents:
        s = self._settings
        system = prompts.system_message(options.question, passages)

        judged = await self._calls.structured(
            prompts.relevance_request(system, options.question, passages, s),
            options.adapter,
            run,
            lambda data: parse_relevance(data, passages, s.reason_max_chars),
        )
        clock = run.mark("relevance", clock)
        judged = overrule_decline(passages, judged, scores)
        yield RelevanceEvent(judged)
        relevant = [p for p, j in zip(passages, judged, strict=True) if j.relevant]
        if not relevant:
            async for item in self._unsupported(options, run, judged, clock):
                yield item
            return

        ranked = ranked_sentence_ids(options.question, relevant)
        evidence = await self._calls.structured(
            prompts.evidence_request(system, options.question, relevant, s, ranked),
            options.adapter,
            run,
            lambda data: parse_evidence(data, relevant, s.max_evidence, s.reason_max_chars),
        )
        clock = run.mark("evidence", clock)
        if s.evidence_top_ranked:
            evidence = with_top_ranked_evidence(ranked, relevant, evidence, s.max_evidence)
        evidence = await verified(evidence, self._texts)
        if not evidence:  # nothing survived verification: there is no support to cite
            async for item in self._unsupported(options, run, judged, clock):
                yield item
            return
        yield EvidenceEvent(evidence)

        request = prompts.analysis_request(system, options.question, [e.quote for e in evidence], s)
        writing = StreamedCall(
            lambda stream: self._calls.analysis(request, options.adapter, run, stream)
        )
        async for event in writing:
            yield event
        analysis, answer = writing.value
        run.mark("analysis", clock)
        for item in await self._conclude(
            options.question, judged, evidence, analysis, answer, passages, scores
        ):
            yield item

    async def _single_pass(
        self,
        options: QueryOptions,
        run: QueryRun,
        passages: list[Passage],
        scores: SentenceScores,
        clock: float,
    ) -> ModeEvents:
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

        request = prompts.StepRequest(
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
        )
        # The answer is the reply's last field: its deltas come before the relevance event.
        writing = StreamedCall(
            lambda stream: self._calls.structured(request, options.adapter, run, parse, stream)
        )
        async for event in writing:
            yield event
        judged, evidence, analysis, answer = writing.value
        run.mark("analysis", clock)
        yield RelevanceEvent(judged)
        if not any(j.relevant for j in judged):
            async for item in self._unsupported(options, run, judged, clock):
                yield item
            return
        evidence = await verified(evidence, self._texts)
        yield EvidenceEvent(evidence)
        for item in await self._conclude(
            options.question, judged, evidence, analysis, answer, passages, scores
        ):
            yield item

    async def _one_call(
        self,
        options: QueryOptions,
        run: QueryRun,
        passages: list[Passage],
        scores: SentenceScores,
        clock: float,
    ) -> ModeEvents:
        """Baseline RAG: one call answers and cites sentence ids (no relevance or reasons)."""
        system = prompts.system_message(options.question, passages)

        def parse(data: Any) -> tuple[str, list[Evidence]]:
            if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
                raise StepOutputError("the reply has no answer")
            ids = [i for i in data.get("citations") or [] if isinstance(i, str)]
            cited = evidence_from_ids(ids, passages, {}, self._settings.max_evidence)
            return clip(data["answer"], self._settings.answer_max_chars), cited

        request = prompts.StepRequest(
            "answer",
            prompts.one_call_messages(system, options.question),
            prompts.one_call_schema(passages, self._settings.answer_max_chars),
            self._settings.max_tokens_analysis,
        )
        writing = StreamedCall(
            lambda stream: self._calls.structured(request, options.adapter, run, parse, stream)
        )
        async for event in writing:
            yield event
        answer, evidence = writing.value
        run.mark("analysis", clock)
        evidence = await verified(evidence, self._texts)
        citations = [citation_of(e) for e in evidence]
        yield AnswerEvent(answer, citations)
        # Supported: a citation verified verbatim that states the answer by the critic.
        supported = any(scores.states_answer(e.sentence) for e in evidence)
        yield Outcome(answer=answer, evidence=evidence, citations=citations, supported=supported)

    async def _closed_book(self, options: QueryOptions, run: QueryRun) -> ModeEvents:
        started = time.perf_counter()
        writing = self._own_knowledge(options, run)
        async for event in writing:
            yield event
        answer = writing.value
        run.mark("analysis", started)
        yield AnswerEvent(answer, [])
        yield Outcome(answer=answer, supported=False)

    def _own_knowledge(self, options: QueryOptions, run: QueryRun) -> StreamedCall[str]:
        """An answer from the model alone, with no documents (cites nothing), streamed."""
        limit = self._settings.answer_max_chars
        request = prompts.StepRequest(
            "answer",
            prompts.closed_book_messages(options.question),
            prompts.answer_schema(limit),
            self._settings.max_tokens_analysis,
        )
        return StreamedCall(
            lambda stream: self._calls.structured(
                request, options.adapter, run, lambda data: parse_answer(data, limit), stream
            )
        )

    async def _unsupported(
        self,
        options: QueryOptions,
        run: QueryRun,
        judged: list[Judgement],
        clock: float,
        why: str = "None of the retrieved passages was judged relevant to the question.",
    ) -> ModeEvents:
        """No retrieved chunk is relevant (`why` says how that was found): say so, or answer
        unsupported when allowed."""
        if "relevance" not in run.timings_ms:
            yield RelevanceEvent(judged)
        yield EvidenceEvent([])
        answer = NO_SUPPORT_ANSWER
        analysis = why
        if options.allow_unsupported:
            writing = self._own_knowledge(options, run)
            async for event in writing:
                yield event
            answer = writing.value
            analysis += " The answer below comes from the model's own knowledge and cites nothing."
            run.mark("analysis", clock)
        yield AnalysisEvent(analysis)
        yield AnswerEvent(answer, [])
        yield Outcome(answer=answer, analysis=analysis, relevance=judged, supported=False)

    async def _conclude(
        self,
        question: str,
        judged: list[Judgement],
        evidence: list[Evidence],
        analysis: str,
        answer: str,
        passages: list[Passage],
        scores: SentenceScores,
    ) -> list[QueryEvent | Outcome]:
        outcome = await conclude(
            question,
            judged,
            evidence,
            analysis,
            answer,
            passages,
            scores,
            self._texts,
            self._settings.answer_max_chars,
        )
        return [
            AnalysisEvent(outcome.analysis),
            AnswerEvent(outcome.answer, outcome.citations),
            outcome,
        ]
