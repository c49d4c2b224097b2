"""Split extracted text into sentences and pack them into overlapping chunks.

Every span is a pair of character offsets into the text it came from, so a chunk (and a
citation inside it) can always be cut back out of the stored document:
`text[chunk.start:chunk.end] == chunk.text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Sentence:
    """A sentence as `text[start:end]`; it neither starts nor ends with whitespace."""

    start: int
    end: int


@dataclass(frozen=True)
class ChunkSpan:
    """The `ordinal`-th chunk of a text: `text[start:end] == self.text`, stripped, non-empty."""

    ordinal: int
    start: int
    end: int
    text: str


# A line that starts a block of its own in markdown: heading, list item, quote or code fence.
_BLOCK_MARKER = re.compile(r"[ \t]*(?:#{1,6}(?=\s|$)|[-*+][ \t]|\d{1,9}[.)][ \t]|>|```|~~~)")
_HEADING = re.compile(r"[ \t]*#{1,6}(?:\s|$)")
# Sentence-final punctuation, closing quotes/brackets after it, then whitespace.
_TERMINATOR = re.compile(r"[.!?]+[\"'\u201d\u2019\u00bb)\]}]*(?=\s)")
# Words ending in "." that do not end a sentence (compared in lower case).
_ABBREVIATIONS = frozenset(
    (
        "e.g. i.e. etc. cf. vs. viz. al. approx. ca. mr. mrs. ms. dr. prof. sr. jr. st."
        " fig. figs. eq. sec. ch. vol. pp. inc. ltd. co. corp. dept."
    ).split()
)
# Dotted initialisms ("U.S.", "e.g.") and single capital initials ("J." in "J. Smith").
_INITIALISM = re.compile(r"(?:[A-Za-z]\.){2,}|[A-Z]\.")
# Characters that may precede a word, such as the "(" in "(e.g. this)".
_OPENING_PUNCTUATION = "([{\"'\u201c\u2018\u00ab"


def split_sentences(text: str) -> list[Sentence]:
    """Return the sentences of `text` in order.

    A sentence ends after ".", "!" or "?" (plus any closing quotes or brackets) followed by
    whitespace, unless the word is a known abbreviation, an initialism or a single capital
    initial. Blank lines, markdown headings, list items, quotes and fences also end one.
    Whitespace is never part of a sentence, and every other character belongs to exactly one.
    Sentences are not limited in length.
    """
    sentences: list[Sentence] = []
    for block_start, content_start, block_end in _blocks(text):
        start = block_start
        for match in _TERMINATOR.finditer(text, content_start, block_end):
            if _is_abbreviation(text, match):
                continue
            sentences.extend(_trimmed(text, start, match.end()))
            start = match.end()
        sentences.extend(_trimmed(text, start, block_end))
    return sentences


def chunk_text(text: str, size: int, overlap: int) -> list[ChunkSpan]:
    """Pack consecutive sentences of `text` into chunks of at most `size` characters.

    A chunk's length is `end - start`, whitespace between its sentences included. Each chunk
    after the first repeats the trailing sentences of the previous one whose span is at most
    `overlap` characters, but always adds new text. Sentences longer than `size` are cut at
    whitespace (or, failing that, at exactly `size` characters) into pieces that fit.

    Returns [] for whitespace-only text. Raises ValueError unless 0 <= overlap < size.
    """
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size), got {overlap} with size {size}")
    units = [piece for s in split_sentences(text) for piece in _fit(text, s, size)]
    chunks: list[ChunkSpan] = []
    first = 0
    while first < len(units):
        stop = _pack(units, first, size)
        start, end = units[first].start, units[stop - 1].end
        chunks.append(ChunkSpan(len(chunks), start, end, text[start:end]))
        if stop == len(units):
            break
        first = _next_first(units, first, stop, size, overlap)
    return chunks


def _blocks(text: str) -> list[tuple[int, int, int]]:
    """Split `text` into blocks that no sentence crosses: (start, content start, end).

    A block ends at a blank line, before a line with a markdown block marker, and after a
    heading line. The content start skips a leading list marker, so the "1." of "1. Item"
    is not taken for the end of a sentence.
    """
    blocks: list[tuple[int, int, int]] = []
    block: tuple[int, int] | None = None  # (start, content start) of the open block
    block_end = 0
    after_heading = False
    position = 0
    while position < len(text):
        newline = text.find("\n", position)
        line_end = len(text) if newline == -1 else newline
        blank = not text[position:line_end].strip()
        marker = _BLOCK_MARKER.match(text, position, line_end)
        if block is not None and (blank or marker or after_heading):
            blocks.append((*block, block_end))
            block = None
        if not blank:
            if block is None:
                block = (position, marker.end() if marker else position)
            block_end = line_end
        after_heading = bool(_HEADING.match(text, position, line_end))
        position = line_end + 1
    if block is not None:
        blocks.append((*block, block_end))
    return blocks


def _is_abbreviation(text: str, match: re.Match[str]) -> bool:
    """Whether the lone "." matched is part of an abbreviation rather than a sentence end."""
    if match.group() != ".":
        return False
    word_start = match.start()
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start : match.end()].lstrip(_OPENING_PUNCTUATION)
    return word.lower() in _ABBREVIATIONS or _INITIALISM.fullmatch(word) is not None


def _trimmed(text: str, start: int, end: int) -> list[Sentence]:
    """`text[start:end]` without surrounding whitespace, as zero or one sentence."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [Sentence(start, end)] if start < end else []


def _fit(text: str, sentence: Sentence, size: int) -> list[Sentence]:
    """Cut a sentence into stripped pieces of at most `size` characters, at whitespace if any."""
    pieces: list[Sentence] = []
    start, end = sentence.start, sentence.end
    while end - start > size:
        cut = _last_space(text, start + 1, start + size)
        if cut is None:
            pieces.append(Sentence(start, start + size))
            start += size
        else:
            pieces.extend(_trimmed(text, start, cut))
            start = cut
        while text[start].isspace():  # the sentence ends on non-space, so this stops
            start += 1
    pieces.append(Sentence(start, end))
    return pieces


def _last_space(text: str, low: int, high: int) -> int | None:
    """Largest index in [low, high] holding whitespace, or None."""
    for index in range(high, low - 1, -1):
        if text[index].isspace():
            return index
    return None


def _pack(units: list[Sentence], first: int, size: int) -> int:
    """Index after the last unit that still fits in a chunk starting at `units[first]`.

    The first unit always fits, because `_fit` made every unit at most `size` long.
    """
    stop = first + 1
    while stop < len(units) and units[stop].end - units[first].start <= size:
        stop += 1
    return stop


def _next_first(units: list[Sentence], first: int, stop: int, size: int, overlap: int) -> int:
    """First unit of the chunk after `units[first:stop]`.

    Goes back over the trailing units that span at most `overlap` characters, but never to
    `first` itself (the next chunk must move on) and never so far that `units[stop]` no longer
    fits next to them (the next chunk must add new text).
    """
    following = units[stop]
    candidate = stop
    while (
        candidate - 1 > first
        and units[stop - 1].end - units[candidate - 1].start <= overlap
        and following.end - units[candidate - 1].start <= size
    ):
        candidate -= 1
    return candidate
