"""The web interface in a real browser: the first run (create a collection, add documents, ask,
with the ingestion state live beside the question), upload, ask with the reasoning streamed, the
cited span highlighted in its source, hostile text kept inert, and admin controls hidden from
query keys."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core import api_keys
from core.db import Database
from core.migrate import upgrade
from core.settings import Settings
from generation.llm.generator import Completion, Generator, Message, TextSink
from retrieval.embedders import Embedder, EmbedderPool
from retrieval.parsing import SUPPORTED_MEDIA_TYPES
from tests.browser.conftest import TEST_OUTPUT, UiServer
from tests.integration.fakes import NothingRelevant, SchemaFollowingGenerator, minimal_instance

pytestmark = pytest.mark.browser

BIOS = "foldoc-basic-input-output-system-20.md"
SMTP = "foldoc-simple-mail-transfer-protocol-245.md"
AGP = "foldoc-accelerated-graphics-port-662.md"
# Each payload sets window.__pwned if it ever runs.
HOSTILE = (
    '<script>window.__pwned = "script"</script> '
    '<img src="x" onerror="window.__pwned = \'img\'"> '
    "<svg onload=\"window.__pwned = 'svg'\"></svg>"
)
HOSTILE_FILENAME = "<img src=x onerror=window.__pwned=1>.md"

Serve = Callable[..., AbstractContextManager[UiServer]]
CURRENT_EMBEDDER_IS = "(id) => document.getElementById('current-embedder').textContent === id"
MIGRATION_SHOWN = (
    "#current-embedder",
    "#migration-job-id",
    "#migration-status",
    "#migration-error",
)


def wait_for_embedder(page: Any, server: UiServer, embedder: str, timeout: float) -> None:
    """Wait until the migration tab shows `embedder` as the current one; if it never does, say
    what the page showed and what the server says of the job and the collection."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(CURRENT_EMBEDDER_IS, arg=embedder, timeout=timeout)
    except PlaywrightTimeout as exc:
        shown = {selector: page.locator(selector).inner_text() for selector in MIGRATION_SHOWN}
        job_id = shown["#migration-job-id"]
        job = server.http.get(f"/admin/v1/jobs/{job_id}").json() if job_id else None
        collections = server.http.get("/v1/collections").json()
        raise AssertionError(
            f"the page never showed {embedder!r}; it shows {shown}; "
            f"the server's job: {job}; its collections: {collections}"
        ) from exc


def drop_files(page: Any, selector: str, files: list[tuple[str, str]]) -> None:
    """Drop files on an element the way a person's drag-and-drop does (a DataTransfer)."""
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, text] of files) transfer.items.add(new File([text], name));
            return transfer;
        }""",
        files,
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def upload_row(page: Any, filename: str) -> Any:
    return page.locator(f'.upload-row[data-filename="{filename}"]').first


def screenshot(page: Any, name: str) -> None:
    """Save what the page shows as test-output/NAME (git-ignored), for a person to look at."""
    TEST_OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(TEST_OUTPUT / name), full_page=True)


def open_options(page: Any) -> None:
    """Unfold the Ask form's "More options" (how to answer, search method, adapter, excerpts)."""
    options = page.locator("details.ask-options")
    if options.get_attribute("open") is None:
        options.locator("summary").click()


class HeldEmbedder:
    """The real embedder, except that embedding documents waits for `released`: see
    HeldEmbedders."""

    def __init__(self, embedder: Embedder, released: threading.Event) -> None:
        self.inner = embedder
        self.id = embedder.id
        self.dim = embedder.dim
        self.released = released

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.released.wait(timeout=120)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)


class HeldEmbedders(EmbedderPool):
    """The session's real embedders (the same loaded models), except that ingestion waits in
    embed_documents until `release()`: uploaded documents stay queued or processing for as
    long as a test looks at the page. Nothing is faked: released, they are embedded as usual."""

    def __init__(self, pool: EmbedderPool) -> None:
        self.__dict__.update(pool.__dict__)  # its settings and loaded models, not a copy
        self.pool = pool
        self.released = threading.Event()

    def get(self, embedder_id: str) -> Embedder:
        return HeldEmbedder(self.pool.get(embedder_id), self.released)

    def for_queries(self, embedder_id: str) -> Embedder:
        return self.pool.for_queries(embedder_id)

    def release(self) -> None:
        self.released.set()


def test_first_run_leads_from_no_collection_to_an_answer(
    serve: Serve, open_page: Callable[[str], Any], corpus: Path, embedders: EmbedderPool
) -> None:
    """A person with nothing yet: the page says what a collection is and asks for one, then
    for documents (listing every type the server accepts), shows beside the question box that
    they are still being ingested, and says when they are ready; then the question."""
    pool = HeldEmbedders(embedders)
    with serve(SchemaFollowingGenerator(), pool=pool) as server:
        try:
            first_run(open_page(server.url), corpus, pool)
        finally:
            pool.release()  # a failed test must not leave the worker waiting


def first_run(page: Any, corpus: Path, pool: HeldEmbedders) -> None:
    page.wait_for_selector("#start:not([hidden])")
    start = page.locator("#start").inner_text()
    assert "A collection is a named set of your documents" in start
    # Nothing to ask yet, so no Ask tab to land on: the steps, the first one current.
    assert page.locator("#tabs").is_hidden() and page.locator("#tab-ask").is_hidden()
    assert page.locator("#guide").is_visible()
    assert page.locator('#guide li[data-step="create"]').get_attribute("data-state") == ("current")
    assert page.locator("#collection-form").is_hidden(), "one create form, not two"
    screenshot(page, "ui-first-run-1-start.png")

    page.fill("#first-collection-name", "manuals")
    page.click("#first-collection-form button[type=submit]")
    # Created: on to adding documents, with every accepted type listed (from the server).
    page.wait_for_selector("#tab-documents:not([hidden]) #drop-zone")
    assert page.locator("#documents-heading").inner_text() == "Add documents to “manuals”"
    page.wait_for_selector('#guide li[data-step="add"][data-state="current"]')
    assert page.locator('#guide li[data-step="create"]').get_attribute("data-state") == ("done")
    listed = page.locator("#file-types").inner_text()
    assert f"({len(SUPPORTED_MEDIA_TYPES)})" in listed
    for extension in SUPPORTED_MEDIA_TYPES:
        assert f".{extension}" in listed.split(), extension
    accept = page.locator("#file-input").get_attribute("accept")
    assert accept == ",".join(f".{e}" for e in SUPPORTED_MEDIA_TYPES)
    assert page.locator("#documents-empty").is_visible()
    assert page.locator("button.collection", has_text="manuals").is_visible()
    screenshot(page, "ui-first-run-2-documents.png")

    drop_files(page, "#drop-zone", [(n, (corpus / n).read_text()) for n in (BIOS, SMTP)])
    page.wait_for_selector(".upload-batch")
    # Held in the embedder, the documents are still being ingested: the Ask tab says so
    # beside the question box, and the steps and the collection list too.
    page.click('[data-tab="ask"]')
    status = page.locator("#ingest-status")
    page.wait_for_selector('#ingest-status[data-state="ingesting"]')
    assert "Still adding 2 documents" in status.inner_text()
    assert "No document is ready to search yet" in status.inner_text()
    page.wait_for_selector('#guide li[data-step="add"][data-state="working"]')
    assert "adding 2" in page.locator("button.collection", has_text="manuals").inner_text()
    assert page.get_attribute("#question", "placeholder") == (
        "Ask a question about the documents in “manuals”"
    )
    screenshot(page, "ui-first-run-3-ingesting.png")

    # Released, they are embedded; the page follows without a reload.
    pool.release()
    page.wait_for_selector('#ingest-status[data-state="ready"]', timeout=120_000)
    assert status.inner_text().strip() == "2 documents ready to search."
    page.wait_for_selector('#guide li[data-step="ask"][data-state="current"]')
    assert "2 documents" in page.locator("button.collection", has_text="manuals").inner_text()

    page.fill("#question", "What does BIOS stand for?")
    page.click("#ask-button")
    page.wait_for_selector('#answer-view[data-state="done"]', timeout=120_000)
    assert page.locator("#answer").inner_text().strip()
    # Raw search scores are not shown; the list is in order, best match first.
    assert "score" not in page.locator("#hits").inner_text()
    # The first answer ends the first run: the steps give the room back.
    assert page.locator("#guide").is_hidden()
    # Timings are folded away, in words rather than internal step names.
    assert page.locator("#timings").is_hidden()
    page.click("details.run-details summary")
    assert "in all" in page.locator("#timings").inner_text()
    screenshot(page, "ui-first-run-4-answer.png")


def test_upload_two_files_and_watch_them_reach_done(
    serve: Serve, open_page: Callable[[str], Any], corpus: Path
) -> None:
    with serve(SchemaFollowingGenerator()) as server:
        page = open_page(server.url)
        page.wait_for_selector("text=No collections yet.")
        # Nothing to ask yet: the button says so rather than ignoring a click.
        assert page.locator("#ask-button").is_disabled()
        page.fill("#first-collection-name", "manuals")
        page.click("#first-collection-form button[type=submit]")
        page.wait_for_selector('button.collection[aria-pressed="true"] >> text=manuals')
        assert page.locator("#ask-button").is_enabled()
        page.click('[data-tab="documents"]')

        drop_files(page, "#drop-zone", [(n, (corpus / n).read_text()) for n in (BIOS, SMTP)])
        batch = page.locator(".upload-batch").first
        page.wait_for_function(
            "() => document.querySelector('.upload-batch')?.dataset.jobStatus === 'succeeded'",
            timeout=120_000,
        )
        for name in (BIOS, SMTP):
            assert upload_row(page, name).get_attribute("data-status") == "done"
        progress = batch.locator("progress")
        assert progress.evaluate("p => p.value === p.max && p.max === 2")
        rows = page.locator("#document-rows tr")
        assert rows.count() == 2
        assert page.locator("#document-rows .status.done").count() == 2
        # The collection list refreshes after the job ends (its counts come from another call).
        page.wait_for_function(
            """() => [...document.querySelectorAll("button.collection")].some(
                (b) => b.innerText.includes("manuals") && b.innerText.includes("2 documents"))""",
            timeout=60_000,
        )

        # Again: one file the collection already holds, one that cannot be parsed.
        again = [(BIOS, (corpus / BIOS).read_text()), ("bad.pdf", "%PDF-1.4 junk")]
        drop_files(page, "#drop-zone", again)
        page.wait_for_function(
            "() => document.querySelector('.upload-batch')?.dataset.jobStatus",
            timeout=120_000,
        )
        assert upload_row(page, BIOS).get_attribute("data-status") == "duplicate"
        failed = upload_row(page, "bad.pdf")
        assert failed.get_attribute("data-status") == "failed"
        assert failed.locator(".muted").inner_text().strip(), "a failed file shows its message"

        # Delete takes a second click to confirm.
        row = page.locator("#document-rows tr", has_text=SMTP)
        row.locator("button.danger").click()
        row.locator("button.danger", has_text="Confirm delete").click()
        page.wait_for_function("() => document.querySelectorAll('#document-rows tr').length === 2")
        assert SMTP not in page.locator("#document-rows").inner_text()
        listed = server.http.get("/v1/collections/manuals/documents").json()["documents"]
        assert SMTP not in {d["filename"] for d in listed}

        # Beside the question box: what can be searched, and a way to the file that failed.
        page.click('[data-tab="ask"]')
        status = page.locator("#ingest-status")
        page.wait_for_selector('#ingest-status[data-state="ready"]')
        page.wait_for_function(
            "() => document.getElementById('ingest-status').innerText.includes('1 file could')"
        )
        assert status.inner_text().startswith("1 document ready to search.")
        status.locator("button", has_text="1 file could not be read").click()
        assert page.locator("#tab-documents").is_visible()


def test_ask_streams_the_reasoning_and_highlights_the_citation(
    serve: Serve, open_page: Callable[[str], Any], corpus: Path, llm: Generator, tmp_path: Path
) -> None:
    """The real embedded model (SmolLM2-135M): it cites the BIOS entry for this question."""
    with serve(llm) as server:
        server.create_collection("foldoc")
        server.ingest("foldoc", [(n, (corpus / n).read_bytes()) for n in (BIOS, SMTP, AGP)])
        page = open_page(server.url)
        events: list[str] = []
        page.on(
            "response",
            lambda r: (
                events.append(r.headers.get("content-type", ""))
                if r.url.endswith("/v1/query")
                else None
            ),
        )
        page.fill("#question", "What does BIOS stand for?")
        page.select_option("#ask-collection", "foldoc")
        open_options(page)
        page.select_option("#ask-mode", "steps")
        page.fill("#ask-top-k", "3")
        # Every state the answer shows: its text, and whether it is still being written.
        page.evaluate(
            """() => {
              const node = document.getElementById("answer");
              window.answerStates = [];
              new MutationObserver(() =>
                window.answerStates.push([node.textContent, "writing" in node.dataset]),
              ).observe(node, { childList: true, characterData: true, attributes: true });
            }"""
        )
        page.click("#ask-button")
        # The retrieval hits arrive before the model has said anything.
        page.wait_for_selector("#hits li.hit")
        page.wait_for_selector('#answer-view[data-state="done"]', timeout=300_000)
        assert events and events[0].startswith("text/event-stream")
        # The answer grew as the model wrote it (a draft), then the checked answer replaced it.
        states = page.evaluate("() => window.answerStates")
        drafts = [text for text, writing in states if writing and text]
        assert len(drafts) >= 2, states
        assert all(len(a) < len(b) for a, b in zip(drafts, drafts[1:], strict=False)), drafts
        assert states[-1] == [page.locator("#answer").text_content(), False]

        assert page.locator("#answer").inner_text().strip()
        assert page.locator("#ask-error").is_hidden()
        verdicts = page.locator("#hits .verdict")
        assert verdicts.count() == 3
        assert all(v in ("relevant", "not relevant") for v in verdicts.all_inner_texts())
        assert page.locator("#hits .verdict.relevant").count() >= 1
        assert page.locator("#evidence li.evidence-item").count() >= 1
        assert page.locator("#timings tr").count() >= 3
        assert "SmolLM2" in page.locator("#run-meta").text_content()
        citations = page.locator("#citations li.citation")
        assert citations.count() >= 1

        TEST_OUTPUT.mkdir(exist_ok=True)
        shot = tmp_path / "ui-ask.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, TEST_OUTPUT / "ui-ask.png")

        # The citation opens its document with exactly the cited span highlighted.
        first = citations.first
        quote = first.locator("q").inner_text()
        first.locator("button.citation-link").click()
        page.wait_for_selector("#source-view[open] mark.cited")
        mark = page.locator("#source-text mark.cited")
        assert page.locator("#source-title").inner_text() == BIOS
        assert page.locator("#source-warning").is_hidden()
        highlighted = mark.evaluate("m => m.textContent")
        assert highlighted.split() == quote.split()
        # Against the API: the highlight sits at the citation's offsets in the extracted text.
        documents = server.http.get("/v1/collections/foldoc/documents").json()["documents"]
        bios_id = next(d["document_id"] for d in documents if d["filename"] == BIOS)
        text = server.http.get(f"/v1/collections/foldoc/documents/{bios_id}").json()["text"]
        before = page.locator("#source-text").evaluate("p => p.firstChild.textContent")
        assert text[len(before) : len(before) + len(highlighted)] == highlighted
        assert page.locator("#source-text").evaluate("p => p.textContent") == text
        page.screenshot(path=str(TEST_OUTPUT / "ui-source.png"))
        page.click("#source-close")

        # The answer joins the conversation; a follow-up is sent with it as history, and the
        # page says what the service read the follow-up as.
        assert page.locator("#conversation-turns li").count() == 1
        bodies: list[dict[str, Any]] = []
        page.on(
            "request",
            lambda r: bodies.append(r.post_data_json) if r.url.endswith("/v1/query") else None,
        )
        page.fill("#question", "What is it used for?")
        page.click("#ask-button")
        page.wait_for_selector('#answer-view[data-state="done"] #standalone:not([hidden])')
        assert bodies[-1]["history"][0]["question"] == "What does BIOS stand for?"
        assert page.locator("#standalone").inner_text().startswith("Read as: ")
        assert page.locator("#conversation-turns li").count() == 2

        # A new conversation: the first question again stands alone, and comes from the cache.
        page.click("#new-conversation")
        assert page.locator("#conversation").is_hidden()
        page.fill("#question", "What does BIOS stand for?")
        page.click("#ask-button")
        page.wait_for_selector('#answer-view[data-state="done"] #cached-badge:not([hidden])')
        assert "history" not in bodies[-1]


class HostileGenerator(SchemaFollowingGenerator):
    """FAKE generator, labelled as such: replies like SchemaFollowingGenerator but puts markup
    that would run if rendered as HTML into every free-text field (reasons, analysis, answer),
    streamed in one piece when asked to.
    What is under test is how the page renders model output, not what a model would write."""

    model = "fake-hostile"

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        def fill(node: dict[str, Any], value: Any) -> Any:
            if isinstance(value, dict):
                props = node.get("properties", {})
                return {k: fill(props.get(k, {}), v) for k, v in value.items()}
            if isinstance(value, list):
                return [fill(node.get("items", {}), v) for v in value]
            if isinstance(value, str) and "enum" not in node:
                text = HOSTILE + (" [1]" if node is analysis_field else "")
                return text[: node.get("maxLength", len(text))]
            return value

        analysis_field = (schema or {}).get("properties", {}).get("analysis")
        text = json.dumps(fill(schema or {}, minimal_instance(schema or {"type": "string"})))
        if on_text is not None:  # the markup reaches the page while the answer is written too
            on_text(text)
        return Completion(text, self.model, 10, 5, 0, 0.0)


def test_hostile_document_and_model_output_stay_inert(
    serve: Serve, open_page: Callable[[str], Any]
) -> None:
    with serve(HostileGenerator()) as server:
        server.create_collection("hostile")
        body = f"# Notes\n\nThe payload follows. {HOSTILE}\n\nIt must show as text.\n"
        server.ingest("hostile", [(HOSTILE_FILENAME, body.encode())])
        page = open_page(server.url)
        violations: list[str] = []
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security" in m.text else None,
        )

        page.click('[data-tab="documents"]')
        page.wait_for_selector("#document-rows tr")
        assert page.locator("#document-rows td").first.inner_text() == HOSTILE_FILENAME

        page.click('[data-tab="ask"]')
        page.fill("#question", "What does the payload do?")
        page.click("#ask-button")
        page.wait_for_selector('#answer-view[data-state="done"]', timeout=120_000)
        assert HOSTILE[:40] in page.locator("#answer").inner_text()
        assert "<script>" in page.locator("#hits .reason").first.inner_text()
        page.locator("#citations button.citation-link").first.click()
        page.wait_for_selector("#source-view[open] mark.cited")
        source = page.locator("#source-text").inner_text()
        assert "<script>window.__pwned" in source and "onerror=" in source

        # Nothing ran and no element came out of the text: the page has no <img>/<svg> at all,
        # and its only script is its own module.
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("img, svg, iframe, object").count() == 0
        assert page.evaluate("() => [...document.scripts].map(s => s.src)") == [
            f"{server.url}/ui/main.js"
        ]
        assert not violations, violations


class SwitchableGenerator(NothingRelevant):
    """FAKE generator, labelled as such: judges every chunk not relevant, or, once `broken` is
    set, replies with text that is not JSON at all (so the query fails after one repair). What is
    under test is how the page reports an unanswerable question and a failed query."""

    model = "fake-switchable"
    broken = False

    async def generate(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None,
        max_tokens: int,
        adapter: str | None = None,
        on_text: TextSink | None = None,
    ) -> Completion:
        if self.broken:
            return Completion("I would rather not say.", self.model, 10, 5, 0, 0.0)
        return await super().generate(messages, schema=schema, max_tokens=max_tokens)


def test_unanswerable_question_and_failed_query_are_explained(
    serve: Serve, open_page: Callable[[str], Any], corpus: Path
) -> None:
    generator = SwitchableGenerator()
    with serve(generator) as server:
        server.create_collection("dict")
        server.ingest("dict", [(AGP, (corpus / AGP).read_bytes())])
        page = open_page(server.url)
        page.fill("#question", "Who painted the Mona Lisa?")
        page.click("#ask-button")
        page.wait_for_selector('#answer-view[data-state="done"]')
        assert "do not answer" in page.locator("#no-support").inner_text()
        assert page.locator("#citations li.citation").count() == 0
        assert page.locator("#hits .verdict.irrelevant").count() >= 1

        generator.broken = True
        page.fill("#question", "What is AGP?")
        page.click("#ask-button")
        page.wait_for_selector('#answer-view[data-state="error"]')
        error = page.locator("#ask-error").inner_text()
        assert error.startswith("generator_invalid_output: "), error
        assert page.locator("#run-step").inner_text() == "failed"

        # An error before the stream starts (an adapter the generator does not serve) is shown
        # with the API's code and message too.
        page.evaluate(
            """() => {
                const option = document.createElement('option');
                option.value = 'no-such-adapter';
                option.textContent = 'no-such-adapter';
                document.getElementById('ask-adapter').append(option);
            }"""
        )
        open_options(page)
        page.select_option("#ask-adapter", "no-such-adapter")
        page.click("#ask-button")
        page.wait_for_selector('#answer-view[data-state="error"] #ask-error:not([hidden])')
        assert page.locator("#ask-error").inner_text().startswith("adapter_not_found: ")


def test_query_key_sees_no_admin_controls_and_the_server_still_refuses(
    serve: Serve, open_page: Callable[[str], Any], tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "keyed")
    upgrade(settings)
    db = Database(settings)
    with db.session() as session:
        _, admin_key = api_keys.create_api_key(session, "admin", "ui-admin")
        _, query_key = api_keys.create_api_key(session, "query", "ui-reader")
    db.dispose()

    with serve(SchemaFollowingGenerator(), settings, admin_key) as server:
        page = open_page(server.url)
        # The page itself loads without a key, then asks for one.
        page.wait_for_selector("#key-panel:not([hidden])")
        assert page.locator("#workspace").is_hidden()

        page.fill("#key-input", "rag_000000000000_" + "A" * 43)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#key-error:not([hidden])")
        assert "invalid" in page.locator("#key-error").inner_text()

        page.fill("#key-input", query_key)
        page.click("#key-form button[type=submit]")
        # No collection yet, and this key cannot create one: the start card says who can, and
        # the page shows the collection once an admin has made it (no reload).
        page.wait_for_selector("#start:not([hidden])")
        assert page.locator("#first-collection-form").is_hidden()
        assert "Someone with an admin key creates a collection" in (
            page.locator("#start").inner_text()
        )
        server.create_collection("shared")
        page.wait_for_selector("button.collection >> text=shared", timeout=30_000)
        page.wait_for_selector('#ingest-status[data-state="empty"]')
        assert "Someone with an admin key adds them" in page.locator("#ingest-status").inner_text()
        assert page.locator("#identity").inner_text() == "query key"
        for selector in ("#collection-form", '[data-tab="migration"]', "#tab-migration"):
            assert page.locator(selector).is_hidden(), selector
        page.click('[data-tab="documents"]')
        assert page.locator("#drop-zone").is_hidden()
        assert page.locator("#document-rows button.danger").count() == 0
        # Hidden is not the guard: the server refuses the admin call made with this key.
        status = page.evaluate(
            """async () => (await fetch('/admin/v1/collections', {
                method: 'POST',
                headers: {'Content-Type': 'application/json',
                          Authorization: 'Bearer ' + sessionStorage.getItem('rag.apiKey')},
                body: JSON.stringify({name: 'sneaky'}),
            })).status"""
        )
        assert status == 403
        # Every call the page made carried the key.
        assert page.evaluate("() => sessionStorage.getItem('rag.apiKey')") == query_key

        # An admin key in another tab sees the controls.
        admin_page = open_page(server.url)
        admin_page.fill("#key-input", admin_key)
        admin_page.click("#key-form button[type=submit]")
        admin_page.wait_for_selector("#collection-form:not([hidden])")
        assert admin_page.locator("#identity").inner_text() == "admin key"
        assert admin_page.locator('[data-tab="migration"]').is_visible()


def test_embedder_migration_runs_and_rolls_back_from_the_page(
    serve: Serve, open_page: Callable[[str], Any], corpus: Path
) -> None:
    with serve(SchemaFollowingGenerator()) as server:
        server.create_collection("mig")
        server.ingest("mig", [(BIOS, (corpus / BIOS).read_bytes())])
        page = open_page(server.url)
        page.click('[data-tab="migration"]')
        # Enabled once the collection is shown (read before, the current embedder is blank).
        page.wait_for_selector("#migration-start:enabled")
        original = page.locator("#current-embedder").inner_text()
        assert original == server.http.get("/v1/collections/mig").json()["embedder"]
        target = page.locator("#migration-embedder option").first.get_attribute("value")
        assert target and target != original
        page.click("#migration-start")
        status = '[data-testid="migration-status"] >> text=succeeded'
        page.wait_for_selector(status, timeout=120_000)
        wait_for_embedder(page, server, target, timeout=30_000)
        assert original in page.locator("#previous-embedder").inner_text()
        assert page.locator("#migration-progress").evaluate("p => p.value === p.max")

        page.click("#rollback")
        wait_for_embedder(page, server, original, timeout=120_000)
        assert server.http.get("/v1/collections/mig").json()["embedder"] == original
        # A job that has ended cannot be cancelled: the button is gone, and the API says why.
        assert page.locator("#migration-cancel").is_hidden()
        assert re.fullmatch(r"[0-9a-f-]+", page.locator("#migration-job-id").inner_text())
