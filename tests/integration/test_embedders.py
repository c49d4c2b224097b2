"""The two bundled embedders: the same model on torch and as int8 ONNX on onnxruntime."""

from __future__ import annotations

import numpy as np

from retrieval.embedders import DEFAULT_EMBEDDER, MINILM_INT8, EmbedderPool

TEXTS = [
    "BIOS stands for Basic Input/Output System, the firmware that starts a PC.",
    "SMTP is the protocol that moves mail between servers.",
    "A short one.",
]


def test_int8_onnx_embedder_agrees_with_the_torch_model(embedders: EmbedderPool) -> None:
    torch_model = embedders.get(DEFAULT_EMBEDDER)
    onnx_model = embedders.get(MINILM_INT8)
    a = torch_model.embed_documents(TEXTS)
    b = onnx_model.embed_documents(TEXTS)

    assert b.shape == (3, 384) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    # int8 weights move the vectors a little, not the meaning.
    assert np.all(np.sum(a * b, axis=1) > 0.95)
    query = onnx_model.embed_query("What does BIOS stand for?")
    assert int(np.argmax(b @ query)) == 0


def test_int8_onnx_embedder_keeps_input_order_across_batches(embedders: EmbedderPool) -> None:
    onnx_model = embedders.get(MINILM_INT8)
    texts = [f"document number {i} " + "word " * (i * 7 % 50) for i in range(150)]
    together = onnx_model.embed_documents(texts)
    one_by_one = np.stack([onnx_model.embed_documents([t])[0] for t in texts[:10]])
    np.testing.assert_allclose(together[:10], one_by_one, atol=1e-4)
    assert onnx_model.embed_documents([]).shape == (0, 384)
