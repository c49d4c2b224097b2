"""Values the repository hands back and takes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    media_type: str
    sha256: str
    data: bytes
    # The full uploaded name when `filename` was shortened to fit.
    original_filename: str | None = None


@dataclass(frozen=True)
class UploadOutcome:
    document_id: str
    filename: str
    status: str  # "queued" | "duplicate"
    # Same-named documents this one replaces once it is ready (upload with on_existing=replace).
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk with what a search hit needs."""

    chunk_id: int
    document_id: str
    filename: str
    text: str
    start: int
    end: int
