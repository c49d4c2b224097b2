"""Is an upload that is named as text really text? A PNG renamed fake.txt must be refused,
not ingested as a document of binary garbage.

No detector library: text is what the text formats' decoding reads (retrieval/parsing.py:
UTF-16/32 by byte-order mark, UTF-8, Windows-1252), so the check is on what that decoding
would hold, control characters, which text nearly never has and binary data is full of.
"""

from __future__ import annotations

import re

from core.errors import DocumentError
from retrieval.document_formats import bom_codec

# Control characters that text does not hold. Tab, line feed, vertical tab, form feed,
# carriage return, backspace (nroff's overstrike) and escape (ANSI colours in logs) are text.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\b\x1b") + b"\x7f"
_CONTROL_CHARS = re.compile("[" + re.escape(_CONTROL_BYTES.decode("ascii")) + "]")
# Text may hold a stray control character or two (a ^Z at the end, a NUL in a log); binary data
# is about 10% control bytes, and a PNG or an executable far more.
_MAX_CONTROL_SHARE = 0.01
_ALWAYS_ALLOWED_CONTROLS = 2
# Bytes are judged in segments, so binary data after a page of text is found too; files over
# 1 MiB on a sample of segments: the first 256 KiB, then windows spread to the end.
_SEGMENT_BYTES = 64 * 1024
_SAMPLE_WHOLE_BYTES = 1 << 20
_SAMPLE_HEAD_BYTES = 256 * 1024
_SAMPLE_WINDOWS = 12
# What a binary file is, by its first bytes (only to name it in the refusal).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"RIFF", "a RIFF file (WAV, AVI or WebP)"),
    (b"OggS", "an Ogg audio or video file"),
    (b"ID3", "an MP3 file"),
    (b"PK\x03\x04", "a zip archive (docx, xlsx, pptx, odt and epub files are zips too)"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (doc, xls or ppt)"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O file"),
    (b"\x00asm", "a WebAssembly module"),
    (b"wOFF", "a web font"),
    (b"wOF2", "a web font"),
)


def not_text_reason(data: bytes) -> str | None:
    """Why `data` is not text, or None when it reads as text.

    Text is what the text formats' decoding reads (UTF-16/32 with a byte-order mark, UTF-8,
    Windows-1252): in every 64 KiB of it, at most 1% of the characters (and always 2) may be
    control characters other than tab, newlines, form feed, backspace and escape. Binary data
    (images, archives, executables, compressed or encrypted bytes) is about a tenth control
    bytes, NULs above all. Files over 1 MiB are judged on about 1 MiB of segments spread over
    them, so the check stays cheap.
    """
    codec = bom_codec(data)
    if codec is not None:
        text = decode_by_bom(data)
        if text is None:
            return f"it starts with a {codec.upper()} byte-order mark but is not {codec.upper()}"
        controls = len(_CONTROL_CHARS.findall(text))
        if _too_many(controls, len(text)):
            return f"{_share(controls, len(text))} of its characters are control characters"
        return None
    found = next(
        (
            (start, segment, controls)
            for start, segment in _segments(data)
            if _too_many(controls := _count_controls(segment), len(segment))
        ),
        None,
    )
    if found is None:
        return None
    start, segment, controls = found
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return f"it is {kind}"
    if _looks_like_utf16(segment):
        return "it looks like UTF-16 text without a byte-order mark (save it as UTF-8)"
    nuls = segment.count(0)
    detail = f", {_share(nuls, len(segment))} NUL bytes" if nuls else ""
    where = f" from byte {start}" if start else ""
    return f"it holds binary data{where} ({_share(controls, len(segment))} control bytes{detail})"


def check_text(data: bytes, label: str) -> None:
    """Raise DocumentError("unsupported_media_type") with the reason when `data` is not text;
    `label` names what it was to be read as ("a .txt file")."""
    reason = not_text_reason(data)
    if reason is not None:
        raise DocumentError(
            "unsupported_media_type",
            f"the content is not text ({reason}), so it cannot be read as {label}; "
            "upload it under its real type, or upload the text itself",
        )


def _count_controls(segment: bytes) -> int:
    return len(segment) - len(segment.translate(None, _CONTROL_BYTES))


def _too_many(controls: int, length: int) -> bool:
    return controls > max(length * _MAX_CONTROL_SHARE, _ALWAYS_ALLOWED_CONTROLS)


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """The parts of `data` that are judged: all of it in 64 KiB segments up to 1 MiB; beyond,
    the first 256 KiB and 12 segments spread evenly to the end (the last one ends it)."""
    if len(data) <= _SAMPLE_WHOLE_BYTES:
        starts = list(range(0, len(data), _SEGMENT_BYTES)) or [0]
    else:
        head = list(range(0, _SAMPLE_HEAD_BYTES, _SEGMENT_BYTES))
        step = (len(data) - _SAMPLE_HEAD_BYTES - _SEGMENT_BYTES) // _SAMPLE_WINDOWS
        starts = head + [_SAMPLE_HEAD_BYTES + step * (i + 1) for i in range(_SAMPLE_WINDOWS)]
    return [(start, data[start : start + _SEGMENT_BYTES]) for start in starts]


def _looks_like_utf16(sample: bytes) -> bool:
    """Mostly-ASCII UTF-16 without a BOM: nearly every other byte is NUL, the rest are not."""
    half = len(sample) // 2
    if half < 2:
        return False
    even, odd = sample[0 : 2 * half : 2].count(0), sample[1 : 2 * half : 2].count(0)
    return max(even, odd) > 0.9 * half and min(even, odd) < 0.1 * half


def _share(part: int, whole: int) -> str:
    """`part` of `whole` as a percentage for a message: "12%", or "<1%"."""
    percent = 100 * part / max(whole, 1)
    return f"{percent:.0f}%" if percent >= 1 else "<1%"


def decode_by_bom(data: bytes) -> str | None:
    """`data` decoded by the codec its UTF-16/32 byte-order mark names; None without such a
    mark or when it does not decode. (UTF-32LE's mark begins with UTF-16LE's: UTF-16 is tried
    when UTF-32 fails.)"""
    codec = bom_codec(data)
    if codec is None:
        return None
    for candidate in (codec, "utf-16") if codec == "utf-32" else (codec,):
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            pass
    return None
