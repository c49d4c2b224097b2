"""Key format, role rules, the bind rule and the in-process rate limiter (no I/O)."""

from __future__ import annotations

import hashlib

import pytest

from app.auth import bind_refusal, is_loopback, required_role
from app.rate_limit import MemoryRateLimiter
from core.api_keys import Principal, parse_key, secret_matches
from core.settings import AuthSettings, Settings


def test_keys_parse_only_in_their_exact_format() -> None:
    secret = "A" * 43
    assert parse_key(f"rag_0123456789ab_{secret}") == ("0123456789ab", secret)
    for bad in (
        "",
        "rag_",
        f"rag_0123456789ab_{secret}x",
        f"rag_0123456789AB_{secret}",
        f"xyz_0123456789ab_{secret}",
        f"rag_0123456789ab_{'A' * 42}!",
    ):
        assert parse_key(bad) is None, bad


def test_secret_is_compared_by_its_hash() -> None:
    stored = hashlib.sha256(b"s3cret").hexdigest()
    assert secret_matches("s3cret", stored)
    assert not secret_matches("s3creT", stored)


def test_admin_may_do_everything_query_only_query() -> None:
    assert Principal("a", "admin").may("admin") and Principal("a", "admin").may("query")
    assert Principal("q", "query").may("query") and not Principal("q", "query").may("admin")
    assert required_role("/admin/v1/collections") == "admin"
    assert required_role("/admin") == "admin"
    assert required_role("/administrator") == "query"
    assert required_role("/v1/search") == "query"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_may_serve_without_keys(host: str) -> None:
    assert is_loopback(host)
    assert bind_refusal(host, keys_exist=False, settings=Settings()) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.org"])  # noqa: S104
def test_public_address_without_keys_is_refused_unless_allowed(host: str) -> None:
    refusal = bind_refusal(host, keys_exist=False, settings=Settings())
    assert refusal is not None and "rag keys create" in refusal
    assert bind_refusal(host, keys_exist=True, settings=Settings()) is None
    allowed = Settings(auth=AuthSettings(allow_unauthenticated=True))
    assert bind_refusal(host, keys_exist=False, settings=allowed) is None


def test_memory_rate_limiter_counts_per_bucket_and_says_when_to_retry() -> None:
    limiter = MemoryRateLimiter(window_s=60)
    assert [limiter.hit("a", 2).allowed for _ in range(3)] == [True, True, False]
    assert 1 <= limiter.hit("a", 2).retry_after_s <= 60
    assert limiter.hit("b", 2).allowed, "another key has its own window"


def test_memory_rate_limiter_window_restarts() -> None:
    limiter = MemoryRateLimiter(window_s=0)
    assert all(limiter.hit("a", 1).allowed for _ in range(5))
