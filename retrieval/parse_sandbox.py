"""Text extraction in a child process, bounded in time and memory, for every format but plain
text, Markdown and HTML: PDFs and the office, e-book, mail and data formats of
retrieval/document_formats.py. The bounds are the settings RAG_INGEST__PDF_TIMEOUT_S and
RAG_INGEST__PDF_MEMORY_MB, named after the first format sandboxed; they apply to every format.

pypdf runs in the worker's own process otherwise, and a hostile PDF can make it decompress
gigabytes (a zip-bomb content stream) or walk an enormous page tree for hours. Here a fresh
interpreter (`python -I` running this file, which imports nothing but pypdf and the standard
library) caps its own address space with RLIMIT_AS before it reads a byte, and the parent kills
it after `timeout_s`. Either way the document fails with a clear message and the worker lives.

A fresh interpreter rather than fork(): forking a worker that holds torch threads and a loaded
model is unsafe and would copy its memory into the limit; rather than multiprocessing's spawn:
that re-imports the parent's main module (celery, the API) in the child.

The protocol: the file's bytes on stdin, its kind and limits as arguments; on stdout one JSON
object: {"text": ...} for a PDF, {"parts": [[form, text], ...]} for the other formats (form
"text", or "html" that the parent renders), or {"error": ...}. The child puts the checkout on
sys.path only to import retrieval/document_formats.py, which imports the standard library and
the format's own library, nothing else of the project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_CHILD = Path(__file__).resolve()
_CHECKOUT = _CHILD.parent.parent
# Text limits of the other formats when a caller gives none.
DEFAULT_MAX_CHARS = 20_000_000
DEFAULT_MAX_UNPACKED_BYTES = 512 * 1024 * 1024


class SandboxError(Exception):
    """The file could not be read within the bounds; the message says why, for the user."""


def extract_pdf_text(data: bytes, timeout_s: float, memory_mb: int) -> str:
    """Text of every page, pages separated by a blank line.

    Raises SandboxError when the PDF is unreadable, password protected, needs more than
    `memory_mb` of memory or more than `timeout_s` seconds.
    """
    reply = _run_child(data, "pdf", "PDF", timeout_s, memory_mb, 0, 0)
    return str(reply["text"])


def extract_parts(
    data: bytes,
    kind: str,
    label: str,
    timeout_s: float,
    memory_mb: int,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> list[tuple[str, str]]:
    """The text parts of a document of `kind` (retrieval/document_formats.py READERS), read
    in the bounded child. `label` names the format in messages ("Word document").

    Raises SandboxError when the file is unreadable, over a limit, needs more than
    `memory_mb` of memory or more than `timeout_s` seconds.
    """
    reply = _run_child(data, kind, label, timeout_s, memory_mb, max_chars, max_unpacked_bytes)
    return [(str(form), str(text)) for form, text in reply["parts"]]


def _run_child(
    data: bytes,
    kind: str,
    label: str,
    timeout_s: float,
    memory_mb: int,
    max_chars: int,
    max_unpacked_bytes: int,
) -> dict[str, Any]:
    argv = [str(memory_mb), kind, label, str(max_chars), str(max_unpacked_bytes)]
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and file, no shell
            [sys.executable, "-I", str(_CHILD), *argv],
            input=data,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(
            f"could not read {label}: it took longer than {timeout_s:g}s and was stopped"
        ) from None
    try:
        reply: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        # Died before it could answer: most often an allocation failing under RLIMIT_AS
        # outside Python's reach (in zlib, say).
        raise SandboxError(
            f"{_memory_message(memory_mb, label)} (or crashed; exit status {done.returncode})"
        ) from None
    if "text" in reply or "parts" in reply:
        return reply
    raise SandboxError(str(reply.get("error", f"could not read {label}")))


def read_pdf(data: bytes) -> dict[str, str]:
    """{"text": ...} or {"error": ...}; never raises but MemoryError. Runs in the child (and,
    unbounded, in tests that fuzz pypdf itself)."""
    import io

    from pypdf import PasswordType, PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            return {"error": "could not read PDF: it is protected by a password"}
        return {"text": "\n\n".join(page.extract_text() for page in reader.pages)}
    except MemoryError:
        raise
    except Exception as exc:  # pypdf raises many unrelated types on corrupt input
        lines = str(exc).strip().splitlines()
        reason = (lines[0] if lines else type(exc).__name__)[:200]
        return {"error": f"could not read PDF: {reason}"}


def read_other(
    data: bytes, kind: str, label: str, max_chars: int, max_unpacked_bytes: int
) -> dict[str, Any]:
    """{"parts": ...} or {"error": ...} for a non-PDF kind; never raises but MemoryError."""
    sys.path.insert(0, str(_CHECKOUT))
    from retrieval.document_formats import FormatError, read

    try:
        return {"parts": read(kind, data, max_chars, max_unpacked_bytes)}
    except FormatError as exc:
        return {"error": f"could not read {label}: {exc}"}


def _child(argv: list[str]) -> None:  # pragma: no cover - runs in the child process
    import resource

    memory_mb = int(argv[0])
    kind, label = (argv[1], argv[2]) if len(argv) > 2 else ("pdf", "PDF")
    limit = memory_mb * 1024 * 1024
    # Before reading any input: nothing the file makes us allocate can pass this.
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    data = sys.stdin.buffer.read()
    try:
        if kind == "pdf":
            reply = read_pdf(data)
        else:
            reply = read_other(data, kind, label, int(argv[3]), int(argv[4]))
    except MemoryError:
        reply = {"error": _memory_message(memory_mb, label)}
    sys.stdout.write(json.dumps(reply))


def _memory_message(memory_mb: int, label: str = "PDF") -> str:
    return f"could not read {label}: it needs more than {memory_mb} MB of memory"


if __name__ == "__main__":  # pragma: no cover
    _child(sys.argv[1:])
