"""Queries end to end: resolve, look up the cache, run the pipeline, store the result.

`QueryService.ask` is the one entry: it fails early on what the caller got wrong (unknown
collection or adapter, as RagError, before any response starts) and returns a `QueryAnswer`,
whose `events()` stream the query (replayed from the cache on a hit) and whose `result()` is the
final response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from core.collection_state import CollectionState, CollectionStates
from core.metrics import GENERATOR_TOKENS, QUERY_CACHE_REQUESTS, QUERY_STEP_SECONDS
from core.settings import PipelineSettings
from generation.llm.lora_adapters import AdapterRegistry
from generation.query_cache import QueryCache, cache_key
from generation.reasoning.follow_ups import standalone_question
from generation.reasoning.pipeline import SelfReasoningPipeline
from generation.reasoning.prompts import PROMPT_VERSION
from generation.reasoning.results import (
    DoneEvent,
    QueryEvent,
    QueryResult,
    RetrievalEvent,
    Usage,
    replay,
)
from generation.reasoning.values import QueryOptions

log = logging.getLogger(__name__)

Cached = tuple[RetrievalEvent, QueryResult]


class QueryService:
    def __init__(
        self,
        pipeline: SelfReasoningPipeline,
        cache: QueryCache,
        states: CollectionStates,
        settings: PipelineSettings,
        adapters: AdapterRegistry,
    ) -> None:
        self._pipeline = pipeline
        self._adapters = adapters
        self._cache = cache
        self._states = states
        # Settings never change in a process: dump them into the key parts once.
        self._pipeline_parts = settings.model_dump()
        # Another critic declines and supports other answers.
        self._pipeline_parts["critic"] = pipeline.critic.manifest.sha256

    @property
    def cache(self) -> QueryCache:
        return self._cache

    async def ask(self, options: QueryOptions) -> QueryAnswer:
        """Fail early (unknown collection or adapter, as RagError), compute the cache key and
        look it up. A collection state the cache holds is read on the event loop, with the
        query cache's async client; otherwise the database read and the cache read go to a
        thread together."""
        started = time.perf_counter()
        model = self._pipeline.generator.model
        if options.adapter is not None:
            # Loaded on first use from its registration or bundled folder.
            model = await self._adapters.ensure(options.adapter)
        standalone = None
        if options.history:
            # The collection must exist before a generation is spent on the rewrite.
            if self._states.peek(options.collection) is None:
                await asyncio.to_thread(self._states.get, options.collection)
            standalone = await standalone_question(
                self._pipeline.generator, options.history, options.question
            )
            # From here on the follow-up is the question it stands for: searched, reasoned
            # about and cached as that.
            options = replace(options, question=standalone, history=())
        state = self._states.peek(options.collection)
        if state is None:
            key, entry = await asyncio.to_thread(self._lookup, options, model)
        else:
            key = self._key(options, model, state)
            entry = await self._cache.aget(key) if options.use_cache else None
        cached = _read_cached(entry)
        if options.use_cache:
            QUERY_CACHE_REQUESTS.labels("miss" if cached is None else "hit").inc()
        return QueryAnswer(self, options, key, cached, started, standalone)

    def _lookup(self, options: QueryOptions, model: str) -> tuple[str, dict[str, Any] | None]:
        key = self._key(options, model, self._states.get(options.collection))
        return key, self._cache.get(key) if options.use_cache else None

    def _key(self, options: QueryOptions, model: str, state: CollectionState) -> str:
        return cache_key(
            question=options.question,
            collection=options.collection,
            # The id as well as the name: a collection deleted and created again under the same
            # name starts at version 0 again, and must not be served the old one's answers.
            collection_id=state.id,
            index_version=state.index_version,
            embedder=state.embedder,
            model=model,  # the base model, or which adapter (name, path, manifest date)
            mode=options.mode,
            top_k=options.top_k,
            retrieval=options.retrieval,
            allow_unsupported=options.allow_unsupported,
            pipeline=self._pipeline_parts,
            # Reworded prompts give other answers: an upgrade must not serve the old wording's.
            prompt_version=PROMPT_VERSION,
        )

    async def _run(self, options: QueryOptions, key: str) -> AsyncIterator[QueryEvent]:
        """The pipeline's events; a complete, undegraded result is cached."""
        retrieval: dict[str, Any] = {}
        async for event in self._pipeline.run(options):
            if isinstance(event, RetrievalEvent):
                retrieval = event.data()
            if isinstance(event, DoneEvent):
                result = event.result
                record_metrics(result.timings_ms, result.usage)
                if result.degraded is None:
                    entry = {"retrieval": retrieval, "done": result.to_json()}
                    await asyncio.to_thread(self._cache.set, key, entry)
            yield event


class QueryAnswer:
    """One admitted query: its events as they happen (or replayed, when cached), or its
    final result."""

    def __init__(
        self,
        service: QueryService,
        options: QueryOptions,
        key: str,
        cached: Cached | None,
        started: float,
        standalone: str | None = None,
    ) -> None:
        self._service = service
        # The question searched for, when a follow-up was rewritten to stand alone.
        self._standalone = standalone
        self._options = options
        self._key = key
        self._cached = cached
        # perf_counter() when the query was received: a cached answer's own timings start here.
        self._started = started

    async def events(self) -> AsyncIterator[QueryEvent]:
        if self._cached is not None:
            retrieval, result = self._cached
            for event in replay(retrieval, self._cached_result(result)):
                yield event
            return
        async for event in self._service._run(self._options, self._key):
            if isinstance(event, DoneEvent) and self._standalone is not None:
                # Cached without it: the same question asked outright hits the same entry.
                event = DoneEvent(replace(event.result, standalone_question=self._standalone))
            yield event

    async def result(self) -> QueryResult:
        """The final response (a cached one at once, `cached` true)."""
        if self._cached is not None:
            return self._cached_result(self._cached[1])
        final: QueryResult | None = None
        async for event in self.events():
            if isinstance(event, DoneEvent):
                final = event.result
        if final is None:  # the pipeline always ends with done; this guards the contract
            raise RuntimeError("the query ended without a result")
        return final

    def _cached_result(self, result: QueryResult) -> QueryResult:
        """A cached result's `timings_ms` are this request's own (the lookup, from when it was
        received); the run that computed it keeps its under `original_timings_ms`."""
        elapsed = round((time.perf_counter() - self._started) * 1000, 2)
        return replace(
            result,
            standalone_question=self._standalone,
            cached=True,
            timings_ms={"cache": elapsed, "total": elapsed},
            original_timings_ms=result.timings_ms,
        )


def _read_cached(entry: Mapping[str, Any] | None) -> Cached | None:
    """A cache entry as typed values; an entry that does not read (written by another
    version) counts as a miss and is computed again."""
    if entry is None:
        return None
    try:
        return RetrievalEvent.from_json(entry.get("retrieval", {})), QueryResult.from_json(
            entry["done"]
        )
    except (KeyError, TypeError, AttributeError) as exc:
        log.warning("query cache entry unreadable, computing again: %r", exc)
        return None


def record_metrics(timings_ms: Mapping[str, float], usage: Usage) -> None:
    """Step latencies and generator tokens of a query the pipeline ran (cached ones cost none)."""
    for step, ms in timings_ms.items():
        QUERY_STEP_SECONDS.labels(step).observe(ms / 1000)
    # cached_prompt: prompt tokens the server took from its prefix cache (vLLM, when reported).
    for kind, tokens in (
        ("prompt", usage.prompt_tokens),
        ("completion", usage.completion_tokens),
        ("cached_prompt", usage.cached_prompt_tokens),
    ):
        if tokens > 0:
            GENERATOR_TOKENS.labels(kind).inc(tokens)
