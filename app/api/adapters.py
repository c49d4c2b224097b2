"""LoRA adapters: the registry (generation/llm/lora_adapters.py) over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.deps import ServicesDep
from app.openapi import error_responses
from app.schemas import AdapterCreate, AdapterList, AdapterOut
from generation.llm.lora_adapters import AdapterInfo

router = APIRouter(tags=["adapters"])


def adapter_out(info: AdapterInfo) -> AdapterOut:
    manifest = info.manifest
    return AdapterOut(
        name=info.name,
        base_model=info.base_model,
        source=info.source,
        loaded=info.loaded,
        data=list(manifest.get("trajectories") or []),
        training=dict(manifest.get("training") or {}),
        eval=dict(manifest.get("eval") or {}),
    )


@router.get("/v1/adapters")
async def list_adapters(services: ServicesDep) -> AdapterList:
    """The LoRA adapters a query can name in `adapter`: registered ones, the bundled ones for
    the served base model, and any the generator loaded itself, with their manifests' base
    model, training data, steps and eval scores."""
    return AdapterList(adapters=[adapter_out(a) for a in await services.adapters.listing()])


@router.post(
    "/admin/v1/adapters",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 409, 503),
)
async def register_adapter(body: AdapterCreate, services: ServicesDep) -> AdapterOut:
    """Register a LoRA adapter (an adapter folder from `rag train adapter`, a GGUF LoRA file,
    or, for vLLM, a PEFT folder on its host) and load it. An adapter trained for another base
    model is refused (409 adapter_base_mismatch). Registering a name again replaces it."""
    return adapter_out(await services.adapters.register(body.name, body.path))
