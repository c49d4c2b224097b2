"""The embedded worker's ingestion queue: collections take turns, one task each, and the
uploads to one collection are served in order."""

from __future__ import annotations

import contextvars
import threading

from workers.embedded import Call, FairQueue


def calls(label: str, count: int) -> list[Call]:
    context = contextvars.copy_context()
    return [Call("rag.ingest_documents", [f"{label}{i}"], context) for i in range(count)]


def drain(queue: FairQueue) -> list[str]:
    taken = []
    while queue.depth():
        call = queue.take()
        assert call is not None
        taken.append(call.args[0])
        queue.done()
    return taken


def test_collections_take_turns_one_task_each() -> None:
    queue = FairQueue()
    queue.put("a", calls("big", 4))
    queue.put("b", calls("small", 1))
    queue.put("c", calls("mid", 2))
    assert queue.depth() == 7
    assert drain(queue) == ["big0", "small0", "mid0", "big1", "mid1", "big2", "big3"]


def test_uploads_to_one_collection_are_served_in_order() -> None:
    queue = FairQueue()
    queue.put("a", calls("first", 2))
    queue.put("b", calls("other", 2))
    queue.put("a", calls("second", 1))
    assert drain(queue) == ["first0", "other0", "first1", "other1", "second0"]


def test_a_new_collection_waits_only_for_the_running_task_and_one_of_each_other() -> None:
    queue = FairQueue()
    queue.put("a", calls("big", 5))
    queue.put("b", calls("mid", 2))
    first = queue.take()  # big0 runs
    assert first is not None and first.args == ["big0"]
    queue.put("c", calls("small", 1))
    queue.put("a", calls("later", 1))  # joins the end of its collection's queue
    assert queue.depth() == 9
    queue.done()
    assert drain(queue) == [
        "mid0",
        "small0",
        "big1",
        "mid1",
        "big2",
        "big3",
        "big4",
        "later0",
    ]


def test_a_collection_whose_running_task_was_its_last_can_come_back() -> None:
    queue = FairQueue()
    queue.put("a", calls("one", 1))
    assert queue.take() is not None
    queue.put("a", calls("two", 1))  # while its only task runs
    queue.done()
    assert drain(queue) == ["two0"]


def test_closing_wakes_the_worker_and_drops_what_waits() -> None:
    queue = FairQueue()
    taken: list[Call | None] = []
    worker = threading.Thread(target=lambda: taken.append(queue.take()))
    worker.start()  # waits: nothing queued
    queue.close()
    worker.join(timeout=5)
    assert taken == [None]

    queue = FairQueue()
    queue.put("a", calls("x", 3))
    queue.close()
    assert queue.take() is None
    assert queue.depth() == 0
