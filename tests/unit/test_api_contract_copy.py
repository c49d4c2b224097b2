"""docs/api.md is the REST contract a newcomer reads in the repository; it must say what the
team's shared contract says."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "API.md"


def test_the_contract_in_docs_is_the_shared_one() -> None:
    if not SHARED.is_file():
        pytest.skip(f"no shared contract beside the checkout ({SHARED})")
    ours = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    body = ours.split("-->", 1)[1].lstrip("\n")
    assert body == SHARED.read_text(encoding="utf-8"), "copy ../shared/API.md to docs/api.md"
