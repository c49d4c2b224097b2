"""The answer critic's two verdicts a user reads, end to end over the HTTP API: Postgres, the
Celery worker, the embedder, the shipped critic. A question about something the manual lacks
is declined before the model is asked; a cited sentence that is real but beside the point
leaves `supported: false`.

The generator is FAKE, labelled as such: it replays the replies a small model gave in the case
the issue reports (a sentence about stack traces cited for an option's default), so the test
decides what the model says and checks only what the service makes of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from core.settings import Settings
from generation.llm.generator import Completion, Message, TextSink
from tests.integration.conftest import WorkerProcess, new_collection, upload, wait_job
from tests.integration.fakes import SchemaFollowingGenerator

MANUAL = (
    "Valgrind records a stack trace for each error it reports. --num-callers=<number> "
    "[default: 12] Specifies the maximum number of entries shown in stack traces."
)


class ReplayedModel(SchemaFollowingGenerator):
    """FAKE generator, labelled as such: replays `replies` in order and counts the calls."""

    model = "replayed"

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = [json.dumps(r) for r in replies]
        self.calls = 0

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        self.calls += 1
        return Completion(self.replies.pop(0), self.model, 100, 10, 0, 0.01)


def test_the_critic_declines_and_withholds_support(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
) -> None:
    model = ReplayedModel(
        [
            {"document_1": {"reason": "about Valgrind's options", "relevant": True}},
            {"evidence": [{"sentence": "1.1", "reason": "about stack traces"}]},
            {"answer": "a stack trace for each error", "analysis": "It records one [1]."},
        ]
    )
    client = make_client(pg_settings.model_copy(update={"data_dir": tmp_path}), model)
    name = new_collection(client, "critic")
    accepted = upload(client, name, [("valgrind.txt", MANUAL.encode())])
    assert wait_job(client, accepted["job_id"])["status"] == "succeeded"

    def ask(question: str) -> dict[str, Any]:
        body = {"collection": name, "question": question, "use_cache": False}
        response = client.post("/v1/query", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    declined = ask("What is the default of --leak-check?")
    assert declined["answerability"]["declined_by"] == "critic"
    assert declined["supported"] is False and declined["citations"] == []
    assert "do not contain the answer" in declined["answer"]
    assert model.calls == 0, "declined before the model was asked"

    beside = ask("What is the default of --num-callers?")
    assert model.calls == 3
    assert beside["answerability"]["answerable"] is True
    assert beside["answerability"]["sentence"] == "1.2"
    quotes = [c["quote"] for c in beside["citations"]]
    assert quotes == ["Valgrind records a stack trace for each error it reports."]
    assert beside["supported"] is False, "a real quote that does not state the answer"
    assert beside["timings_ms"]["critic"] >= 0
