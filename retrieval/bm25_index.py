"""A BM25 index over chunk ids (bm25s), for the lexical half of hybrid retrieval.

bm25s scores with sparse matrices but has no incremental updates: its matrix is built from the
whole corpus. So this index keeps each chunk's tokens (as ids into its own vocabulary) and
rebuilds the bm25s matrix lazily, on the first search after a change. Tokenizing is the costly
part of indexing text and happens once per chunk; rebuilding from token ids is cheap (measured in
docs/retrieval.md). Deleted chunks' tokens may stay in the vocabulary until the next full build:
a token no chunk holds has no postings and scores nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from core.settings import Bm25Settings
from retrieval.snapshot_file import (
    SnapshotError,
    json_array,
    json_value,
    read_snapshot,
    write_snapshot,
)

# Bump when tokenization changes: snapshots of another version are rebuilt from the database.
TOKENIZER_VERSION = 1


class Tokenizer:
    """Lower case, words of two or more characters, English stopwords out, Snowball stems.

    The same function tokenizes chunks and queries, so an exact rare token (an acronym, an
    identifier such as "KX-7734") in a query matches it in a chunk.
    """

    def __init__(self, language: str = "english", stopwords: str = "en") -> None:
        self.language = language
        self.stopwords = stopwords
        self._stemmer = Stemmer.Stemmer(language)
        # PyStemmer's stemmer objects are not thread-safe.
        self._lock = threading.Lock()

    @property
    def signature(self) -> str:
        return f"v{TOKENIZER_VERSION}:{self.language}:{self.stopwords}"

    def tokens(self, texts: list[str]) -> list[list[str]]:
        with self._lock:
            out: list[list[str]] = bm25s.tokenize(
                texts,
                stopwords=self.stopwords,
                stemmer=self._stemmer,
                return_ids=False,
                show_progress=False,
            )
        return out


class Bm25Index:
    """Chunk-id-keyed BM25. Thread-safe: one lock guards every read and write.

    `add` of an id that is already present overwrites it. `search` returns only chunks that
    share at least one token with the query (a zero BM25 score is no match at all).
    """

    def __init__(self, settings: Bm25Settings, tokenizer: Tokenizer) -> None:
        self._settings = settings
        self.tokenizer = tokenizer
        self._lock = threading.RLock()
        self._vocab: dict[str, int] = {}
        self._docs: dict[int, list[int]] = {}
        self._built: bm25s.BM25 | None = None
        self._built_ids = np.empty(0, dtype=np.int64)
        self._stale = True

    def __len__(self) -> int:
        return len(self._docs)

    def ids(self) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._docs, dtype=np.int64, count=len(self._docs))

    def add(self, ids: np.ndarray | list[int], texts: list[str]) -> None:
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        if not texts:
            return
        tokenized = self.tokenizer.tokens(texts)
        with self._lock:
            for chunk_id, tokens in zip(np.asarray(ids).tolist(), tokenized, strict=True):
                self._docs[int(chunk_id)] = [
                    self._vocab.setdefault(t, len(self._vocab)) for t in tokens
                ]
            self._stale = True

    def remove(self, ids: np.ndarray | list[int]) -> None:
        with self._lock:
            for chunk_id in np.asarray(ids).tolist():
                self._docs.pop(int(chunk_id), None)
            self._stale = True

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of up to k best chunks for the query, best first; may be fewer than k."""
        query_tokens = self.tokenizer.tokens([query])[0]
        with self._lock:
            retriever = self._retriever()
            if retriever is None:
                return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
            token_ids = sorted({self._vocab[t] for t in query_tokens if t in self._vocab})
            if not token_ids:
                return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
            scores = np.asarray(retriever.get_scores_from_ids(token_ids), dtype=np.float32)
            ids = self._built_ids
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
        # Ties broken by chunk id, so equal scores rank the same way on every run.
        order = np.lexsort((ids[matched], -scores[matched]))
        best = matched[order]
        return scores[best], ids[best]

    def _retriever(self) -> bm25s.BM25 | None:
        if not self._stale:
            return self._built
        self._stale = False
        if not self._docs:
            self._built, self._built_ids = None, np.empty(0, dtype=np.int64)
            return None
        ids = np.fromiter(self._docs, dtype=np.int64, count=len(self._docs))
        retriever = bm25s.BM25(
            k1=self._settings.k1, b=self._settings.b, method="lucene", csc_backend="scipy"
        )
        retriever.index(
            (list(self._docs.values()), dict(self._vocab)),
            create_empty_token=False,
            show_progress=False,
        )
        self._built, self._built_ids = retriever, ids
        return retriever

    # Snapshots ---------------------------------------------------------------------------

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        """Write atomically (retrieval/snapshot_file.py); `meta` goes into the header."""
        with self._lock:
            ids = np.fromiter(self._docs, dtype=np.int64, count=len(self._docs))
            lengths = np.fromiter(
                (len(d) for d in self._docs.values()), dtype=np.int64, count=len(self._docs)
            )
            flat = np.fromiter(
                (t for d in self._docs.values() for t in d), dtype=np.int32, count=lengths.sum()
            )
            vocab = list(self._vocab)
        header = dict(meta, count=int(len(ids)), tokenizer=self.tokenizer.signature)
        write_snapshot(path, header, ids=ids, lengths=lengths, tokens=flat, vocab=json_array(vocab))

    @classmethod
    def load(
        cls, path: Path, settings: Bm25Settings, tokenizer: Tokenizer
    ) -> tuple[Bm25Index, dict[str, Any]]:
        """Load and validate a snapshot; raises SnapshotError when it cannot be trusted."""
        meta: dict[str, Any]
        vocab: list[str]
        meta, vocab, ids, lengths, flat = read_snapshot(
            path,
            lambda data: (
                json_value(data["meta"]),
                json_value(data["vocab"]),
                data["ids"].astype(np.int64),
                data["lengths"].astype(np.int64),
                data["tokens"].astype(np.int64),
            ),
        )
        if meta.get("tokenizer") != tokenizer.signature:
            raise SnapshotError(f"snapshot {path.name} was tokenized differently")
        if (
            meta.get("count") != len(ids)
            or len(lengths) != len(ids)
            or int(lengths.sum()) != len(flat)
            or (len(flat) and (flat.min() < 0 or flat.max() >= len(vocab)))
        ):
            raise SnapshotError(f"snapshot {path.name} is inconsistent")
        index = cls(settings, tokenizer)
        index._vocab = {token: i for i, token in enumerate(vocab)}
        if len(index._vocab) != len(vocab):
            raise SnapshotError(f"snapshot {path.name} has a repeated token")
        bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
        tokens = flat.tolist()
        index._docs = {
            chunk_id: tokens[bounds[i] : bounds[i + 1]] for i, chunk_id in enumerate(ids.tolist())
        }
        return index, meta
