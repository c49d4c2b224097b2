"""Answers before uploads, when one process does both (the embedded default).

The embedded default ingests uploads on a thread of the API process, on the same cores the
embedded model answers on. Encoding chunks beside a generation made a reasoning step 1.7× slower
(scripts/bench_threads.py, docs/performance.md): two busy pools of threads on two cores. A person
is waiting for the answer; nobody waits on the upload's next batch. So while the embedded model
generates, and for a moment after each call (the steps of one answer follow each other within
that moment), background encoding waits before its next batch — at most `MAX_WAIT_S` per batch,
so a steady stream of questions slows an upload down but never stops it.

In the deployed layout (Celery workers in their own processes or machines) nothing here waits:
the worker's process never generates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

# A background batch waits at most this long for the answers in progress.
MAX_WAIT_S = 30.0
# After a generation ends, the next step of the same answer usually starts within this.
LINGER_S = 1.0
# Texts encoded between two checks: about a second of work on two cores.
BATCH = 64

_state = threading.Condition()
_generating = 0
_last_end = 0.0


@contextmanager
def generating() -> Iterator[None]:
    """Mark a generation by the in-process model (background work waits meanwhile)."""
    global _generating, _last_end
    with _state:
        _generating += 1
    try:
        yield
    finally:
        with _state:
            _generating -= 1
            _last_end = time.monotonic()
            _state.notify_all()


def _busy() -> float:
    """Seconds to wait before background work may go on (0: free now)."""
    if _generating:
        return LINGER_S
    return max(_last_end + LINGER_S - time.monotonic(), 0.0)


def wait_for_turn(max_wait: float = MAX_WAIT_S) -> float:
    """Block while the in-process model generates (or just did), at most `max_wait` seconds;
    returns the seconds waited."""
    started = time.monotonic()
    deadline = started + max_wait
    with _state:
        while (pause := _busy()) > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _state.wait(min(pause, left))
    return time.monotonic() - started


def encode_in_background(
    encode: Callable[[list[str]], np.ndarray], texts: Sequence[str]
) -> np.ndarray:
    """`encode(texts)` a batch at a time, waiting for the answers in progress before each
    batch. Texts go longest first, as the encoder would sort them itself, so batches pad as
    little as one call over all of them would; the vectors come back in the order given."""
    if len(texts) <= BATCH:
        wait_for_turn()
        return encode(list(texts))
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    parts = []
    for start in range(0, len(order), BATCH):
        wait_for_turn()
        parts.append(encode([texts[i] for i in order[start : start + BATCH]]))
    encoded = np.concatenate(parts)
    vectors = np.empty_like(encoded)
    vectors[order] = encoded
    return vectors
