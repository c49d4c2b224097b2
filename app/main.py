"""The FastAPI application: create_app() and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import (
    adapters,
    collections,
    documents,
    health,
    identity,
    jobs,
    metrics,
    openai_compat,
    query,
    search,
    ui,
)
from app.api import embedders as embedders_api
from app.auth import AuthGuard, AuthMiddleware
from app.body_limit import BodyLimitMiddleware
from app.errors import install_error_handlers
from app.middleware import RequestContextMiddleware
from app.openapi import install_docs
from app.services import Services
from core.settings import Settings, get_settings
from generation.llm.generator import Generator
from retrieval.embedders import EmbedderPool

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
Retrieval-augmented generation with self-reasoning: upload documents to a collection, search
them, and ask questions answered with verbatim, verified citations.

Authentication: `Authorization: Bearer <key>` once any key exists (`rag keys create`); the
Authorize button above takes one. `/admin/...` routes need an admin key.

Every error has the body `{"error": {"code": "<machine_code>", "message": "<sentence>"}}`,
except under `/openai/v1`: an OpenAI-compatible surface (collections as models, chat
completions) whose errors take OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
"""


def create_app(
    settings: Settings | None = None,
    embedders: EmbedderPool | None = None,
    generator: Generator | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.start(settings, embedders, generator)
        app.state.services = services
        app.state.auth = AuthGuard.start(settings, services.db)
        if settings.embedded_worker:
            log.info("embedded mode: ingestion runs on an in-process worker thread")
        try:
            yield
        finally:
            app.state.auth.close()
            await services.aclose()

    app = FastAPI(
        title="RAG service with self-reasoning",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # Served by app/openapi.py from local assets instead of a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    # Every path but /healthz needs a key once keys exist (app/auth.py).
    app.add_middleware(AuthMiddleware)
    # Runs before auth: an oversized body is refused before anything reads it.
    app.add_middleware(BodyLimitMiddleware)
    # Outermost (added last): 413, 401 and 429 responses carry the request id too.
    app.add_middleware(RequestContextMiddleware)
    for module in (health, collections, documents, jobs, search, query, adapters, embedders_api):
        app.include_router(module.router)
    app.include_router(metrics.router)
    app.include_router(identity.router)
    app.include_router(openai_compat.router)
    app.include_router(ui.router)
    return app
