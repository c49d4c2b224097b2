"""The query's request and response models (POST /v1/query, ../shared/API.md): what the three
reasoning steps decided, the answer, its citations and what it cost. Shared pieces (collection
names, examples, blank-text checks) come from app/schemas.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from app.schemas import (
    COLLECTION_DESCRIPTION,
    COLLECTION_NAME,
    QUERY_MAX_CHARS,
    RETRIEVAL_HELP,
    SearchHit,
    example_config,
    not_blank,
)
from core.settings import RetrievalMode
from generation.reasoning.values import Mode

# The options a query shares with the OpenAI-compatible surface's `rag` field
# (app/openai_schemas.py), constrained once.
TopK = Annotated[int, Field(ge=1, le=20)]
# Printable names only: a control character (a NUL byte) names no adapter and must not reach
# the database as a query value.
AdapterName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
TOP_K_HELP = "Passages to retrieve; the configured default."
ADAPTER_HELP = "A LoRA adapter the generator serves (GET /v1/adapters)."
MODE_HELP = (
    "steps (default): relevance, evidence, analysis as three calls; single_pass: one call "
    "emits the whole trajectory; one_call and closed_book are evaluation baselines."
)
USE_CACHE_HELP = "False skips the cache lookup (evaluation)."
# A conversation's history: the turns a request may carry, and each answer's length.
HISTORY_MAX_TURNS = 20
HISTORY_ANSWER_MAX_CHARS = 8000


class HistoryTurn(BaseModel):
    model_config = example_config(
        {"question": "Where was the Kestrel engine built?", "answer": "In Derby [1]"}, forbid=True
    )

    question: str = Field(min_length=1, max_length=QUERY_MAX_CHARS, description="Asked earlier.")
    answer: str = Field(
        max_length=HISTORY_ANSWER_MAX_CHARS, description="The answer it got (may be empty)."
    )


class QueryRequest(BaseModel):
    model_config = example_config(
        {"collection": "docs", "question": "What does SMTP stand for?", "top_k": 5}, forbid=True
    )

    collection: str = Field(pattern=COLLECTION_NAME, description=COLLECTION_DESCRIPTION)
    question: str = Field(
        min_length=1,
        max_length=QUERY_MAX_CHARS,
        description=f"The question; not only whitespace, at most {QUERY_MAX_CHARS} characters.",
    )
    top_k: TopK | None = Field(default=None, description=TOP_K_HELP)
    adapter: AdapterName | None = Field(default=None, description=ADAPTER_HELP)
    stream: bool = Field(
        default=False,
        description="True: answer as server-sent events (retrieval, relevance, evidence, "
        "analysis, answer, then done or error).",
    )
    allow_unsupported: bool = Field(
        default=False,
        description="When nothing retrieved is relevant, answer from the model's own knowledge "
        "(citing nothing, supported: false) instead of saying there is no support.",
    )
    use_cache: bool = Field(default=True, description=USE_CACHE_HELP)
    mode: Mode | None = Field(default=None, description=MODE_HELP)
    retrieval: RetrievalMode | None = Field(
        default=None, description=RETRIEVAL_HELP + " Unset: the collection's setting."
    )
    history: list[HistoryTurn] = Field(
        default_factory=list,
        max_length=HISTORY_MAX_TURNS,
        description="The conversation so far, oldest first: the question is then a follow-up, "
        "rewritten from it into a question that stands alone before retrieval "
        "(`standalone_question` in the response).",
    )

    _question_not_blank = field_validator("question")(not_blank)


class Citation(BaseModel):
    id: int = Field(description="The marker number used in the analysis: [1], [2], ...")
    document_id: str = Field(description="The cited document.")
    filename: str = Field(description="Its filename.")
    chunk_id: int = Field(description="The chunk the quote comes from.")
    quote: str = Field(description="Verbatim: document.text[start:end].")
    start: int = Field(description="Offset of the quote in the document's extracted text.")
    end: int = Field(description="End offset (exclusive).")


class Judgement(BaseModel):
    chunk_id: int = Field(description="The retrieved chunk.")
    document_id: str = Field(description="Its document.")
    relevant: bool = Field(description="Whether the relevance step judged it useful.")
    reason: str = Field(
        description="The model's short reason; the retrieval check's when the question was "
        "declined before the model was asked (see answerability)."
    )


class EvidenceItem(BaseModel):
    id: int = Field(description="Evidence number; citations use the same ids.")
    sentence: str = Field(description="The selected sentence.")
    chunk_id: int = Field(description="The chunk it comes from.")
    document_id: str = Field(description="Its document.")
    filename: str = Field(description="That document's filename.")
    quote: str = Field(description="Verbatim: document.text[start:end].")
    start: int = Field(description="Offset in the document's extracted text.")
    end: int = Field(description="End offset (exclusive).")
    reason: str = Field(description="Why it supports an answer.")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Prompt tokens sent to the generator.")
    completion_tokens: int = Field(description="Tokens the generator produced.")
    cached_prompt_tokens: int = Field(
        default=0, description="Prompt tokens the server took from its prefix cache."
    )


SUPPORTED_DESCRIPTION = (
    "True only when the relevance step judged at least one retrieved passage relevant AND at "
    "least one evidence quote was verified verbatim in its document, the answer is cited "
    "from it, AND the answer critic finds that a cited sentence states the answer. False when "
    "nothing relevant was found, when no quote survived verification, when the quoted sentence "
    "is real but beside the point, when the answer is extractive (the model's answer was not "
    "held by its evidence), for closed_book answers and for allow_unsupported answers from the "
    "model's own knowledge. A strong hint, not a proof: read the citations."
)


class AnswerabilityOut(BaseModel):
    answerable: bool = Field(
        description="False when no retrieved sentence states the answer by the answer critic: "
        "the reasoning modes then declined without asking the model."
    )
    score: float = Field(
        description="The answer critic's probability that its best sentence states the answer."
    )
    threshold: float = Field(description="The score a sentence must reach to count.")
    sentence: str | None = Field(
        description='The id of that best sentence ("2.3": passage 2, sentence 3); null when '
        "the passages hold no sentence."
    )
    similarity: float | None = Field(
        None,
        description="Cosine of the question and the nearest passage (null: lexical retrieval).",
    )
    declined_by: Literal["critic"] | None = Field(
        None, description="What declined: the answer critic (absent when answerable)."
    )


class QueryResponse(BaseModel):
    answer: str = Field(description="The short answer.")
    analysis: str = Field(description="A concise analysis citing evidence as [1], [2].")
    citations: list[Citation] = Field(description="Verified citations; empty when unsupported.")
    relevance: list[Judgement] = Field(description="The relevance step's judgement per passage.")
    evidence: list[EvidenceItem] = Field(description="The evidence the analysis draws on.")
    cached: bool = Field(description="True when the answer came from the query cache.")
    model: str = Field(description="The generator model or adapter used.")
    mode: str = Field(description="The pipeline mode that produced the answer.")
    supported: bool = Field(default=False, description=SUPPORTED_DESCRIPTION)
    degraded: str | None = Field(
        default=None,
        description="Set when the answer is degraded: generator_unavailable means only "
        "retrieval ran (see hits).",
    )
    hits: list[SearchHit] | None = Field(
        default=None,
        description="The passages retrieval returned for the question, best first (also for "
        "declines; in a retrieval-only response they stand instead of an answer).",
    )
    answer_source: Literal["model", "extractive"] | None = Field(
        default=None,
        description="model: the model's answer, supported by the evidence; extractive: the "
        "model's answer was not, so the answer is the best cited evidence sentence.",
    )
    analysis_source: Literal["model", "evidence"] | None = Field(
        default=None,
        description="model: the model's analysis, each sentence citing evidence it is grounded "
        "in (others are dropped); evidence: no sentence was, so the analysis quotes the evidence.",
    )
    model_answer: str | None = Field(
        default=None,
        description="The model's own answer, when answer_source is extractive (it was replaced).",
    )
    standalone_question: str | None = Field(
        default=None,
        description="With `history`: the follow-up rewritten to stand alone, the question "
        "that was searched for and answered.",
    )
    answerability: AnswerabilityOut | None = Field(
        default=None,
        description="What retrieval alone says of the question (steps and single_pass modes): "
        "how much of it the passages cover and how near the nearest is.",
    )
    index_version: int = Field(description="The collection version the answer was built on.")
    usage: Usage = Field(description="Generator tokens the answer cost when it was computed.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per step (retrieve, relevance, evidence, analysis, generator, "
        "total) of this request; a cached answer reports only its own lookup (cache, total)."
    )
    original_timings_ms: dict[str, float] | None = Field(
        default=None, description="For a cached answer: the timings of the run that computed it."
    )
