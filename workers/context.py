"""What a task needs (database, embedders), built once per process on first use.

Built lazily so a prefork worker loads the model in each child after the fork, never at import
time. The API process installs its own context when it runs ingestion in-process, so the
embedded worker thread shares the API's already-loaded embedder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from core.db import Database
from core.settings import Settings, get_settings
from retrieval.embedders import EmbedderPool


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    db: Database
    embedders: EmbedderPool


_context: WorkerContext | None = None
_lock = threading.Lock()


def get_context() -> WorkerContext:
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                settings = get_settings()
                _context = WorkerContext(
                    settings, Database(settings), EmbedderPool(settings.embedder)
                )
    return _context


def install_context(context: WorkerContext | None) -> None:
    global _context
    with _lock:
        _context = context
