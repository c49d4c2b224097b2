"""Files named as text must be text (issue 36): a PNG renamed fake.txt is refused with the
reason, while real text in any of the encodings the parser reads is accepted."""

from __future__ import annotations

import os
import zlib

import pytest

from core.errors import DocumentError
from retrieval.parsing import detect_media_type, extract_text
from retrieval.text_check import not_text_reason

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + zlib.compress(os.urandom(500))


@pytest.mark.parametrize(
    "data",
    [
        b"Plain ASCII text.\n\tIndented\r\nWindows line.\n" * 20,
        "UTF-8: naïve café, 日本語, emoji 🙂\n".encode() * 20,
        "Windows-1252: “quotes” – café crème\n".encode("cp1252") * 20,
        "Cyrillic in cp1251: Привет, мир\n".encode("cp1251") * 20,
        "UTF-16 with a byte-order mark\n".encode("utf-16"),
        "UTF-32 with a byte-order mark\n".encode("utf-32"),
        b"\x1b[31mred\x1b[0m log line with ANSI colours\n" * 10,
        b"N\bNA\bAM\bME\bE (nroff overstrike)\n" * 10,
        b"an old DOS file\r\n" * 5 + b"\x1a",
        b"a log line\n" * 30 + b"then one stray NUL\x00\n",
        b"",
    ],
)
def test_text_in_any_encoding_reads_as_text(data: bytes) -> None:
    assert not_text_reason(data) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (PNG, "it is a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(400), "it is a JPEG image"),
        (b"PK\x03\x04\x14\x00\x00\x00" + os.urandom(400), "it is a zip archive"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(200), "it is an ELF executable"),
        (zlib.compress(os.urandom(4000)), "binary data"),
        (bytes(range(256)) * 8, "binary data"),
        ("UTF-16 without a mark\n".encode("utf-16-le") * 10, "UTF-16 text without a byte-order"),
    ],
)
def test_binary_data_is_not_text_and_the_reason_says_what_it_is(data: bytes, reason: str) -> None:
    found = not_text_reason(data)
    assert found is not None and reason in found


def test_binary_data_after_a_page_of_text_is_found() -> None:
    data = b"A line of perfectly good text.\n" * 40_000 + os.urandom(70_000)
    found = not_text_reason(data)
    assert found is not None and "binary data from byte" in found


def test_a_png_renamed_fake_txt_is_refused_as_unsupported() -> None:
    with pytest.raises(DocumentError) as refused:
        detect_media_type("fake.txt", PNG)
    assert refused.value.code == "unsupported_media_type"
    assert "not text (it is a PNG image)" in refused.value.message
    assert "as a .txt file" in refused.value.message
    for name in ("fake.md", "fake.csv", "fake.json", "fake.xml", "fake.html", "fake.eml"):
        with pytest.raises(DocumentError):
            detect_media_type(name, PNG)
    # Its real name is refused as before, and a PDF named .txt is still read as a PDF.
    with pytest.raises(DocumentError, match="unsupported file type"):
        detect_media_type("photo.png", PNG)
    assert detect_media_type("export.txt", b"%PDF-1.4\n" + bytes(50)) == "application/pdf"


def test_extraction_refuses_binary_stored_before_the_check() -> None:
    with pytest.raises(DocumentError, match="not text"):
        extract_text(PNG, "text/plain")


def test_utf16_text_with_a_byte_order_mark_is_decoded() -> None:
    data = "Port 4711 — in UTF-16.\r\nSecond line.".encode("utf-16")
    assert detect_media_type("ports.txt", data) == "text/plain"
    assert extract_text(data, "text/plain") == "Port 4711 — in UTF-16.\nSecond line."
    csv = "name,port\nstaging,4711\n".encode("utf-16")
    assert "staging | 4711" in extract_text(csv, "text/csv", pdf_timeout_s=30)
