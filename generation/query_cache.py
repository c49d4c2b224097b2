"""Query-result cache: Redis in deployment, an in-process LRU in the embedded default.

The key covers everything an answer depends on (normalized question, collection, its
index_version, embedder, generator model or adapter, pipeline parameters), so an ingest or an
embedder switch can never serve a stale answer. A cache that is down degrades to a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import unicodedata
from collections import OrderedDict
from typing import Any, Protocol

from core.settings import CacheSettings

log = logging.getLogger(__name__)

KEY_PREFIX = "rag:query:"


class QueryCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    async def aget(self, key: str) -> dict[str, Any] | None:
        """`get` on the event loop."""
        ...

    def set(self, key: str, value: dict[str, Any]) -> None: ...
    def check(self) -> str:
        """Readiness: "ok", "memory", or "down"."""
        ...

    def close(self) -> None: ...
    async def aclose(self) -> None:
        """Close what `aget` opened on the event loop."""
        ...


# Sentence-final punctuation a question may end with or not: "What is BIOS?", "what is bios",
# "What is BIOS ?!" and "What is BIOS." ask the same thing (the ideographic and fullwidth forms
# are folded by NFKC or listed here). Inner punctuation stays: it can change the question.
_TRAILING_PUNCTUATION = "?!.;:,…。？！"


def normalize_question(question: str) -> str:
    """The question as the cache keys it: Unicode-normalized (NFKC), case-folded, whitespace
    collapsed, and without trailing sentence punctuation; a question of only punctuation is
    kept as it is."""
    words = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    return words.rstrip(_TRAILING_PUNCTUATION + " ") or words


def cache_key(**parts: Any) -> str:
    parts["question"] = normalize_question(str(parts.get("question", "")))
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return KEY_PREFIX + hashlib.sha256(blob.encode()).hexdigest()


class MemoryQueryCache:
    """A bounded LRU with a TTL, for one process."""

    def __init__(self, settings: CacheSettings) -> None:
        self._ttl = settings.ttl_s
        self._max = settings.memory_entries
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    async def aget(self, key: str) -> dict[str, Any] | None:
        return self.get(key)  # a dictionary read under a lock held for microseconds

    def set(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self._ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def check(self) -> str:
        return "ok (in-process)"

    def close(self) -> None:
        self._items.clear()

    async def aclose(self) -> None:
        pass


class RedisQueryCache:
    """Redis with short timeouts: a dead or slow Redis costs a miss, never a failed query."""

    OPTIONS: dict[str, Any] = {
        "socket_timeout": 0.25,
        "socket_connect_timeout": 0.25,
        "health_check_interval": 30,
    }

    def __init__(self, url: str, settings: CacheSettings) -> None:
        import redis

        self._url = url
        self._ttl = settings.ttl_s
        self._client = redis.Redis.from_url(url, **self.OPTIONS)
        # The event loop's client (redis.asyncio), made on the first `aget`: it belongs to the
        # loop that first uses it.
        self._async: Any = None
        self._errors = (redis.RedisError, OSError)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self._client.get(key)
        except self._errors as exc:
            log.warning("query cache unavailable: %s", exc.__class__.__name__)
            return None
        return _decode(raw)

    async def aget(self, key: str) -> dict[str, Any] | None:
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(self._url, **self.OPTIONS)
        try:
            raw = await self._async.get(key)
        except (*self._errors, TimeoutError) as exc:
            log.warning("query cache unavailable: %s", exc.__class__.__name__)
            return None
        return _decode(raw)

    def set(self, key: str, value: dict[str, Any]) -> None:
        try:
            self._client.set(key, json.dumps(value, separators=(",", ":")), ex=self._ttl)
        except self._errors as exc:
            log.warning("query cache unavailable: %s", exc.__class__.__name__)

    def check(self) -> str:
        try:
            self._client.ping()
        except self._errors:
            return "down"
        return "ok"

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        if self._async is not None:
            client, self._async = self._async, None
            await client.aclose()


def _decode(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    value: dict[str, Any] = json.loads(raw)
    return value


def make_cache(redis_url: str, settings: CacheSettings) -> QueryCache:
    return RedisQueryCache(redis_url, settings) if redis_url else MemoryQueryCache(settings)
