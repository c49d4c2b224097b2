"""The BM25 index over chunk ids: matching, updates, snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import Bm25Settings
from retrieval.bm25_index import Bm25Index, SnapshotError, Tokenizer

TEXTS = {
    1: "The Basic Input/Output System (BIOS) starts the computer and loads the boot loader.",
    2: "Simple Mail Transfer Protocol (SMTP) moves electronic mail between servers.",
    3: "Part KX-7734 is the replacement fan for the cooling unit of the rack.",
    4: "A database transaction is atomic: all of its changes happen, or none does.",
}


def index_of(texts: dict[int, str]) -> Bm25Index:
    index = Bm25Index(Bm25Settings(), Tokenizer())
    index.add(list(texts), list(texts.values()))
    return index


def ids(index: Bm25Index, query: str, k: int = 5) -> list[int]:
    return index.search(query, k)[1].tolist()


def test_an_exact_rare_token_ranks_its_chunk_first() -> None:
    index = index_of(TEXTS)
    assert ids(index, "KX-7734")[0] == 3
    assert ids(index, "what is SMTP")[0] == 2
    # Stemming: "transactions" matches "transaction".
    assert ids(index, "transactions")[0] == 4


def test_chunks_sharing_no_token_are_not_returned() -> None:
    index = index_of(TEXTS)
    assert ids(index, "zebra giraffe") == []
    # Stopwords alone match nothing either.
    assert ids(index, "the of and") == []
    scores, found = index.search("mail", 5)
    assert found.tolist() == [2] and scores[0] > 0


def test_added_chunks_are_found_and_removed_ones_are_not() -> None:
    index = index_of(TEXTS)
    index.add([5], ["The ZQ-19 relay replaced the old mail relay."])
    assert ids(index, "ZQ-19") == [5]
    assert set(ids(index, "mail")) == {2, 5}
    index.remove(np.array([2]))
    assert ids(index, "mail") == [5]
    assert sorted(index.ids().tolist()) == [1, 3, 4, 5]


def test_re_adding_an_id_overwrites_its_text() -> None:
    index = index_of(TEXTS)
    index.add([3], ["Now about printers."])
    assert ids(index, "KX-7734") == []
    assert ids(index, "printers") == [3]
    assert len(index) == 4


def test_k_limits_the_hits_best_first() -> None:
    index = index_of({i: f"mail {'mail ' * i} filler" for i in range(1, 11)})
    scores, found = index.search("mail", 3)
    assert len(found) == 3
    assert list(scores) == sorted(scores, reverse=True)


def test_an_empty_index_finds_nothing() -> None:
    index = Bm25Index(Bm25Settings(), Tokenizer())
    assert ids(index, "anything") == []
    index.add([1], ["something"])
    index.remove([1])
    assert ids(index, "something") == []


def test_snapshot_round_trip(tmp_path: Path) -> None:
    index = index_of(TEXTS)
    index.remove([1])
    path = tmp_path / "c.npz"
    index.save(path, {"version": 7})
    loaded, meta = Bm25Index.load(path, Bm25Settings(), Tokenizer())
    assert meta["version"] == 7
    assert sorted(loaded.ids().tolist()) == [2, 3, 4]
    for query in ("KX-7734", "mail", "transactions", "BIOS"):
        assert ids(loaded, query) == ids(index, query)


def test_a_truncated_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    index_of(TEXTS).save(path, {})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SnapshotError):
        Bm25Index.load(path, Bm25Settings(), Tokenizer())


def test_a_snapshot_tokenized_differently_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    index_of(TEXTS).save(path, {})
    with pytest.raises(SnapshotError, match="tokenized differently"):
        Bm25Index.load(path, Bm25Settings(), Tokenizer(language="german"))
