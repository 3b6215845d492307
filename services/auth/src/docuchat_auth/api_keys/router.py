"""A tenant's API keys: owners and admins manage them; a key may manage keys only with the
``admin`` scope."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from docuchat_auth.api_keys.repository import ApiKeyRepository
from docuchat_auth.api_keys.resolver import api_key_resolver
from docuchat_auth.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from docuchat_auth.api_keys.service import ApiKeyService
from docuchat_common.identity import Identity, require_role, require_scope
from docuchat_common.service import DbSession, Runtime

# The scope check runs first so that a key without ``admin`` is told what it lacks
# (insufficient_scope) rather than the role that scope would have given it.
router = APIRouter(
    prefix="/api/v1/api-keys",
    tags=["api_keys"],
    dependencies=[Depends(require_scope("admin"))],
)

KeyManager = Annotated[Identity, Depends(require_role("admin"))]


@router.get("", response_model=ApiKeyList)
async def list_api_keys(
    identity: KeyManager,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> ApiKeyList:
    """The tenant's keys, newest first, revoked ones included; never the secret."""
    service = ApiKeyService(ApiKeyRepository(session))
    return await service.list(identity.tenant_id, limit=limit, cursor=cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, identity: KeyManager, session: DbSession
) -> ApiKeyCreated:
    """Create a key; the answer is the only time its secret ``key`` is shown."""
    return await ApiKeyService(ApiKeyRepository(session)).create(identity, body)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(
    key_id: uuid.UUID, identity: KeyManager, session: DbSession, runtime: Runtime
) -> Response:
    """Revoke a key: this replica refuses it at once, every replica within seconds."""
    await ApiKeyService(ApiKeyRepository(session)).revoke(identity.tenant_id, key_id)
    api_key_resolver(runtime).forget(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
