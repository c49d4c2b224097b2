"""LoRA adapters served by the generator."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.deps import ServicesDep
from app.schemas import AdapterCreate, AdapterList, AdapterOut

router = APIRouter(tags=["adapters"])


@router.get("/v1/adapters")
async def list_adapters(services: ServicesDep) -> AdapterList:
    """The LoRA adapters the generator serves (a query names one in `adapter`)."""
    adapters = await services.generator.adapters()
    return AdapterList(
        adapters=[AdapterOut(name=a.name, base_model=a.base_model) for a in adapters]
    )


@router.post("/admin/v1/adapters", status_code=status.HTTP_201_CREATED)
async def register_adapter(body: AdapterCreate, services: ServicesDep) -> AdapterOut:
    """Register a LoRA adapter with the generator at run time."""
    adapter = await services.generator.register_adapter(body.name, body.path)
    return AdapterOut(name=adapter.name, base_model=adapter.base_model)
