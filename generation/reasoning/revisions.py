"""The model's relevance verdicts and evidence choices, revised after it chose: pure functions,
no I/O.

A small model's relevance step is the least reliable of the three (docs/benchmarks.md): it
declines a question whose words stand in the top passage, and it misses the passage of a
second hop that its own answer then comes from; its evidence step passes over the sentence
that states the answer. Word checks revise its verdicts and choices, and each revision keeps
the model's reason with the cause appended, so a reader sees both:

- `overrule_decline`: every passage was judged irrelevant, yet one sentence of the first
  passage holds most of the question's key words; that passage is judged relevant.
- `answer_sentence` and `turned_relevant`: the model's answer is held by a sentence the
  evidence step did not choose, in a passage judged relevant or not; the pipeline cites that
  sentence and, for a passage judged irrelevant, turns its verdict.
- `with_top_ranked_evidence`: the evidence step passed over the sentence the ranking puts
  first (generation/reasoning/evidence_ranking.py); it joins the evidence after the model's choices.
"""

from __future__ import annotations

from dataclasses import replace

from generation.reasoning.answerability import best_sentence_coverage
from generation.reasoning.evidence_ranking import with_top_ranked
from generation.reasoning.grounding import SUPPORTED, support
from generation.reasoning.replies import evidence_from_ids
from generation.reasoning.values import Evidence, Judgement, Passage

# A question of fewer key words ("Exports?") says too little for its words in one sentence to
# overrule the model's decline.
OVERRULE_MIN_WORDS = 3


def overrule_decline(
    question: str, passages: list[Passage], judged: list[Judgement], share: float
) -> list[Judgement]:
    """The verdicts, with the first passage judged relevant after all when the model judged
    every passage irrelevant although one of its sentences holds `share` of the question's key
    words (and there are OVERRULE_MIN_WORDS or more). A 0.5B declined "What type of civil war
    was fought between political and tribal warlords?" over a passage stating "a vicious and
    destructive civil war between political and tribal warlords". Only a decline is
    overruled: when the model found some passage relevant, its choice stands. `share` 0: off."""
    if share <= 0 or not passages or any(j.relevant for j in judged):
        return judged
    first = passages[0]
    span, held, total = best_sentence_coverage(question, first.hit.text)
    if span is None or total < OVERRULE_MIN_WORDS or held < share * total:
        return judged
    # The chunker's sentence, found among the passage's (short ones joined to the next).
    number = next((i for i, s in enumerate(first.sentences) if s.start <= span.start < s.end), 0)
    why = (
        f"sentence {first.sentence_id(number)} holds {held} of the question's {total} key "
        "words: overruled by retrieval"
    )
    return turned_relevant(judged, judged[0], why)


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
    question: str, relevant: list[Passage], evidence: list[Evidence], max_items: int
) -> list[Evidence]:
    """The evidence check (`with_top_ranked`): the ranking's first sentence joins the model's
    choice when missing, its reason saying so. Not verified yet: the caller verifies all."""
    ids, added = with_top_ranked(question, relevant, [e.sentence for e in evidence], max_items)
    if added is None:
        return evidence
    reasons = {e.sentence: e.reason for e in evidence}
    reasons[added] = "ranked first by the question's words (added by the evidence check)"
    return evidence_from_ids(ids, relevant, reasons, max_items)
