"""Media type detection and text extraction, on in-memory documents only."""

from __future__ import annotations

import io
import random

import pytest
from pypdf import PdfReader, PdfWriter

from core.errors import DocumentError
from retrieval.parse_sandbox import read_pdf
from retrieval.parsing import SUPPORTED_MEDIA_TYPES, detect_media_type, extract_text
from tests.documents import minimal_pdf


def _encrypted(pdf: bytes, user_secret: str) -> bytes:
    """`pdf` encrypted so that opening it needs `user_secret` ("" opens it without asking)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_secret, "owner-secret")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _raises(code: str, data: bytes, media_type: str) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        extract_text(data, media_type)
    assert caught.value.code == code
    return caught.value


# --- detect_media_type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("notes.txt", "text/plain"),
        ("notes.TEXT", "text/plain"),
        ("README.md", "text/markdown"),
        ("guide.Markdown", "text/markdown"),
        ("page.html", "text/html"),
        ("page.HTM", "text/html"),
        ("paper.pdf", "application/pdf"),
    ],
)
def test_known_extension_decides_media_type(filename: str, expected: str) -> None:
    assert detect_media_type(filename, b"anything") == expected


def test_supported_media_types_keys_are_lowercase_extensions() -> None:
    assert all(ext == ext.lower() and not ext.startswith(".") for ext in SUPPORTED_MEDIA_TYPES)


@pytest.mark.parametrize("filename", ["scan.txt", "scan.md"])
def test_pdf_magic_wins_over_text_extension(filename: str) -> None:
    assert detect_media_type(filename, b"%PDF-1.7\n...") == "application/pdf"


def test_known_extension_wins_over_html_sniffing() -> None:
    assert detect_media_type("page.txt", b"<!DOCTYPE html><p>x</p>") == "text/plain"


@pytest.mark.parametrize("filename", ["upload", "upload.bin", "upload."])
def test_pdf_is_sniffed_without_known_extension(filename: str) -> None:
    assert detect_media_type(filename, minimal_pdf("x")) == "application/pdf"


@pytest.mark.parametrize(
    "data",
    [b"<!DOCTYPE html><html><body>x</body></html>", b"\n  <HTML lang='en'><p>x</p>"],
)
def test_html_is_sniffed_without_known_extension(data: bytes) -> None:
    assert detect_media_type("download", data) == "text/html"


def test_only_the_suffix_of_a_hostile_filename_is_used() -> None:
    assert detect_media_type("../../etc/passwd.md", b"# x") == "text/markdown"
    # The text after the last dot is a path, not an extension, so the content decides.
    assert detect_media_type("evil.md/../x", b"%PDF-1.4") == "application/pdf"


@pytest.mark.parametrize(
    ("filename", "data", "shown"),
    [
        ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00\xff\xff", ".exe"),
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ".png"),
        ("data", b"plain words but no known extension", "no extension"),
    ],
)
def test_unrecognised_upload_is_rejected_with_supported_types(
    filename: str, data: bytes, shown: str
) -> None:
    with pytest.raises(DocumentError) as caught:
        detect_media_type(filename, data)
    assert caught.value.code == "unsupported_media_type"
    assert shown in caught.value.message
    assert ".pdf" in caught.value.message and ".md" in caught.value.message


# --- plain text and markdown ----------------------------------------------------------------


def test_utf8_text_drops_bom_and_normalizes_newlines() -> None:
    data = "\ufeffline one\r\nline two\rline three\n".encode()
    assert extract_text(data, "text/plain") == "line one\nline two\nline three"


def test_non_utf8_text_falls_back_to_cp1252() -> None:
    data = "caf\u00e9 \u201cquoted\u201d \u20ac5".encode("cp1252")
    assert extract_text(data, "text/plain") == "caf\u00e9 \u201cquoted\u201d \u20ac5"


def test_bytes_undefined_in_cp1252_fall_back_to_latin1() -> None:
    assert extract_text(b"a\x81b\xe9", "text/plain") == "a\x81b\u00e9"


def test_markdown_is_kept_verbatim_apart_from_trailing_whitespace() -> None:
    source = "# Title  \n\n* item with `code`\n\n```\n    indented\n```"
    assert extract_text(source.encode(), "text/markdown") == (
        "# Title\n\n* item with `code`\n\n```\n    indented\n```"
    )


def test_media_type_parameters_are_ignored() -> None:
    assert extract_text(b"hello", "Text/Plain; charset=utf-8") == "hello"


def test_nul_characters_are_removed() -> None:
    assert extract_text(b"a\x00b", "text/plain") == "ab"


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  ", b"\xef\xbb\xbf\n"])
def test_whitespace_only_text_is_an_empty_document(data: bytes) -> None:
    error = _raises("empty_document", data, "text/plain")
    assert error.message == "no text could be extracted"


def test_unknown_media_type_is_unsupported() -> None:
    _raises("unsupported_media_type", b"x", "image/png")


def test_extraction_is_deterministic() -> None:
    data = b"<html><body><p>a  b</p><div>c</div></body></html>"
    assert extract_text(data, "text/html") == extract_text(data, "text/html")


# --- HTML -----------------------------------------------------------------------------------


def test_html_drops_scripts_and_styles() -> None:
    data = (
        b"<html><head><style>p { color: red }</style><script>var secret = 1;</script></head>"
        b"<body><p>Visible</p><noscript>enable js</noscript><template><p>tpl</p></template>"
        b"<!-- a comment --></body></html>"
    )
    text = extract_text(data, "text/html")
    assert text == "Visible"


def test_html_title_is_kept_as_first_line() -> None:
    data = b"<html><head><title>The Title</title></head><body><p>Body text.</p></body></html>"
    assert extract_text(data, "text/html").splitlines()[0] == "The Title"


def test_html_block_elements_become_separate_lines() -> None:
    data = (
        b"<body><h1>Head</h1><p>One</p><p>Two</p><ul><li>a</li><li>b</li></ul>"
        b"<div>c<br>d</div><table><tr><td>e</td><td>f</td></tr><tr><td>g</td></tr></table>"
        b"</body>"
    )
    assert extract_text(data, "text/html") == "Head\n\nOne\n\nTwo\n\na\nb\n\nc\nd\n\ne f\ng"


def test_html_collapses_whitespace_within_lines() -> None:
    data = b"<p>  many    spaces\n   and\ta&nbsp;&nbsp;break  </p><p>x &amp; y</p>"
    assert extract_text(data, "text/html") == "many spaces and a break\n\nx & y"


def test_html_keeps_at_most_one_blank_line() -> None:
    data = b"<div><p>a</p>\n\n\n<section><article><p>b</p></article></section><p></p><p>c</p>"
    assert extract_text(data, "text/html") == "a\n\nb\n\nc"


def test_html_preformatted_text_keeps_its_lines() -> None:
    data = b"<p>Code:</p><pre>def f():\n    return 1\n</pre>"
    assert extract_text(data, "text/html") == "Code:\n\ndef f():\n    return 1"


def test_deeply_nested_html_does_not_exhaust_recursion() -> None:
    depth = 5000
    data = b"<div>" * depth + b"deep" + b"</div>" * depth
    assert extract_text(data, "text/html") == "deep"


def test_html_without_visible_text_is_an_empty_document() -> None:
    _raises("empty_document", b"<html><script>x()</script><p>  </p></html>", "text/html")


# --- PDF ------------------------------------------------------------------------------------


def test_pdf_text_is_extracted() -> None:
    assert extract_text(minimal_pdf("Hello PDF world"), "application/pdf") == "Hello PDF world"


def test_pdf_pages_are_separated_by_blank_line() -> None:
    data = minimal_pdf("First page", "Second page")
    assert extract_text(data, "application/pdf") == "First page\n\nSecond page"


def test_pdf_encrypted_with_empty_password_is_read() -> None:
    data = _encrypted(minimal_pdf("Hello PDF world"), "")
    assert extract_text(data, "application/pdf") == "Hello PDF world"


def test_password_protected_pdf_is_unparseable() -> None:
    data = _encrypted(minimal_pdf("Hello PDF world"), "secret")
    error = _raises("unparseable_document", data, "application/pdf")
    assert error.message.startswith("could not read PDF: ")


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\n%garbage that is not a pdf",
        b"not a pdf at all",
        b"",
        minimal_pdf("Hello PDF world")[:120],
        minimal_pdf("Hello PDF world").replace(b"/Kids [3 0 R]", b"/Kids 7"),
    ],
)
def test_corrupt_pdf_raises_document_error(data: bytes) -> None:
    error = _raises("unparseable_document", data, "application/pdf")
    assert error.message.startswith("could not read PDF: ")
    assert len(error.message) < 250


def test_mangled_pdf_never_raises_anything_but_document_error() -> None:
    pdf = minimal_pdf("Hello PDF world", "Second page")
    rng = random.Random(20240611)  # noqa: S311 - reproducible fuzzing, not security
    for attempt in range(300):
        data = bytearray(pdf)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randint(1, 20)]
        # pypdf itself, in process (the sandbox's child runs exactly this); every 30th also
        # through the sandboxed extract_text, which starts an interpreter per PDF.
        reply = read_pdf(bytes(data))
        assert set(reply) in ({"text"}, {"error"}), reply
        if attempt % 30 == 0:
            try:
                extract_text(bytes(data), "application/pdf")
            except DocumentError as error:
                assert error.code in ("unparseable_document", "empty_document")


def test_pdf_without_text_is_an_empty_document() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    _raises("empty_document", buffer.getvalue(), "application/pdf")
