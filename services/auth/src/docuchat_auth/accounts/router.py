from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.accounts.schemas import (
    PasswordChange,
    ProfilePatch,
    RegisterIn,
    SignedInOut,
    UserOut,
)
from docuchat_auth.accounts.service import AccountService
from docuchat_auth.tokens.service import TokenService
from docuchat_common.identity import CurrentIdentity
from docuchat_common.service import DbSession, runtime_of

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def account_service(request: Request, session: AsyncSession) -> AccountService:
    runtime = runtime_of(request)
    tokens: TokenService = runtime.state["tokens"]
    return AccountService(session, outbox=runtime.outbox, tokens=tokens, settings=tokens.settings)


@router.post("/auth/register", status_code=status.HTTP_201_CREATED, response_model=SignedInOut)
async def register(body: RegisterIn, request: Request, session: DbSession) -> SignedInOut:
    """Create a tenant and its owner; returns the owner's tokens."""
    return await account_service(request, session).register(body)


@router.get("/users/me", response_model=UserOut)
async def me(identity: CurrentIdentity, request: Request, session: DbSession) -> UserOut:
    return await account_service(request, session).profile(identity)


@router.patch("/users/me", response_model=UserOut)
async def update_me(
    body: ProfilePatch, identity: CurrentIdentity, request: Request, session: DbSession
) -> UserOut:
    return await account_service(request, session).update_profile(identity, body)


@router.delete("/users/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_me(identity: CurrentIdentity, request: Request, session: DbSession) -> Response:
    """Delete the account; other services purge the user's data on user.deleted."""
    await account_service(request, session).delete_account(identity)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/users/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChange, identity: CurrentIdentity, request: Request, session: DbSession
) -> Response:
    """Change the password; the user's other sessions are signed out."""
    await account_service(request, session).change_password(identity, body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
