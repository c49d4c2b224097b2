"""Dynamic batching of query embeddings across concurrent requests.

Searches run in the API's worker threads, each encoding one question. A QueryBatcher in front of
the query encoder lets the first question of a burst wait a short window (embedder.
query_batch_window_ms), then encodes every question that arrived meanwhile in one call: one
pass of the model over a small batch costs far less than that many passes of one question each.
A question that arrives while a batch is being encoded waits for the next one; when the thread
that encoded a batch has its own answer and questions are still waiting, one of them takes
over, so no request serves others indefinitely.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from retrieval.embedders import Embedder


@dataclass
class _Pending:
    text: str
    vector: np.ndarray | None = None
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.vector is not None or self.error is not None

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        if self.vector is None:
            raise RuntimeError("query batcher: a question was left unanswered")
        return self.vector


class QueryBatcher:
    """An Embedder whose embed_query batches concurrent questions; documents pass through."""

    def __init__(self, embedder: Embedder, *, window_s: float, max_batch: int) -> None:
        self.id = embedder.id
        self.dim = embedder.dim
        self._embedder = embedder
        self._window_s = window_s
        self._max_batch = max(1, max_batch)
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._busy = False
        # Encoded batches and the questions they held, since start (counters: a long-running
        # server must not keep one entry per batch).
        self.batches = 0
        self.questions = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embedder.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embedder.embed_queries(texts)

    def embed_query(self, text: str) -> np.ndarray:
        item = _Pending(text)
        with self._cond:
            self._pending.append(item)
            idle = not self._busy
            while self._busy and not item.finished:
                self._cond.wait()
            if item.finished:
                return item.result()
            self._busy = True
        try:
            if idle and self._window_s > 0:
                # The first question of a burst: give the others a moment to arrive.
                time.sleep(self._window_s)
            # FIFO: this thread's own question is in one of the next batches.
            while not item.finished:
                with self._cond:
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                self._encode(batch)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return item.result()

    def _encode(self, batch: list[_Pending]) -> None:
        try:
            vectors = self._embedder.embed_queries([p.text for p in batch])
        except BaseException as exc:  # noqa: BLE001 - each waiting request raises it
            outcome: list[tuple[np.ndarray | None, BaseException | None]] = [
                (None, exc) for _ in batch
            ]
        else:
            outcome = [(v, None) for v in vectors]
            self.batches += 1
            self.questions += len(batch)
        with self._cond:
            for p, (vector, error) in zip(batch, outcome, strict=True):
                p.vector, p.error = vector, error
            self._cond.notify_all()
