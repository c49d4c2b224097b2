"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.deps import ServicesDep
from app.schemas import Health, Readiness
from app.services import Services

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """200 when every dependency is usable, else 503 with the failing checks."""
    checks: dict[str, str] = {}
    checks["database"] = await asyncio.to_thread(_database_check, services)
    checks["broker"] = await asyncio.to_thread(services.queue.check)
    checks["cache"] = await asyncio.to_thread(services.cache.check)
    checks["generator"] = await services.generator.check()
    loaded = services.indexes.loaded()
    checks["index"] = f"ok ({sum(loaded.values())} vectors in {len(loaded)} indexes)"
    ok = all(v.startswith(("ok", "embedded")) for v in checks.values())
    body = Readiness(
        status="ok" if ok else "degraded", checks=checks, model=services.generator.model
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


def _database_check(services: Services) -> str:
    try:
        with services.db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        return "down"
    return "ok"
