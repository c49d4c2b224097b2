"""Query-cache keys and the in-process LRU."""

from __future__ import annotations

import time

import pytest

from core.collection_state import CollectionState
from core.settings import CacheSettings, PipelineSettings
from generation import query_service
from generation.query_cache import MemoryQueryCache, cache_key
from generation.query_service import QueryService
from generation.reasoning.values import QueryOptions


def key(**overrides: object) -> str:
    parts: dict[str, object] = {
        "question": "What is BIOS?",
        "collection": "docs",
        "index_version": 3,
        "embedder": "all-MiniLM-L6-v2",
        "model": "m",
    }
    parts.update(overrides)
    return cache_key(**parts)


def test_key_ignores_case_and_spacing_of_the_question() -> None:
    assert key(question="  what   is bios? ") == key()


def test_key_ignores_trailing_punctuation_of_the_question() -> None:
    same_questions = [
        "what is bios",
        "WHAT IS BIOS",
        "What is BIOS ?",
        "What is BIOS?!",
        "What is BIOS.",
        "what is bios？",
        "  What\tis BIOS ... ",
    ]
    for same in same_questions:
        assert key(question=same) == key(), same
    # Only the end is trimmed: inner punctuation and words still tell questions apart.
    assert key(question="What is BIOS? ROM?") != key()
    assert key(question="What is B.I.O.S?") != key()
    assert key(question="?") != key(question="!")


def test_key_changes_with_everything_an_answer_depends_on() -> None:
    base = key()
    for change in (
        {"index_version": 4},
        {"embedder": "other"},
        {"model": "adapter-a"},
        {"collection": "c2"},
        {"question": "What is ROM?"},
    ):
        assert key(**change) != base, change


def test_memory_cache_is_a_bounded_lru_with_ttl() -> None:
    cache = MemoryQueryCache(CacheSettings(memory_entries=2, ttl_s=60))
    cache.set("a", {"v": 1})
    cache.set("b", {"v": 2})
    assert cache.get("a") == {"v": 1}
    cache.set("c", {"v": 3})  # evicts b, the least recently used
    assert cache.get("b") is None
    assert cache.get("a") == {"v": 1}

    short = MemoryQueryCache(CacheSettings(ttl_s=0))
    short.set("x", {"v": 1})
    time.sleep(0.01)
    assert short.get("x") is None


def test_the_service_key_changes_with_the_prompt_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only _key is exercised: it reads the settings, nothing else of the service's parts.
    service = QueryService.__new__(QueryService)
    service._pipeline_parts = PipelineSettings().model_dump()
    state = CollectionState(id="c1", index_version=3, embedder="e", retrieval=None)
    options = QueryOptions(collection="docs", question="What is BIOS?", top_k=5)
    before = service._key(options, "m", state)
    assert service._key(options, "m", state) == before
    monkeypatch.setattr(query_service, "PROMPT_VERSION", "steps-next")
    assert service._key(options, "m", state) != before
