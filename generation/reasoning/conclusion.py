"""The last step's answer made checkable: the answer check (a retrieved sentence holding the
model's answer joins the evidence), the analysis grounded in the evidence it cites, an
extractive answer when the model's is not supported, and the citations that hold the answer.
Pure but for verifying an added sentence against the stored text.
"""

from __future__ import annotations

from generation.reasoning.grounding import grounded_analysis, grounded_answer, is_supported
from generation.reasoning.replies import (
    answer_citations,
    citation_of,
    evidence_from_ids,
    repair_markers,
    sentence_rank,
)
from generation.reasoning.results import Outcome
from generation.reasoning.revisions import answer_sentence, turned_relevant
from generation.reasoning.sentence_scores import SentenceScores
from generation.reasoning.values import Evidence, Judgement, Passage
from generation.reasoning.verification import DocumentTexts, verified


async def conclude(
    question: str,
    judged: list[Judgement],
    evidence: list[Evidence],
    analysis: str,
    answer: str,
    passages: list[Passage],
    scores: SentenceScores,
    texts: DocumentTexts,
    answer_max_chars: int,
) -> Outcome:
    """The outcome of a reasoning mode from the model's verdicts, verified evidence, analysis
    and answer. `supported` needs the model's own answer (not an extractive stand-in) and a
    citation that states the answer by the answer critic (`scores`) as well as holding the
    answer's words."""
    evidence, judged = await support_answer(question, answer, evidence, passages, judged, texts)
    analysis, _ = repair_markers(analysis, evidence)
    # Every analysis sentence must cite evidence and add nothing the evidence lacks.
    analysis, _dropped, rewritten = grounded_analysis(
        analysis, question, {e.id: e.quote for e in evidence}
    )
    analysis, cited = repair_markers(analysis, evidence)
    # Evidence that holds the model's answer is always cited: chosen by the evidence step
    # but not named by the analysis, or added by the answer check. Else grounding would
    # replace a supported answer with a quote of the sentences the analysis happened to cite.
    cited += [
        e.id for e in evidence if e.id not in cited and is_supported(answer, question, [e.quote])
    ]
    # An extractive answer is a cited sentence, from the best-ranked document.
    pool = [e for e in evidence if e.id in cited] or evidence
    ranked = sorted(pool, key=lambda e: sentence_rank(e.sentence))
    model_answer = answer
    answer, source = grounded_answer(answer, question, [e.quote for e in ranked], answer_max_chars)
    backing = answer_citations(answer, question, evidence, cited)
    citations = [citation_of(e) for e in backing]
    return Outcome(
        answer=answer,
        analysis=analysis,
        citations=citations,
        relevance=judged,
        evidence=evidence,
        # Backed by a passage judged relevant and a verbatim-verified quote (API.md) that
        # states the answer: a real sentence beside the point does not support it. An
        # extractive answer stands in for a model answer the evidence did not hold: shown so
        # the evidence can be read, but nothing checked it answers the question (of those
        # marked supported on the train sets only about half were right; docs/benchmarks.md).
        supported=source == "model"
        and any(j.relevant for j in judged)
        and any(scores.states_answer(e.sentence) for e in backing),
        answer_source=source,
        analysis_source="evidence" if rewritten else "model",
        # What the model wrote, when grounding replaced it (benchmarks score both).
        model_answer=model_answer if source == "extractive" else None,
    )


async def support_answer(
    question: str,
    answer: str,
    evidence: list[Evidence],
    passages: list[Passage],
    judged: list[Judgement],
    texts: DocumentTexts,
) -> tuple[list[Evidence], list[Judgement]]:
    """The evidence, plus the retrieved sentence that best supports the model's answer
    (revisions.py `answer_sentence`) when the chosen evidence does not: a capable model often
    answers from a heading or a neighbouring sentence it did not pick. Ties go to passages
    judged relevant: a small model's relevance verdicts miss a second hop's passage that its
    answer then comes from, and such a passage's judgement turns relevant, with the reason
    saying why. Verified verbatim like the rest; without such a sentence the evidence is
    unchanged and grounding decides."""
    quotes = [e.quote for e in evidence]
    if not answer.strip() or not evidence or is_supported(answer, question, quotes):
        return evidence, judged
    found = answer_sentence(answer, question, passages, judged, {e.sentence for e in evidence})
    if found is None:
        return evidence, judged
    passage, index, judgement = found
    sentence_id = passage.sentence_id(index)
    reason = {sentence_id: "holds the answer (added by the answer check)"}
    extra = evidence_from_ids([sentence_id], [passage], reason, 1)
    why = f"sentence {sentence_id} holds the answer: the answer check"
    return await verified([*evidence, *extra], texts), turned_relevant(judged, judgement, why)
