"""The tasks' retry policy, shared by every task module: which failures a later try can fix,
how they are retried, and when a task is acknowledged."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, OperationalError

# Only failures that a later try can fix; a broken file is not one of them (it fails alone).
TRANSIENT_ERRORS = (
    OperationalError,
    DBAPIError,
    RedisConnectionError,
    ConnectionError,
    TimeoutError,
)


# Task options: retried with backoff on transient errors, acknowledged only once done.
RETRY: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}
