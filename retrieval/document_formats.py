"""Readers for office, e-book, mail and data files: bytes in, text parts out.

They run in the sandboxed child of retrieval/parse_sandbox.py (bounded memory and time), so this
module imports only the standard library at the top and each format's library inside its
reader; the child imports it without the rest of the project.

Library per format, each the maintained reference reader of its format on PyPI: python-docx
(.docx), python-pptx (.pptx), openpyxl (.xlsx/.xlsm, read-only streaming mode, macros never
loaded), odfpy (.odt), ebooklib (.epub); the standard library for .eml (email), .csv, .json and
.xml (through defusedxml, which refuses entity declarations and external references). One
converter for everything (unstructured, tika) would pull in far more (a JVM, or models) for the
same text.

Hostile input is bounded twice: zip containers are refused when their directory says they
unpack to more than `max_unpacked_bytes` (a zip bomb) before any library opens them, and text
stops at `max_chars` (a huge sheet) instead of being collected in full. What survives still
runs under the child's memory limit.
"""

from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# A part of the document: ("text", plain text) or ("html", markup the parent renders).
Part = tuple[str, str]

CELL_SEPARATOR = " | "
MAX_ZIP_ENTRIES = 10_000


class FormatError(Exception):
    """The file cannot be read; the message says why, for the user."""


class _Budget:
    """Counts characters across a document's parts; raises once past the limit."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.used = 0

    def take(self, text: str) -> str:
        self.used += len(text)
        if self.used > self.max_chars:
            raise FormatError(
                f"it holds more than {self.max_chars} characters of text (the limit); "
                "split it into smaller files"
            )
        return text


def read(kind: str, data: bytes, max_chars: int, max_unpacked_bytes: int) -> list[Part]:
    """The text parts of a document of `kind` (a key of READERS).

    Raises FormatError with a reason a person can act on; MemoryError passes through for the
    sandbox to report.
    """
    reader = READERS.get(kind)
    if reader is None:
        raise FormatError(f"no reader for {kind!r}")
    if kind in ZIP_KINDS:
        check_zip(data, max_unpacked_bytes)
    budget = _Budget(max_chars)
    try:
        return [(form, budget.take(text)) for form, text in reader(data)]
    except (FormatError, MemoryError):
        raise
    except RecursionError:
        raise FormatError("it is nested too deeply to read") from None
    except Exception as exc:  # each library raises its own types on corrupt input
        raise FormatError(_reason(exc)) from None


def check_zip(data: bytes, max_unpacked_bytes: int) -> None:
    """Refuse a zip container that is not one, has too many entries or unpacks too large.

    zipfile never inflates an entry past the size its directory declares, so checking the
    declared sizes bounds what any library can unpack from it.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FormatError(f"it is not a valid zip container ({_reason(exc)})") from None
    if len(infos) > MAX_ZIP_ENTRIES:
        raise FormatError(f"it holds {len(infos)} files; the limit is {MAX_ZIP_ENTRIES}")
    unpacked = sum(info.file_size for info in infos)
    if unpacked > max_unpacked_bytes:
        raise FormatError(
            f"it unpacks to {unpacked // 1_000_000} MB, more than the limit of "
            f"{max_unpacked_bytes // 1_000_000} MB (a zip bomb?)"
        )


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _text_parts(lines: Iterable[str]) -> Iterator[Part]:
    for line in lines:
        yield ("text", line)


# --- Office Open XML ---------------------------------------------------------------------


def read_docx(data: bytes) -> Iterator[Part]:
    """Paragraphs and tables of the body, in document order (a table row per line)."""
    from docx import Document
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = Document(io.BytesIO(data))
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            yield ("text", Paragraph(child, document).text + "\n")
        elif tag == "tbl":
            for row in Table(child, document).rows:
                cells = [cell.text.strip() for cell in row.cells]
                yield ("text", CELL_SEPARATOR.join(cells) + "\n")
            yield ("text", "\n")


def read_pptx(data: bytes) -> Iterator[Part]:
    """Each slide's text frames and tables, then its speaker notes; slides apart."""
    from pptx import Presentation

    presentation = Presentation(io.BytesIO(data))
    for number, slide in enumerate(presentation.slides, 1):
        lines = [f"Slide {number}"]
        for shape in slide.shapes:
            if shape.has_text_frame:
                lines += [p.text for p in shape.text_frame.paragraphs]
            if getattr(shape, "has_table", False) and shape.has_table:
                for row in shape.table.rows:
                    lines.append(CELL_SEPARATOR.join(c.text.strip() for c in row.cells))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text
            if notes.strip():
                lines += ["Notes:", notes]
        yield ("text", "\n".join(lines) + "\n\n")


def read_xlsx(data: bytes) -> Iterator[Part]:
    """Each sheet's non-empty rows, cells separated by " | ", streamed (read-only mode), so a
    huge sheet is cut off by the character budget rather than loaded whole. Formulas give
    their cached values; VBA macros are never loaded (keep_vba is off)."""
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_vba=False)
    try:
        for sheet in workbook.worksheets:
            yield ("text", f"Sheet: {sheet.title}\n")
            for row in sheet.iter_rows(values_only=True):
                cells = ["" if v is None else str(v).strip() for v in row]
                while cells and not cells[-1]:
                    cells.pop()
                if cells:
                    yield ("text", CELL_SEPARATOR.join(cells) + "\n")
            yield ("text", "\n")
    finally:
        workbook.close()


# --- OpenDocument, EPUB, mail ----------------------------------------------------------


def read_odt(data: bytes) -> Iterator[Part]:
    """Headings and paragraphs of the text body, in order (lists and tables included)."""
    from odf import teletype
    from odf.namespaces import TEXTNS
    from odf.opendocument import load

    document = load(io.BytesIO(data))
    stack: list[Any] = [document.text]
    while stack:
        node = stack.pop()
        if getattr(node, "qname", None) in ((TEXTNS, "p"), (TEXTNS, "h")):
            yield ("text", teletype.extractText(node) + "\n")
            continue
        stack.extend(reversed(getattr(node, "childNodes", [])))


def read_epub(data: bytes) -> Iterator[Part]:
    """The XHTML documents of the book in reading (spine) order, for the parent to render."""
    import ebooklib
    from ebooklib import epub

    book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
    for item_id, _ in book.spine:
        item = book.get_item_with_id(item_id)
        if item is not None and item.get_type() == ebooklib.ITEM_DOCUMENT:
            yield ("html", item.get_content().decode("utf-8", errors="replace"))


def read_eml(data: bytes) -> Iterator[Part]:
    """Subject, From, To and Date, then the plain-text body (or the HTML one); attachments
    are named, not read."""
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(data)
    headers = [f"{h}: {message[h]}" for h in ("Subject", "From", "To", "Date") if message[h]]
    yield ("text", "\n".join(headers) + "\n\n")
    for subtype in ("plain", "html"):  # an empty plain part next to an HTML one is common
        body = message.get_body(preferencelist=(subtype,))
        content = "" if body is None else str(body.get_content())
        if content.strip():
            yield ("html" if subtype == "html" else "text", content)
            break
    names = [part.get_filename() for part in message.iter_attachments() if part.get_filename()]
    if names:
        yield ("text", "\n\nAttachments: " + ", ".join(str(n) for n in names))


# --- Data ------------------------------------------------------------------------------


def bom_codec(data: bytes) -> str | None:
    """The codec named by a UTF-16 or UTF-32 byte-order mark at the start of `data`, or None.
    (UTF-8's BOM is left to the "utf-8-sig" codec.)"""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _decode(data: bytes) -> str:
    codec = bom_codec(data)
    if codec is not None:
        return data.decode(codec, errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def read_csv(data: bytes) -> Iterator[Part]:
    """One line per row, cells separated by " | " (the dialect is sniffed)."""
    import csv

    text = _decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    for row in csv.reader(io.StringIO(text), dialect):
        cells = [cell.strip() for cell in row]
        if any(cells):
            yield ("text", CELL_SEPARATOR.join(cells) + "\n")


def read_json(data: bytes) -> Iterator[Part]:
    """One line per scalar: its path and value (`items[0].name: Ada`), walked iteratively."""
    import json

    try:
        root = json.loads(_decode(data))
    except json.JSONDecodeError as exc:
        raise FormatError(f"it is not valid JSON ({exc})") from None
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(value)]))
        elif value is not None:
            yield ("text", f"{path}: {value}\n" if path else f"{value}\n")


def read_xml(data: bytes) -> Iterator[Part]:
    """The text content of every element, one element per line. Entity declarations, DTDs
    with entities and external references are refused (defusedxml): no billion laughs."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise FormatError(
            f"{type(exc).__name__}: entity declarations and external references are refused"
        ) from None
    for element in root.iter():
        for piece in (element.text, element.tail):
            if piece and piece.strip():
                yield ("text", piece.strip() + "\n")


READERS: dict[str, Callable[[bytes], Iterable[Part]]] = {
    "docx": read_docx,
    "pptx": read_pptx,
    "xlsx": read_xlsx,
    "odt": read_odt,
    "epub": read_epub,
    "eml": read_eml,
    "csv": read_csv,
    "json": read_json,
    "xml": read_xml,
}
ZIP_KINDS = frozenset({"docx", "pptx", "xlsx", "odt", "epub"})
