"""The evidence step's candidate sentences: BM25 against the question fused with reading order."""

from __future__ import annotations

from core.settings import PipelineSettings
from generation.reasoning.evidence_ranking import bm25, ranked_sentence_ids
from generation.reasoning.prompts import evidence_request, make_passages, system_message
from generation.reasoning.replies import evidence_from_ids
from generation.reasoning.revisions import with_top_ranked_evidence
from generation.reasoning.values import Passage
from retrieval.search import Hit

PARIS = (
    "Paris is the capital and the largest city of France by population. "
    "The city hosted the World Fair of 1889 on the Champ de Mars grounds. "
    "The Eiffel Tower was completed in March 1889 for that fair by Gustave Eiffel."
)
RIVERS = (
    "The Seine flows through the centre of Paris from east to west. "
    "Its banks between two bridges are a UNESCO World Heritage Site since 1991."
)


def passages(*texts: str) -> list[Passage]:
    return make_passages(
        [Hit(n, f"doc{n}", f"f{n}.txt", t, 0.5, 0, len(t)) for n, t in enumerate(texts, 1)]
    )


def test_bm25_prefers_the_rarer_shared_term() -> None:
    docs = [["tower", "city"], ["city", "fair"], ["city", "river"]]
    scores = bm25(["tower", "city"], docs)
    assert scores[0] > scores[1] and scores[1] == scores[2] > 0
    assert bm25(["absent"], docs) == [0.0, 0.0, 0.0]


def test_the_sentence_sharing_the_question_words_ranks_first() -> None:
    ranked = ranked_sentence_ids("When was the Eiffel Tower completed?", passages(PARIS, RIVERS))
    assert ranked[0] == "1.3"
    assert sorted(ranked) == ["1.1", "1.2", "1.3", "2.1", "2.2"]


def test_without_shared_words_reading_order_decides() -> None:
    ranked = ranked_sentence_ids("Qu'est-ce que c'est ?", passages(PARIS, RIVERS))
    assert ranked == ["1.1", "1.2", "1.3", "2.1", "2.2"]


def test_the_evidence_step_offers_only_the_candidates_likeliest_first() -> None:
    found = passages(PARIS, RIVERS)
    system = system_message("When was the Eiffel Tower completed?", found)
    question = "When was the Eiffel Tower completed?"

    def offered(settings: PipelineSettings) -> tuple[list[str], str]:
        ranked = ranked_sentence_ids(question, found)
        request = evidence_request(system, question, found, settings, ranked)
        schema = request.schema["properties"]["evidence"]["items"]["properties"]["sentence"]
        return schema["enum"], request.messages[-1]["content"]

    ids, instruction = offered(PipelineSettings(evidence_candidates=2))
    assert len(ids) == 2 and ids[0] == "1.3"
    assert f"likeliest first: [{ids[0]}], [{ids[1]}]" in instruction
    # 0, or a limit that covers every sentence: all sentences, in reading order, unlisted.
    for limit in (0, 5):
        ids, instruction = offered(PipelineSettings(evidence_candidates=limit))
        assert ids == ["1.1", "1.2", "1.3", "2.1", "2.2"]
        assert "likeliest" not in instruction


def test_the_top_ranked_sentence_joins_the_models_choice() -> None:
    found = passages(PARIS, RIVERS)
    ranked = ranked_sentence_ids("When was the Eiffel Tower completed?", found)

    def chosen(*ids: str) -> list[str]:
        evidence = evidence_from_ids(list(ids), found, {}, 3)
        return [e.sentence for e in with_top_ranked_evidence(ranked, found, evidence, 3)]

    assert chosen("2.1", "1.3") == ["2.1", "1.3"], "chosen already: nothing changes"
    assert chosen("2.1") == ["2.1", "1.3"], "missing, with room: after the model's choices"
    assert chosen("2.1", "2.2", "1.1") == ["2.1", "2.2", "1.3"], "the last choice makes room"
    added = with_top_ranked_evidence(ranked, found, evidence_from_ids(["2.1"], found, {}, 3), 3)
    assert "evidence check" in added[1].reason
    assert with_top_ranked_evidence([], [], [], 3) == []
