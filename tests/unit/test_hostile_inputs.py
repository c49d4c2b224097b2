"""Hostile documents: HTML that references remote resources, PDFs built to exhaust memory or
time. Parsing must never touch the network, and a PDF must fail alone within its bounds."""

from __future__ import annotations

import socket
import time
import zlib

import pytest

from core.errors import DocumentError
from retrieval.parse_sandbox import read_pdf
from retrieval.parsing import extract_text
from tests.documents import minimal_pdf, pdf_file


def test_html_with_remote_references_parses_without_any_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("parsing tried to use the network")

    # Any connection or name lookup during parsing fails the test.
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    html = b"""<!doctype html><html><head>
      <link rel="stylesheet" href="http://203.0.113.7/style.css">
      <script src="http://203.0.113.7/x.js"></script>
      <meta http-equiv="refresh" content="0; url=http://203.0.113.7/">
      <base href="http://203.0.113.7/">
    </head><body>
      <p>Visible words.<img src="http://203.0.113.7/pixel.gif"></p>
      <iframe src="http://203.0.113.7/frame.html"></iframe>
      <object data="http://203.0.113.7/o.swf"></object>
      <svg><image href="http://203.0.113.7/i.svg"/></svg>
      <p>More words &amp; an entity.</p>
    </body></html>"""
    assert extract_text(html, "text/html") == "Visible words.\n\nMore words & an entity."
    assert attempts == []


def _bomb_pdf(streams: int, mib_each: int) -> bytes:
    """A one-page PDF whose content is `streams` FlateDecode streams, each inflating to
    `mib_each` MiB of spaces from about 1 KB per MiB (a decompression bomb)."""
    compressor = zlib.compressobj(9)
    block = b" " * (1 << 20)
    one = b"".join(compressor.compress(block) for _ in range(mib_each)) + compressor.flush()
    refs = b" ".join(b"%d 0 R" % (4 + i) for i in range(streams))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [%s] >>" % refs,
    ]
    objects += [b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(one), one)]
    objects += objects[-1:] * (streams - 1)
    return pdf_file(objects)


def test_decompression_bomb_pdf_fails_alone_and_fast() -> None:
    # 1 GiB of content from about 1 MB of file. (pypdf 7 itself refuses to inflate more than
    # 75 MB per stream array; the child's memory cap is the backstop for what it does not
    # guard, exercised directly by test_pdf_over_its_memory_bound_fails_cleanly.)
    bomb = _bomb_pdf(16, 64)
    assert len(bomb) < 2 << 20
    started = time.monotonic()
    with pytest.raises(DocumentError) as caught:
        extract_text(bomb, "application/pdf", pdf_timeout_s=60, pdf_memory_mb=256)
    assert caught.value.code in ("unparseable_document", "empty_document")
    assert time.monotonic() - started < 30


def test_pdf_over_its_time_bound_is_stopped() -> None:
    many_pages = minimal_pdf(*(f"Page {i} of a very long report" for i in range(3000)))
    started = time.monotonic()
    with pytest.raises(DocumentError) as caught:
        extract_text(many_pages, "application/pdf", pdf_timeout_s=0.5, pdf_memory_mb=512)
    assert caught.value.code == "unparseable_document"
    assert "longer than 0.5s" in caught.value.message
    assert time.monotonic() - started < 5


def test_pdf_over_its_memory_bound_fails_cleanly() -> None:
    # A normal PDF, but a cap below what the interpreter needs to read it.
    with pytest.raises(DocumentError) as caught:
        extract_text(minimal_pdf("Hello"), "application/pdf", pdf_memory_mb=16)
    assert caught.value.code == "unparseable_document"
    assert "memory" in caught.value.message


def test_the_same_pdf_reads_normally_inside_its_bounds() -> None:
    assert extract_text(minimal_pdf("Hello"), "application/pdf", pdf_memory_mb=512) == "Hello"
    assert read_pdf(minimal_pdf("Hello")) == {"text": "Hello"}
