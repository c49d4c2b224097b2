"""FaissIndex: ids, overwrite, removal, kinds and snapshots (in memory and tmp files only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import IndexSettings
from retrieval.faiss_index import FaissIndex, SnapshotError, build_index, choose_kind


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_each_vector_finds_itself_first() -> None:
    vectors = unit_vectors(50)
    index = build_index(IndexSettings(), np.arange(100, 150), vectors, 16)
    for i in (0, 17, 49):
        _, ids = index.search(vectors[i], 3)
        assert ids[0] == 100 + i


def test_re_adding_an_id_overwrites_it() -> None:
    vectors = unit_vectors(3)
    index = build_index(IndexSettings(), np.array([1, 2, 3]), vectors, 16)
    index.add(np.array([2]), vectors[0:1])
    assert len(index) == 3
    scores, ids = index.search(vectors[0], 3)
    # Ids 1 and 2 now hold the same vector; the old vector of id 2 is gone.
    assert set(ids[:2].tolist()) == {1, 2}
    assert scores[1] == pytest.approx(1.0, abs=1e-5)


def test_removed_ids_are_never_returned() -> None:
    vectors = unit_vectors(10)
    index = build_index(IndexSettings(), np.arange(10), vectors, 16)
    index.remove(np.array([4, 5]))
    _, ids = index.search(vectors[4], 10)
    assert set(ids.tolist()) == set(range(10)) - {4, 5}
    assert sorted(index.ids().tolist()) == [0, 1, 2, 3, 6, 7, 8, 9]


def test_large_collections_get_an_approximate_index() -> None:
    settings = IndexSettings(approximate_after=2000)
    assert choose_kind(settings, 1999) == "flat"
    assert choose_kind(settings, 2000) == "ivf"
    assert choose_kind(IndexSettings(kind="ivf"), 10) == "flat", "too few points to train IVF"
    vectors = unit_vectors(3000, dim=32, seed=1)
    index = build_index(settings, np.arange(3000), vectors, 32)
    assert index.kind == "ivf"
    found = sum(int(index.search(vectors[i], 1)[1][0] == i) for i in range(0, 3000, 100))
    assert found >= 28  # approximate, but nearly always right for self-queries
    index.remove(np.array([0]))
    assert 0 not in index.search(vectors[0], 5)[1].tolist()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_snapshot_round_trip(tmp_path: Path, kind: str) -> None:
    settings = IndexSettings(kind=kind)  # type: ignore[arg-type]
    vectors = unit_vectors(1500, dim=8)
    index = build_index(settings, np.arange(1500) * 7, vectors, 8)
    path = tmp_path / "i.npz"
    index.save(path, {"version": 3})
    loaded, meta = FaissIndex.load(path, settings)
    assert meta["version"] == 3 and meta["kind"] == kind
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())
    assert loaded.search(vectors[5], 1)[1][0] == 35
    assert not list(tmp_path.glob("*.tmp")), "no temp file left behind"


def test_truncated_snapshot_is_rejected(tmp_path: Path) -> None:
    index = build_index(IndexSettings(), np.arange(20), unit_vectors(20), 16)
    path = tmp_path / "i.npz"
    index.save(path, {})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SnapshotError):
        FaissIndex.load(path, IndexSettings())
