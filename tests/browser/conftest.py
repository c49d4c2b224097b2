"""Browser tests of the web interface: a real uvicorn server in this process, driven through
Playwright by Debian's Chromium (/usr/bin/chromium; nothing is downloaded at run time)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from core.settings import Settings
from generation.llm.generator import Generator
from retrieval.embedders import EmbedderPool
from tests.integration.isolated import ServerThread

CHROMIUM = Path(os.environ.get("RAG_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
# Screenshots land here (git-ignored) as well as in the test's tmp dir.
TEST_OUTPUT = REPO / "test-output"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the session; each test opens its own context (its own sessionStorage)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium` (scripts/test.sh does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (the `test` extra)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class UiServer:
    """The app served on a free 127.0.0.1 port, with an HTTP client for setting things up."""

    def __init__(self, thread: ServerThread, admin_key: str | None = None) -> None:
        self.thread = thread
        self.url = thread.url
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def create_collection(self, name: str) -> None:
        response = self.http.post("/admin/v1/collections", json={"name": name})
        assert response.status_code == 201, response.text

    def ingest(self, collection: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        response = self.http.post(
            f"/admin/v1/collections/{collection}/documents",
            files=[("files", (name, data)) for name, data in files],
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.http.get(f"/admin/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                assert job["status"] == "succeeded", job
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
def serve(
    embedders: EmbedderPool, tmp_path: Path
) -> Iterator[Callable[..., AbstractContextManager[UiServer]]]:
    """serve(generator, settings=None, admin_key=None, pool=None): the embedded default (SQLite,
    in-process ingestion) under a real uvicorn server, closed when the block ends; `pool`
    stands in for the session's embedders."""

    @contextmanager
    def run(
        generator: Generator,
        settings: Settings | None = None,
        admin_key: str | None = None,
        pool: EmbedderPool | None = None,
    ) -> Iterator[UiServer]:
        app = create_app(
            settings or Settings(data_dir=tmp_path / "data"), pool or embedders, generator
        )
        thread = ServerThread(app)
        server = UiServer(thread, admin_key)
        try:
            yield server
        finally:
            server.http.close()
            thread.close()

    yield run


def _print_refusal(response: Any) -> None:
    # Tests provoke some 4xx on purpose; printed all the same, they cost nothing unless one fails.
    if response.status >= 400:
        print(f"{response.status} from {response.request.method} {response.url}")


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[str], Any]]:
    """open_page(url): a page in a fresh browser context. Every request the page makes is
    recorded; at the end, all of them must have gone to the server under test (no third-party
    requests), and the page must have raised no uncaught script error."""
    contexts: list[Any] = []
    requests: list[str] = []
    errors: list[str] = []
    origins: list[str] = []

    def open_(url: str) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Printed, so that a failed test's captured output says which call went wrong (a rare
        # wait never ends: a page not updated after a job or a streamed answer).
        page.on("requestfailed", lambda r: print(f"failed: {r.method} {r.url}: {r.failure}"))
        page.on("response", _print_refusal)
        page.on("console", lambda m: m.type == "error" and print(f"console error: {m.text}"))
        origins.append(url.rstrip("/") + "/")
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()
    foreign = [u for u in requests if not any(u.startswith(o) for o in origins)]
    assert not foreign, f"requests outside the service: {foreign}"
    assert not errors, f"uncaught errors in the page: {errors}"
