"""Who is calling: lets a client (the web interface) show only what the key may do."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.schemas import Identity
from core.models import ApiKeyRole

router = APIRouter(tags=["auth"])


@router.get("/v1/me")
def whoami(request: Request) -> Identity:
    """The calling key's role; with no keys configured everything is open (admin)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return Identity(role=ApiKeyRole.ADMIN, keys_required=False, key_id=None)
    return Identity(role=principal.role, keys_required=True, key_id=principal.key_id)
