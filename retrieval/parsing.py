"""Turn an uploaded file into the plain text that the rest of ingestion works on.

The extracted text is stored, chunk offsets point into it and citations are cut out of it
verbatim, so extraction must be deterministic: the same bytes always give the same text.
Nothing here touches the file system or the network; filenames are only ever inspected for
their extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from core.errors import DocumentError
from retrieval.parse_sandbox import SandboxError, extract_parts, extract_pdf_text
from retrieval.text_check import check_text, decode_by_bom

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSM = "application/vnd.ms-excel.sheet.macroEnabled.12"
ODT = "application/vnd.oasis.opendocument.text"
EPUB = "application/epub+zip"
EML = "message/rfc822"
CSV = "text/csv"
JSON = "application/json"
XML = "application/xml"

SUPPORTED_MEDIA_TYPES: dict[str, str] = {
    "txt": "text/plain",
    "text": "text/plain",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "html": "text/html",
    "htm": "text/html",
    "pdf": "application/pdf",
    "docx": DOCX,
    "pptx": PPTX,
    "xlsx": XLSX,
    "xlsm": XLSM,
    "odt": ODT,
    "epub": EPUB,
    "eml": EML,
    "csv": CSV,
    "json": JSON,
    "xml": XML,
}

# Media types read in the sandboxed child by retrieval/document_formats.py: (reader, label).
_SANDBOXED: dict[str, tuple[str, str]] = {
    DOCX: ("docx", "Word document"),
    PPTX: ("pptx", "PowerPoint presentation"),
    XLSX: ("xlsx", "Excel workbook"),
    XLSM: ("xlsx", "Excel workbook"),
    ODT: ("odt", "OpenDocument text"),
    EPUB: ("epub", "EPUB book"),
    EML: ("eml", "email message"),
    CSV: ("csv", "CSV file"),
    JSON: ("json", "JSON file"),
    XML: ("xml", "XML file"),
    "text/xml": ("xml", "XML file"),
}
# extract_text compares lowercased media types.
_SANDBOXED = {media_type.lower(): reader for media_type, reader in _SANDBOXED.items()}

_PDF = "application/pdf"
_HTML = "text/html"
_PDF_MAGIC = b"%PDF-"
# How far into a document the HTML markers may appear and still count as "near the start".
_HTML_SNIFF_CHARS = 1024
_HTML_MARKERS = ("<!doctype html", "<html")
# Longest reason from a parser that is passed on to the user.
_MAX_REASON_CHARS = 200

# Formats read as characters: their bytes must look like text (`not_text_reason`).
TEXT_MEDIA_TYPES = frozenset(
    {"text/plain", "text/markdown", _HTML, CSV, JSON, XML, "text/xml", EML}
)


def detect_media_type(filename: str, data: bytes) -> str:
    """Return the media type of an upload, one of the values of `SUPPORTED_MEDIA_TYPES`.

    A known extension decides, except that a .txt/.md file whose bytes start with the PDF
    magic is treated as a PDF (mislabelled exports are common). Without a known extension the
    content is sniffed: PDF magic, then UTF-8 text that opens like an HTML document.

    Raises `DocumentError("unsupported_media_type")` when neither way gives a supported type,
    or when a file named as a text format (txt, md, html, csv, json, xml, eml) is not text
    (an image renamed fake.txt): the message says what it looks like.
    """
    extension = _extension(filename)
    by_extension = SUPPORTED_MEDIA_TYPES.get(extension)
    is_pdf = data.startswith(_PDF_MAGIC)
    if by_extension is not None:
        if is_pdf and by_extension in ("text/plain", "text/markdown"):
            return _PDF
        if by_extension in TEXT_MEDIA_TYPES:
            check_text(data, f"a .{extension} file")
        return by_extension
    if is_pdf:
        return _PDF
    if _looks_like_html(data):
        return _HTML
    shown = f".{extension}" if extension else "no extension"
    supported = ", ".join(f".{ext}" for ext in SUPPORTED_MEDIA_TYPES)
    raise DocumentError(
        "unsupported_media_type",
        f"unsupported file type ({shown}) and the content is not recognisable; "
        f"supported types: {supported}",
    )


def extract_text(
    data: bytes,
    media_type: str,
    *,
    pdf_timeout_s: float = 120.0,
    pdf_memory_mb: int = 1024,
    max_chars: int = 20_000_000,
    max_unpacked_bytes: int = 512 * 1024 * 1024,
) -> str:
    """Return the text of a document of the given media type.

    PDFs and every format but plain text, Markdown and HTML are read in a child process
    limited to `pdf_timeout_s` seconds and `pdf_memory_mb` of address space
    (retrieval/parse_sandbox.py); past either the document is unparseable. Those formats also
    stop at `max_chars` characters of text, and zip containers (docx, pptx, xlsx, odt, epub)
    that would unpack to more than `max_unpacked_bytes` are refused unopened.

    The result has "\\n" line endings, no trailing whitespace on any line, no leading or
    trailing blank lines and no NUL characters.

    Raises `DocumentError` with code "unsupported_media_type" for a media type outside
    `SUPPORTED_MEDIA_TYPES` or bytes of a text format that are not text (retrieval/text_check.py),
    "unparseable_document" when the file cannot be read, and
    "empty_document" when it holds no text.
    """
    # Callers may pass a Content-Type header value such as "text/plain; charset=utf-8".
    kind = media_type.split(";", 1)[0].strip().lower()
    if kind in TEXT_MEDIA_TYPES:
        # Uploads are checked already; this covers documents stored before the check existed.
        check_text(data, f"a {kind} document")
    if kind in ("text/plain", "text/markdown"):
        raw = _decode_text(data)
    elif kind == _HTML:
        raw = _html_text(data)
    elif kind == _PDF:
        raw = _pdf_text(data, pdf_timeout_s, pdf_memory_mb)
    elif kind in _SANDBOXED:
        reader, label = _SANDBOXED[kind]
        try:
            parts = extract_parts(
                data, reader, label, pdf_timeout_s, pdf_memory_mb, max_chars, max_unpacked_bytes
            )
        except SandboxError as exc:
            raise DocumentError("unparseable_document", str(exc)) from exc
        raw = "".join(
            _html_text(text.encode()) + "\n\n" if form == "html" else text for form, text in parts
        )
    else:
        raise DocumentError(
            "unsupported_media_type",
            f"unsupported media type {media_type!r}; supported: "
            + ", ".join(sorted(set(SUPPORTED_MEDIA_TYPES.values()))),
        )
    text = _tidy(raw)
    if not text.strip():
        raise DocumentError("empty_document", "no text could be extracted")
    return text


def _extension(filename: str) -> str:
    """Lowercase text after the last dot of `filename`, or "" when it has no usable one."""
    _, dot, suffix = filename.rpartition(".")
    # "archive.tar/evil" or "dir.d/file": what follows the dot is not an extension.
    if not dot or "/" in suffix or "\\" in suffix:
        return ""
    return suffix.strip().lower()


def _looks_like_html(data: bytes) -> bool:
    """Whether `data` is UTF-8 text that opens with an HTML doctype or <html> tag."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    head = text.lstrip()[:_HTML_SNIFF_CHARS].lower()
    return any(marker in head for marker in _HTML_MARKERS)


def _decode_text(data: bytes) -> str:
    """Decode text bytes: UTF-16/32 when a byte-order mark says so, else UTF-8 (BOM dropped),
    else Windows-1252, else Latin-1.

    Latin-1 maps every byte, so decoding never fails; Windows-1252 is tried first because
    it is what legacy "ANSI" files nearly always are.
    """
    text = decode_by_bom(data)
    if text is not None:
        return text
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _tidy(text: str) -> str:
    """Normalise newlines, drop NULs, strip line ends and leading/trailing blank lines."""
    # PostgreSQL text columns cannot hold NUL, and it is never meaningful text.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


# --- HTML -----------------------------------------------------------------------------------

# Elements whose content is never visible text.
_DROPPED_TAGS = frozenset({"script", "style", "noscript", "template"})
# Elements that stand as a paragraph of their own: a blank line before and after.
_PARAGRAPH_TAGS = frozenset(
    (
        "address article aside blockquote details dl fieldset figure footer form"
        " h1 h2 h3 h4 h5 h6 header hr main nav ol p pre section table ul"
    ).split()
)
# Elements that start and end a line without separating paragraphs.
_LINE_TAGS = frozenset("body caption dd div dt figcaption li option summary title tr".split())
_CELL_TAGS = frozenset({"td", "th"})
_WHITESPACE_RUN = re.compile(r"\s+")
_BLANK_LINE_RUN = re.compile(r"\n{3,}")


def _html_text(data: bytes) -> str:
    """Visible text of an HTML document, one line per block element.

    Uses the standard library parser, which never fetches anything referenced by the page.
    """
    try:
        soup = BeautifulSoup(_decode_text(data), "html.parser")
        builder = _TextBuilder()
        _walk_html(soup, builder)
    except Exception as exc:  # html.parser can fail on hostile markup in many ways
        raise DocumentError(
            "unparseable_document", f"could not read HTML: {_short_reason(exc)}"
        ) from exc
    return builder.text()


@dataclass(frozen=True)
class _Exit:
    """Stack marker: the element that was opened earlier ends here."""

    tag: Tag


def _walk_html(root: Tag, builder: _TextBuilder) -> None:
    """Feed the visible text under `root` to `builder` in document order.

    Walks with an explicit stack rather than recursion, so deeply nested markup cannot
    exhaust the interpreter's recursion limit.
    """
    stack: list[PageElement | _Exit] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, _Exit):
            _close_tag(node.tag, builder)
        elif isinstance(node, Tag):
            if node.name in _DROPPED_TAGS:
                continue
            _open_tag(node, builder)
            stack.append(_Exit(node))
            stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            # PreformattedString covers comments, doctypes, CDATA and processing instructions.
            builder.add_text(str(node))


def _open_tag(tag: Tag, builder: _TextBuilder) -> None:
    """Emit the break that precedes `tag` and enter preformatted mode for <pre>."""
    if tag.name in _PARAGRAPH_TAGS:
        builder.paragraph_break()
    elif tag.name in _LINE_TAGS or tag.name == "br":
        builder.line_break()
    elif tag.name in _CELL_TAGS:
        builder.add_text(" ")
    if tag.name == "pre":
        builder.preformatted_depth += 1


def _close_tag(tag: Tag, builder: _TextBuilder) -> None:
    """Emit the break that follows `tag` and leave preformatted mode after </pre>."""
    if tag.name == "pre":
        builder.preformatted_depth -= 1
    if tag.name in _PARAGRAPH_TAGS:
        builder.paragraph_break()
    elif tag.name in _LINE_TAGS:
        builder.line_break()


class _TextBuilder:
    """Accumulates rendered text, collapsing whitespace the way a browser would."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        # Newlines at the end of the output; starting at 2 suppresses leading blank lines.
        self._trailing_newlines = 2
        self.preformatted_depth = 0

    def add_text(self, text: str) -> None:
        """Append a text node: whitespace runs become one space, except inside <pre>."""
        if self.preformatted_depth:
            self._append(text.replace("\r\n", "\n").replace("\r", "\n"))
            return
        text = _WHITESPACE_RUN.sub(" ", text)
        if self._trailing_newlines:
            text = text.lstrip(" ")
        self._append(text)

    def line_break(self) -> None:
        """End the current line unless the output already ends with one."""
        self._ensure_newlines(1)

    def paragraph_break(self) -> None:
        """Make the output end with exactly one blank line (unless it is empty)."""
        self._ensure_newlines(2)

    def text(self) -> str:
        """The text so far: no trailing whitespace on lines, at most one blank line in a row."""
        lines = "".join(self._parts).split("\n")
        text = "\n".join(line.rstrip() for line in lines)
        return _BLANK_LINE_RUN.sub("\n\n", text).strip("\n")

    def _ensure_newlines(self, count: int) -> None:
        if self._trailing_newlines < count:
            self._append("\n" * (count - self._trailing_newlines))

    def _append(self, text: str) -> None:
        if not text:
            return
        self._parts.append(text)
        body = text.rstrip("\n")
        newlines = len(text) - len(body)
        # Trailing spaces are stripped at the end, so they do not end the blank-line run.
        if body.strip(" \t"):
            self._trailing_newlines = newlines
        else:
            self._trailing_newlines += newlines


# --- PDF ------------------------------------------------------------------------------------


def _pdf_text(data: bytes, timeout_s: float, memory_mb: int) -> str:
    """Text of every page of a PDF, pages separated by a blank line, read in a bounded child."""
    try:
        return extract_pdf_text(data, timeout_s, memory_mb)
    except SandboxError as exc:
        raise DocumentError("unparseable_document", str(exc)) from exc


def _short_reason(exc: Exception) -> str:
    """First line of an exception's message, shortened, or its type name when it has none."""
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 1] + "…"
    return reason
