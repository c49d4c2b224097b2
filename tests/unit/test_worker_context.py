"""Tasks get the context whoever runs them handed over (workers/context.py), per thread."""

from __future__ import annotations

import threading
from typing import Any, cast

from workers.context import WorkerContext, current_context, handing


def context(name: str) -> WorkerContext:
    # Only identity matters here: no database, embedder or queue is used.
    fake = cast(Any, name)
    return WorkerContext(fake, fake, fake, fake)


def test_a_task_gets_the_context_handed_to_it_and_nesting_restores_the_outer() -> None:
    outer, inner = context("api-1"), context("api-2")
    with handing(outer):
        assert current_context() is outer
        with handing(inner):
            assert current_context() is inner
        assert current_context() is outer


def test_two_in_process_queues_do_not_see_each_others_context() -> None:
    seen: dict[str, WorkerContext] = {}
    barrier = threading.Barrier(2)

    def run(name: str) -> None:
        mine = context(name)
        with handing(mine):
            barrier.wait(timeout=5)  # both are inside their block at once
            seen[name] = current_context()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cast(Any, seen["a"].settings) == "a"
    assert cast(Any, seen["b"].settings) == "b"
