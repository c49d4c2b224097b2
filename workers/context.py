"""What a task needs (database, embedders), built once per process on first use.

Built lazily so a prefork worker loads the model in each child after the fork, never at import
time. The API process installs its own context when it runs ingestion in-process, so the
embedded worker thread shares the API's already-loaded embedder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.db import Database
from core.settings import Settings, get_settings
from retrieval.embedders import EmbedderPool

if TYPE_CHECKING:
    from workers.queue import TaskQueue


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    db: Database
    embedders: EmbedderPool
    # Where tasks enqueue follow-up tasks: the broker in a worker, the API's threads embedded.
    queue: TaskQueue


_context: WorkerContext | None = None
_lock = threading.Lock()


def get_context() -> WorkerContext:
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                from workers.queue import make_queue

                settings = get_settings()
                _context = WorkerContext(
                    settings,
                    Database(settings),
                    EmbedderPool(settings.embedder),
                    make_queue(settings),
                )
    return _context


def install_context(context: WorkerContext | None) -> None:
    global _context
    with _lock:
        _context = context
