"""Queries end to end: resolve, look up the cache, run the pipeline, store the result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from core.collection_state import CollectionState, CollectionStates
from core.metrics import GENERATOR_TOKENS, QUERY_CACHE_REQUESTS, QUERY_STEP_SECONDS
from core.settings import PipelineSettings
from generation.adapters import AdapterRegistry
from generation.prompts import PROMPT_VERSION
from generation.query_cache import QueryCache, cache_key
from generation.self_reasoning import Event, QueryOptions, SelfReasoningPipeline


@dataclass(frozen=True)
class PreparedQuery:
    options: QueryOptions
    cache_key: str
    # The cached result, looked up while preparing (None: a miss, or the cache was skipped).
    cached: dict[str, Any] | None = None
    # perf_counter() when the query was received: a cached answer's own timings start here.
    started: float = field(default_factory=time.perf_counter)


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
        self._settings = settings
        # Settings never change in a process: dump them into the key parts once.
        self._pipeline_parts = settings.model_dump()

    @property
    def cache(self) -> QueryCache:
        return self._cache

    async def prepare(self, options: QueryOptions) -> PreparedQuery:
        """Fail early (unknown collection or adapter, as RagError), compute the cache key and
        look it up. A collection state the cache holds is read on the event loop, with the
        query cache's async client; otherwise the database read and the cache read go to a
        thread together."""
        started = time.perf_counter()
        model = self._pipeline.generator.model
        if options.adapter is not None:
            # Loaded on first use from its registration or bundled folder.
            model = await self._adapters.ensure(options.adapter)
        state = self._states.peek(options.collection)
        if state is None:
            return await asyncio.to_thread(self._prepare, options, model, started)
        key = self._key(options, model, state)
        cached = await self._cache.aget(key) if options.use_cache else None
        return self._prepared(options, key, cached, started)

    def _prepare(self, options: QueryOptions, model: str, started: float) -> PreparedQuery:
        key = self._key(options, model, self._states.get(options.collection))
        cached = self._cache.get(key) if options.use_cache else None
        return self._prepared(options, key, cached, started)

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

    @staticmethod
    def _prepared(
        options: QueryOptions, key: str, cached: dict[str, Any] | None, started: float
    ) -> PreparedQuery:
        if options.use_cache:
            QUERY_CACHE_REQUESTS.labels("miss" if cached is None else "hit").inc()
        return PreparedQuery(options, key, cached, started)

    async def events(self, query: PreparedQuery) -> AsyncIterator[Event]:
        if query.cached is not None:
            for replayed in replay(query.cached, query.started):
                yield replayed
            return
        retrieval: dict[str, Any] = {}
        async for event, data in self._pipeline.run(query.options):
            if event == "retrieval":
                retrieval = data
            if event == "done":
                record_metrics(data)
            if event == "done" and "degraded" not in data:
                await asyncio.to_thread(
                    self._cache.set, query.cache_key, {"retrieval": retrieval, "done": data}
                )
            yield event, data

    async def answer(self, options: QueryOptions) -> dict[str, Any]:
        """The final response of a non-streaming query."""
        final: dict[str, Any] = {}
        async for event, data in self.events(await self.prepare(options)):
            if event == "done":
                final = data
        return final


def cached_body(cached: dict[str, Any], started: float) -> dict[str, Any]:
    """The response body of a cached result: its `timings_ms` are this request's own (the
    lookup, from `started`), the run that computed it keeps its under `original_timings_ms`."""
    done = cached["done"]
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    return dict(
        done,
        cached=True,
        timings_ms={"cache": elapsed, "total": elapsed},
        original_timings_ms=done.get("timings_ms", {}),
    )


def record_metrics(done: dict[str, Any]) -> None:
    """Step latencies and generator tokens of a query the pipeline ran (cached ones cost none)."""
    for step, ms in (done.get("timings_ms") or {}).items():
        if isinstance(ms, int | float):
            QUERY_STEP_SECONDS.labels(step).observe(ms / 1000)
    usage = done.get("usage") or {}
    # cached_prompt: prompt tokens the server took from its prefix cache (vLLM, when reported).
    for kind in ("prompt", "completion", "cached_prompt"):
        tokens = usage.get(f"{kind}_tokens")
        if isinstance(tokens, int) and tokens > 0:
            GENERATOR_TOKENS.labels(kind).inc(tokens)


def replay(cached: dict[str, Any], started: float) -> list[Event]:
    """The streaming events of a cached result, in contract order, marked cached."""
    done = cached_body(cached, started)
    return [
        ("retrieval", cached.get("retrieval", {})),
        ("relevance", {"relevance": done.get("relevance", [])}),
        ("evidence", {"evidence": done.get("evidence", [])}),
        ("analysis", {"analysis": done.get("analysis", "")}),
        ("answer", {"answer": done.get("answer", ""), "citations": done.get("citations", [])}),
        ("done", done),
    ]
