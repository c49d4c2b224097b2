"""Greedy decoding under a GBNF grammar at the speed of free text.

llama-cpp-python builds its sampler chain as penalties → grammar → greedy, so llama.cpp checks
the grammar against every token of the vocabulary (151,936 for Qwen) at every step: 40–100 ms
per token for the reasoning steps' schemas, more than the model's own forward pass. Greedy
decoding only needs the best token the grammar allows. This sampler takes the best token first
and asks the grammar about that one token; only when the grammar rejects it does it check the
next best candidates, and only when none of those is allowed the whole vocabulary (as llama.cpp's
own `common_sampler` does: sample, check, resample on rejection). The token chosen is always the
one the full chain would choose, so the replies are identical, token for token.

The repetition penalty is llama.cpp's, applied here to the raw logits in float32 exactly as its
penalties sampler does (over the last `last_n` generated tokens; prompt tokens are not counted,
as llama-cpp-python never feeds them to the chain).
"""

from __future__ import annotations

import ctypes
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

# How many of the best tokens are checked together after the best one is rejected.
CANDIDATES = 64


@dataclass
class SamplerCounts:
    """How each token was found: the best token allowed (`first`), among the next best
    candidates (`candidates`), or only by checking the whole vocabulary (`vocabulary`)."""

    first: int = 0
    candidates: int = 0
    vocabulary: int = 0


class GreedyGrammarSampler:
    """Stands in for llama-cpp-python's `LlamaSampler` (it is only asked to `sample`) for
    greedy decoding with a grammar and a repetition penalty."""

    def __init__(self, llm: Any, grammar: Any, repeat_penalty: float, last_n: int) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._n_vocab = int(llm.n_vocab())
        sampler = llama_cpp.llama_sampler_init_grammar(
            llm._model.vocab, grammar._grammar.encode(), grammar._root.encode()
        )
        if not sampler:
            raise ValueError("llama.cpp could not parse the grammar")
        self._grammar = sampler
        self._penalty = np.float32(repeat_penalty)
        self._recent: deque[int] = deque(maxlen=max(last_n, 0))
        # The whole vocabulary as llama_token_data, laid out as llama.cpp expects, for the
        # rare full check; and a smaller array for the best candidates.
        self._vocab = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
        self._vocab["id"] = np.arange(self._n_vocab, dtype=np.int32)
        self._few = np.zeros(max(CANDIDATES, 1), dtype=_TOKEN_DATA)
        self.counts = SamplerCounts()

    def sample(self, ctx: Any, idx: int = -1) -> int:
        pointer = self._llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()
        self._apply_penalty(logits)
        token = int(np.argmax(logits))
        if self._allowed(self._few[:1], [token], logits):
            self.counts.first += 1
        else:
            token = self._best_candidate(logits)
        self._accept(token)
        return token

    def _apply_penalty(self, logits: np.ndarray[Any, Any]) -> None:
        if not self._recent or self._penalty == 1:
            return
        ids = np.fromiter(set(self._recent), dtype=np.int64)
        values = logits[ids]
        logits[ids] = np.where(values <= 0, values * self._penalty, values / self._penalty)

    def _allowed(
        self, data: np.ndarray[Any, Any], ids: Any, logits: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, Any]:
        """Which of `ids` the grammar allows next (checked in one call)."""
        data["id"] = ids
        data["logit"] = logits[ids]
        self._apply_grammar(data)
        return np.asarray(~np.isneginf(data["logit"]))

    def _best_candidate(self, logits: np.ndarray[Any, Any]) -> int:
        """The best allowed token, when the best of all is not: among the next best
        candidates when one of them is allowed and beats every token outside them, else
        among the whole vocabulary."""
        count = min(CANDIDATES, self._n_vocab - 1)
        top = np.argpartition(-logits, count)[:count]
        # Best first; equal logits by id, as greedy takes the lowest id among equals.
        top = top[np.lexsort((top, -logits[top]))]
        allowed = self._allowed(self._few[: len(top)], top, logits)
        if allowed.any():
            best = int(top[int(np.argmax(allowed))])
            # Every token outside the candidates is at most the lowest candidate's logit.
            if logits[best] > logits[top[-1]]:
                self.counts.candidates += 1
                return best
        self.counts.vocabulary += 1
        self._vocab["logit"] = logits
        self._apply_grammar(self._vocab)
        return int(np.argmax(self._vocab["logit"]))

    def _apply_grammar(self, data: np.ndarray[Any, Any]) -> None:
        llama_cpp = self._llama_cpp
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=len(data),
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))

    def _accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self._grammar, token)
        if self._recent.maxlen:
            self._recent.append(token)

    def close(self) -> None:
        if self._grammar:
            self._llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:
        self.close()


# llama.cpp's llama_token_data: {int32 id; float logit; float p}.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


@lru_cache(maxsize=1)
def make_llama_class() -> type[Any]:
    """llama_cpp.Llama whose greedy grammar-constrained sampling uses GreedyGrammarSampler;
    every other kind of sampling is llama-cpp-python's own."""
    from llama_cpp import Llama

    class GrammarFastLlama(Llama):
        # Llama calls it with keyword arguments only.
        def _init_sampler(self, **kwargs: Any) -> Any:  # type: ignore[override]
            grammar = kwargs.get("grammar")
            plain = (
                grammar is not None
                and kwargs.get("temp") == 0.0
                and not kwargs.get("logits_processor")
                and not kwargs.get("frequency_penalty")
                and not kwargs.get("presence_penalty")
                and not kwargs.get("mirostat_mode")
            )
            if not plain:
                return super()._init_sampler(**kwargs)
            self.grammar_sampler = GreedyGrammarSampler(
                self, grammar, kwargs.get("repeat_penalty", 1.0), self.last_n_tokens_size
            )
            return self.grammar_sampler

    return GrammarFastLlama
