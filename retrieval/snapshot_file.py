"""Snapshot files of derived indexes (FAISS, BM25): numpy .npz archives written atomically.

A snapshot is a cache of the database, so a file that cannot be trusted is never repaired: its
reader raises SnapshotError and the caller rebuilds from the database. Each snapshot holds the
index's own arrays and a `meta` array, the UTF-8 bytes of a JSON object, stored last.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class SnapshotError(Exception):
    """A snapshot is missing, truncated, inconsistent or made differently (another tokenizer,
    say); rebuild from the database."""


def json_array(value: Any) -> np.ndarray:
    """`value` as JSON, in UTF-8 bytes held by a uint8 array (how .npz stores text here)."""
    return np.frombuffer(json.dumps(value).encode(), np.uint8)


def json_value(array: np.ndarray) -> Any:
    """The value `json_array` stored."""
    return json.loads(array.tobytes().decode())


def write_snapshot(path: Path, meta: dict[str, Any], **arrays: np.ndarray) -> None:
    """Write `arrays` (in their order) and then `meta` to `path` atomically: a temp file in the
    same folder, flushed to disk, then os.replace. A reader sees the old file or the new one,
    never part of one; a failed write leaves no temp file behind."""
    # Any, not ndarray: numpy's stub checks **kwargs against savez's allow_pickle: bool.
    contents: dict[str, Any] = {**arrays, "meta": json_array(meta)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **contents)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_snapshot(path: Path, parse: Callable[[Any], T]) -> T:
    """`parse(arrays)` of the snapshot at `path` (arrays by name, as np.load gives them).

    Raises FileNotFoundError when there is no snapshot, and SnapshotError when reading or
    parsing fails in any other way.
    """
    try:
        with np.load(io.BytesIO(path.read_bytes())) as data:
            return parse(data)
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip, JSON and the index libraries all fail differently
        raise SnapshotError(f"cannot read snapshot {path.name}: {exc}") from exc
