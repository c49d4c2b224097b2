"""Sentence splitting and offset-preserving chunking."""

from __future__ import annotations

import random

import pytest

from retrieval.chunker import ChunkSpan, Sentence, chunk_text, split_sentences


def _sentences(text: str) -> list[str]:
    return [text[s.start : s.end] for s in split_sentences(text)]


def _assert_valid_chunks(text: str, chunks: list[ChunkSpan], size: int) -> None:
    """The contract every chunking must meet, whatever the text."""
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert 0 < len(chunk.text) <= size
        assert chunk.text == chunk.text.strip()
    # Chunks move forward through the text.
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert current.start > previous.start
        assert current.end > previous.end
    # Every non-whitespace character is in some chunk.
    covered: set[int] = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, char in enumerate(text) if not char.isspace())
    # Every sentence that fits in a chunk lies entirely inside one.
    for sentence in split_sentences(text):
        if sentence.end - sentence.start <= size:
            assert any(c.start <= sentence.start and sentence.end <= c.end for c in chunks)


# --- split_sentences ------------------------------------------------------------------------


def test_sentences_end_at_terminal_punctuation() -> None:
    text = "One here. Two here! Three here? Four"
    assert _sentences(text) == ["One here.", "Two here!", "Three here?", "Four"]


def test_sentence_spans_exclude_surrounding_whitespace() -> None:
    text = "  First one.   Second one.  \n"
    assert split_sentences(text) == [Sentence(2, 12), Sentence(15, 26)]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    text = 'He said "stop." Then (it ended.) Done\u201d. \u201cWhy?\u201d Next.'
    assert _sentences(text) == [
        'He said "stop."',
        "Then (it ended.)",
        "Done\u201d.",
        "\u201cWhy?\u201d",
        "Next.",
    ]


@pytest.mark.parametrize(
    "sentence",
    [
        "Use a tool, e.g. a hammer, i.e. the big one, etc. when needed.",
        "Mr. Smith met Dr. Jones and Prof. Lee vs. the team in Fig. 3 here.",
        "Prices rose by 3.14 percent and 2.5 points in version 1.2.3 today.",
        "The paper by J. R. Smith et al. was good.",
        "It happened in the U.S. and the U.K. last year.",
        "See the results (cf. Table 2) for details.",
    ],
)
def test_abbreviations_decimals_and_initials_do_not_split(sentence: str) -> None:
    assert _sentences(sentence) == [sentence]


def test_ellipsis_ends_a_sentence() -> None:
    assert _sentences("Wait... Then go.") == ["Wait...", "Then go."]


def test_blank_line_ends_a_sentence() -> None:
    assert _sentences("No full stop\n\n  \nNext paragraph") == ["No full stop", "Next paragraph"]


def test_single_newline_inside_paragraph_does_not_split() -> None:
    text = "A sentence that is\nwrapped over lines. Next."
    assert _sentences(text) == ["A sentence that is\nwrapped over lines.", "Next."]


def test_markdown_headings_and_list_items_are_separate_sentences() -> None:
    text = "# Title\nIntro text\n- first item\n* second item\n1. third item\n2) fourth\n> quote"
    assert _sentences(text) == [
        "# Title",
        "Intro text",
        "- first item",
        "* second item",
        "1. third item",
        "2) fourth",
        "> quote",
    ]


def test_list_number_is_not_taken_for_sentence_end() -> None:
    assert _sentences("Steps:\n12. Do this. Then that.") == ["Steps:", "12. Do this.", "Then that."]


def test_long_sentences_are_not_split_by_the_splitter() -> None:
    text = "word " * 500 + "end."
    assert _sentences(text) == [text]


def test_empty_and_whitespace_text_has_no_sentences() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\t\n ") == []


# --- chunk_text -----------------------------------------------------------------------------


def test_chunks_cut_back_out_of_text() -> None:
    text = "Alpha one. Beta two is longer. Gamma three!\n\nDelta four? Epsilon five."
    chunks = chunk_text(text, size=30, overlap=0)
    assert [chunk.text for chunk in chunks] == [
        "Alpha one. Beta two is longer.",
        "Gamma three!\n\nDelta four?",
        "Epsilon five.",
    ]
    _assert_valid_chunks(text, chunks, size=30)


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("  Just this.  ", size=100, overlap=10) == [ChunkSpan(0, 2, 12, "Just this.")]


def test_next_chunk_repeats_trailing_sentences_within_overlap() -> None:
    text = "Aaaa aaaa. Bbbb bbbb. Cccc cccc. Dddd dddd. Eeee eeee."
    chunks = chunk_text(text, size=32, overlap=21)
    assert [chunk.text for chunk in chunks] == [
        "Aaaa aaaa. Bbbb bbbb. Cccc cccc.",
        "Bbbb bbbb. Cccc cccc. Dddd dddd.",
        "Cccc cccc. Dddd dddd. Eeee eeee.",
    ]


def test_overlap_smaller_than_a_sentence_repeats_nothing() -> None:
    text = "Aaaa aaaa. Bbbb bbbb. Cccc cccc."
    chunks = chunk_text(text, size=21, overlap=5)
    assert [chunk.text for chunk in chunks] == ["Aaaa aaaa. Bbbb bbbb.", "Cccc cccc."]


def test_overlap_never_stalls_progress() -> None:
    # The first chunk is short because the next sentence is large; it would fit into the
    # overlap entirely, but the next chunk must still start after it.
    text = "Tiny. " + "x" * 18 + "."
    chunks = chunk_text(text, size=20, overlap=15)
    assert [chunk.text for chunk in chunks] == ["Tiny.", "x" * 18 + "."]


def test_overlap_is_dropped_when_next_sentence_would_not_fit() -> None:
    text = "Aaaa. Bbbb. " + "c" * 16 + "."
    chunks = chunk_text(text, size=17, overlap=10)
    assert [chunk.text for chunk in chunks] == ["Aaaa. Bbbb.", "c" * 16 + "."]


def test_long_sentence_is_split_at_whitespace() -> None:
    text = "aaaa bbbb cccc dddd eeee."
    chunks = chunk_text(text, size=10, overlap=0)
    assert [chunk.text for chunk in chunks] == ["aaaa bbbb", "cccc dddd", "eeee."]
    _assert_valid_chunks(text, chunks, size=10)


def test_long_word_is_split_at_size() -> None:
    text = "x" * 25
    chunks = chunk_text(text, size=10, overlap=3)
    assert [(chunk.start, chunk.end) for chunk in chunks] == [(0, 10), (10, 20), (20, 25)]


def test_empty_or_whitespace_text_has_no_chunks() -> None:
    assert chunk_text("", size=10, overlap=0) == []
    assert chunk_text(" \n\n\t ", size=10, overlap=0) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (-5, 0), (10, -1), (10, 10), (10, 11)])
def test_invalid_size_or_overlap_is_rejected(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="size|overlap"):
        chunk_text("Some text.", size=size, overlap=overlap)


_WORDS = ["alpha", "beta", "e.g.", "Dr.", "3.14", "J.", "x" * 40, "word", "U.S.", "(paren)"]
_SEPARATORS = [" ", " ", " ", ". ", "! ", "? ", "\n", "\n\n", "\n# ", "\n- ", "  \t", '." ']


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 120)):
        parts.append(rng.choice(_WORDS))
        parts.append(rng.choice(_SEPARATORS))
    return "".join(parts)


def test_random_texts_keep_chunk_invariants() -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not security
    for _ in range(400):
        text = _random_text(rng)
        size = rng.randint(1, 200)
        overlap = rng.randint(0, size - 1)
        chunks = chunk_text(text, size, overlap)
        _assert_valid_chunks(text, chunks, size)


def test_random_texts_give_whitespace_free_sentences_covering_all_text() -> None:
    rng = random.Random(11)  # noqa: S311 - reproducible test data, not security
    for _ in range(400):
        text = _random_text(rng)
        sentences = split_sentences(text)
        covered: set[int] = set()
        for previous, current in zip(sentences, sentences[1:], strict=False):
            assert previous.end <= current.start
        for sentence in sentences:
            span = text[sentence.start : sentence.end]
            assert span and span == span.strip()
            covered.update(range(sentence.start, sentence.end))
        assert all(i in covered for i, char in enumerate(text) if not char.isspace())
