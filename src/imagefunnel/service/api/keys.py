"""``/v1/keys`` and ``/v1/webhooks``: a tenant's own API keys and webhook endpoints."""

from __future__ import annotations

import json
from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from imagefunnel.service.deps import RuntimeDep, TenantDep
from imagefunnel.service.errors import ApiError
from imagefunnel.service.webhooks import check_target, new_secret

__all__ = ["keys_router", "webhooks_router"]

keys_router = APIRouter(prefix="/v1/keys", tags=["keys"])
webhooks_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class KeyOut(BaseModel):
    id: str
    prefix: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class NewKeyIn(BaseModel):
    name: str = Field(default="", max_length=200)


class NewKeyOut(KeyOut):
    secret: str = Field(description="shown once: only its hash is stored")


class WebhookIn(BaseModel):
    url: str = Field(max_length=2000)
    events: list[str] = Field(default_factory=lambda: ["job.*", "evaluation.*"], min_length=1, max_length=50)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: datetime


class NewWebhookOut(WebhookOut):
    secret: str = Field(description="whsec_...: verify signatures with it; shown once")


@keys_router.get("", response_model=list[KeyOut])
def list_keys(tenant: TenantDep, runtime: RuntimeDep) -> list[KeyOut]:
    return [KeyOut.model_validate(k, from_attributes=True) for k in runtime.tenancy.keys(tenant.id)]


@keys_router.post("", status_code=201, response_model=NewKeyOut)
def create_key(body: NewKeyIn, tenant: TenantDep, runtime: RuntimeDep) -> NewKeyOut:
    created = runtime.tenancy.create_key(tenant.name, name=body.name)
    row = next(k for k in runtime.tenancy.keys(tenant.id) if k.id == created.key_id)
    return NewKeyOut(**KeyOut.model_validate(row, from_attributes=True).model_dump(), secret=created.secret)


@keys_router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, tenant: TenantDep, runtime: RuntimeDep) -> Response:
    if not runtime.tenancy.revoke(tenant.id, key_id):
        raise ApiError(404, "not_found", f"no key {key_id!r}")
    return Response(status_code=204)


@webhooks_router.post("", status_code=201, response_model=NewWebhookOut)
def create_webhook(body: WebhookIn, tenant: TenantDep, runtime: RuntimeDep) -> NewWebhookOut:
    why = check_target(body.url, allow_private=runtime.settings.private_webhooks_allowed)
    if why is not None:
        raise ApiError(422, "invalid_webhook_url", why)
    row = runtime.webhooks.add_endpoint(tenant.id, url=body.url, secret=new_secret(), events=body.events)
    return NewWebhookOut(
        id=row.id, url=row.url, events=body.events, created_at=row.created_at, secret=row.secret
    )


@webhooks_router.get("", response_model=list[WebhookOut])
def list_webhooks(tenant: TenantDep, runtime: RuntimeDep) -> list[WebhookOut]:
    return [
        WebhookOut(id=w.id, url=w.url, events=json.loads(w.events), created_at=w.created_at)
        for w in runtime.webhooks.endpoints(tenant.id)
    ]


@webhooks_router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, tenant: TenantDep, runtime: RuntimeDep) -> Response:
    if not runtime.webhooks.disable(tenant.id, webhook_id):
        raise ApiError(404, "not_found", f"no webhook {webhook_id!r}")
    return Response(status_code=204)
