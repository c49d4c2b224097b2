"""Client filenames are cleaned into metadata."""

from __future__ import annotations

from app.api.documents import clean_filename


def test_control_characters_are_dropped_from_filenames() -> None:
    assert clean_filename("../../etc/passwd\x00.txt") == "../../etc/passwd.txt"


def test_missing_filename_becomes_unnamed() -> None:
    assert clean_filename(None) == "unnamed"
    assert clean_filename("\n\t") == "unnamed"


def test_long_filenames_are_bounded() -> None:
    assert len(clean_filename("a" * 1000 + ".txt")) == 255
