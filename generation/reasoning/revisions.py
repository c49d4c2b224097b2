"""The model's relevance verdicts and evidence choices, revised after it chose: pure functions,
no I/O.

A small model's relevance step is the least reliable of the three (docs/benchmarks.md): it
declines a question whose words stand in the top passage, and it misses the passage of a
second hop that its own answer then comes from; its evidence step passes over the sentence
that states the answer. The answer critic and word checks revise its verdicts and choices,
and each revision keeps the model's reason with the cause appended, so a reader sees both:

- `overrule_decline`: every passage was judged irrelevant, yet the answer critic finds a
  sentence that states the answer; its passage is judged relevant.
- `answer_sentence` and `turned_relevant`: the model's answer is held by a sentence the
  evidence step did not choose, in a passage judged relevant or not; the pipeline cites that
  sentence and, for a passage judged irrelevant, turns its verdict.
- `with_top_ranked_evidence`: the evidence step passed over the sentence the ranking puts
  first (generation/reasoning/evidence_ranking.py); it joins the evidence after the model's
  choices.
"""

from __future__ import annotations

from dataclasses import replace

from generation.reasoning.grounding import SUPPORTED, support
from generation.reasoning.replies import evidence_from_ids
from generation.reasoning.sentence_scores import SentenceScores
from generation.reasoning.values import Evidence, Judgement, Passage


def overrule_decline(
    passages: list[Passage], judged: list[Judgement], scores: SentenceScores
) -> list[Judgement]:
    """The verdicts, with a passage judged relevant after all when the model judged every
    passage irrelevant although the answer critic finds a sentence of it that states the
    answer (the passage of its best sentence). A 0.5B declined "What type of civil war was
    fought between political and tribal warlords?" over a passage stating "a vicious and
    destructive civil war between political and tribal warlords". Only a decline is
    overruled: when the model found some passage relevant, its choice stands."""
    if not passages or any(j.relevant for j in judged):
        return judged
    sentence, score = scores.best(passages)
    if sentence is None or score < scores.threshold:
        return judged
    number = int(sentence.split(".")[0])
    index = next(i for i, p in enumerate(passages) if p.number == number)
    why = f"sentence {sentence} states the answer by the answer critic ({score:.2f})"
    return turned_relevant(judged, judged[index], why)


def answer_sentence(
    answer: str, question: str, passages: list[Passage], judged: list[Judgement], chosen: set[str]
) -> tuple[Passage, int, Judgement] | None:
    """The sentence not in `chosen` that best supports the answer on its own (the most of the
    words the answer adds to the question), with its passage and that passage's verdict. Ties
    go to the passages judged relevant, then to retrieval order: "European Anti-fraud Office"
    is cited from the sentence naming the office, not from the first one saying "European".
    None when no sentence supports the answer."""
    order = sorted(zip(passages, judged, strict=True), key=lambda pair: not pair[1].relevant)
    best: tuple[Passage, int, Judgement] | None = None
    best_share = 0.0
    for passage, judgement in order:
        for i in range(len(passage.sentences)):
            if passage.sentence_id(i) in chosen:
                continue
            share = support(answer, question, [passage.sentence_text(i)])
            if share >= SUPPORTED and share > best_share:
                best, best_share = (passage, i, judgement), share
    return best


def turned_relevant(judged: list[Judgement], judgement: Judgement, why: str) -> list[Judgement]:
    """The verdicts with `judgement` turned relevant; its reason keeps the model's words and
    says `why`. Unchanged when it was relevant already."""
    if judgement.relevant:
        return judged
    reason = f"{judgement.reason} (judged not relevant, but {why})"
    return [replace(j, relevant=True, reason=reason) if j is judgement else j for j in judged]


def with_top_ranked_evidence(
    ranked: list[str], relevant: list[Passage], evidence: list[Evidence], max_items: int
) -> list[Evidence]:
    """The evidence check: the first of the `ranked` sentence ids of the relevant passages
    joins the model's choice when missing, its reason saying so. Not verified yet: the caller
    verifies all. A 0.5B passes over the sentence that states the answer for one that shares
    no word with the question."""
    chosen = [e.sentence for e in evidence]
    if not ranked or ranked[0] in chosen:
        return evidence
    # After the model's choices, the last of them dropped to make room when `max_items` are
    # chosen (the model's first choices keep their numbers).
    added = ranked[0]
    ids = [*chosen[: max(max_items - 1, 0)], added]
    reasons = {e.sentence: e.reason for e in evidence}
    reasons[added] = "ranked first by the question's words (added by the evidence check)"
    return evidence_from_ids(ids, relevant, reasons, max_items)
