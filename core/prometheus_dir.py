"""prometheus_client's multiprocess folder (PROMETHEUS_MULTIPROC_DIR), without any metric.

Kept apart from core.metrics on purpose: importing core.metrics creates the value files of its
unlabelled metrics, so the folder must be cleared before that import, not after it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def multiprocess_dir() -> Path | None:
    """The folder when this process runs in prometheus_client's multiprocess mode."""
    # prometheus_client itself reads this variable when it is imported, which is why it is an
    # environment variable and not one of our settings.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(folder) if folder else None


def clear_multiprocess_dir() -> None:
    """Remove earlier processes' files; call in the parent before any metric is imported.

    Files left from a previous run would be summed into this run's counters.
    """
    folder = multiprocess_dir()
    if folder is None:
        return
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
