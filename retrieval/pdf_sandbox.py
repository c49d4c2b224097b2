"""PDF text extraction in a child process, bounded in time and memory.

pypdf runs in the worker's own process otherwise, and a hostile PDF can make it decompress
gigabytes (a zip-bomb content stream) or walk an enormous page tree for hours. Here a fresh
interpreter (`python -I` running this file, which imports nothing but pypdf and the standard
library) caps its own address space with RLIMIT_AS before it reads a byte, and the parent kills
it after `timeout_s`. Either way the document fails with a clear message and the worker lives.

A fresh interpreter rather than fork(): forking a worker that holds torch threads and a loaded
model is unsafe and would copy its memory into the limit; rather than multiprocessing's spawn:
that re-imports the parent's main module (celery, the API) in the child.

The protocol: PDF bytes on stdin; on stdout one JSON object, {"text": ...} or
{"error": ..., "kind": "password" | "memory" | "unreadable"}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_CHILD = Path(__file__).resolve()


class PdfSandboxError(Exception):
    """The PDF could not be read within the bounds; the message says why, for the user."""


def extract_pdf_text(data: bytes, timeout_s: float, memory_mb: int) -> str:
    """Text of every page, pages separated by a blank line.

    Raises PdfSandboxError when the PDF is unreadable, password protected, needs more than
    `memory_mb` of memory or more than `timeout_s` seconds.
    """
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and file, no shell
            [sys.executable, "-I", str(_CHILD), str(memory_mb)],
            input=data,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PdfSandboxError(
            f"could not read PDF: it took longer than {timeout_s:g}s and was stopped"
        ) from None
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        # Died before it could answer: most often an allocation failing under RLIMIT_AS
        # outside Python's reach (in zlib, say).
        raise PdfSandboxError(
            f"{_memory_message(memory_mb)} (or crashed; exit status {done.returncode})"
        ) from None
    if "text" in reply:
        return str(reply["text"])
    raise PdfSandboxError(str(reply.get("error", "could not read PDF")))


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


def _child(memory_mb: int) -> None:  # pragma: no cover - runs in the child process
    import resource

    limit = memory_mb * 1024 * 1024
    # Before reading any input: nothing the PDF makes us allocate can pass this.
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    data = sys.stdin.buffer.read()
    try:
        reply = read_pdf(data)
    except MemoryError:
        reply = {"error": _memory_message(memory_mb)}
    sys.stdout.write(json.dumps(reply))


def _memory_message(memory_mb: int) -> str:
    return f"could not read PDF: it needs more than {memory_mb} MB of memory"


if __name__ == "__main__":  # pragma: no cover
    _child(int(sys.argv[1]))
