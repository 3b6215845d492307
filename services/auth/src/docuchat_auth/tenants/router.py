from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.tenants.schemas import (
    InviteIn,
    MemberList,
    MemberOut,
    RolePatch,
    TenantOut,
    TenantPatch,
)
from docuchat_auth.tenants.service import TenantService
from docuchat_auth.tokens.service import TokenService
from docuchat_common.identity import CurrentIdentity, Identity, require
from docuchat_common.service import DbSession, runtime_of

router = APIRouter(prefix="/api/v1", tags=["tenant"])

# Managing the tenant needs the role and, for an API key, its admin scope.
Admin = Annotated[Identity, Depends(require(role="admin", scope="admin"))]
Owner = Annotated[Identity, Depends(require(role="owner", scope="admin"))]


def tenant_service(request: Request, session: AsyncSession) -> TenantService:
    runtime = runtime_of(request)
    tokens: TokenService = runtime.state["tokens"]
    return TenantService(
        session, outbox=runtime.outbox, mail=runtime.state["mail"], settings=tokens.settings
    )


@router.get("/tenant", response_model=TenantOut)
async def get_tenant(identity: CurrentIdentity, request: Request, session: DbSession) -> TenantOut:
    return await tenant_service(request, session).get(identity)


@router.patch("/tenant", response_model=TenantOut)
async def update_tenant(
    body: TenantPatch, identity: Admin, request: Request, session: DbSession
) -> TenantOut:
    return await tenant_service(request, session).update(identity, body)


@router.delete("/tenant", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tenant(identity: Owner, request: Request, session: DbSession) -> Response:
    """Delete the tenant and everything in it, in every service (owner only)."""
    await tenant_service(request, session).delete(identity)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tenant/members", response_model=MemberList)
async def list_members(
    identity: CurrentIdentity,
    request: Request,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> MemberList:
    return await tenant_service(request, session).members(identity, limit=limit, cursor=cursor)


@router.post("/tenant/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut)
async def invite_member(
    body: InviteIn, identity: Admin, request: Request, session: DbSession
) -> MemberOut:
    """Invite someone by email; they choose a password from the emailed link."""
    return await tenant_service(request, session).invite(identity, body)


@router.patch("/tenant/members/{user_id}", response_model=MemberOut)
async def change_member_role(
    user_id: uuid.UUID, body: RolePatch, identity: Admin, request: Request, session: DbSession
) -> MemberOut:
    return await tenant_service(request, session).change_role(identity, user_id, body.role)


@router.delete("/tenant/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    user_id: uuid.UUID, identity: CurrentIdentity, request: Request, session: DbSession
) -> Response:
    """Remove a member (admins), or leave the tenant (anyone, for their own id)."""
    await tenant_service(request, session).remove(identity, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
