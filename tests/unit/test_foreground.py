"""Background encoding waits for the in-process model (core/foreground.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core import foreground


def test_vectors_come_back_in_the_order_given_a_batch_at_a_time() -> None:
    texts = [f"text {'x' * (i * 7 % 23)} {i}" for i in range(150)]
    calls: list[list[str]] = []

    def encode(batch: list[str]) -> np.ndarray:
        calls.append(batch)
        return np.array([[len(t), int(t.rsplit(" ", 1)[1])] for t in batch], dtype=np.float32)

    vectors = foreground.encode_in_background(encode, texts)
    assert [int(v[1]) for v in vectors] == list(range(150))
    assert [len(c) for c in calls] == [64, 64, 22]
    # Longest first across batches, as one encoder call would sort them.
    lengths = [len(t) for c in calls for t in c]
    assert lengths == sorted(lengths, reverse=True)


def test_background_work_waits_while_the_model_generates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(foreground, "LINGER_S", 0.2)
    started = threading.Event()
    release = threading.Event()

    def generate() -> None:
        with foreground.generating():
            started.set()
            release.wait(5)

    thread = threading.Thread(target=generate)
    thread.start()
    started.wait(5)
    threading.Timer(0.5, release.set).start()
    waited = foreground.wait_for_turn(max_wait=5)
    thread.join()
    # The generation's 0.5 s and the linger after it.
    assert 0.6 <= waited < 3
    # Nothing generating and the linger over: no wait.
    time.sleep(0.25)
    assert foreground.wait_for_turn() < 0.05


def test_a_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def generate() -> None:
        with foreground.generating():
            release.wait(5)

    thread = threading.Thread(target=generate)
    thread.start()
    time.sleep(0.05)
    waited = foreground.wait_for_turn(max_wait=0.3)
    release.set()
    thread.join()
    assert 0.3 <= waited < 1
