"""Login, refresh, logout, emailed codes and password resets (all anonymous routes)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.accounts.schemas import SignedInOut
from docuchat_auth.sessions.schemas import (
    EmailCodeVerifyIn,
    EmailIn,
    LoginIn,
    PasswordResetIn,
    RefreshTokenIn,
)
from docuchat_auth.sessions.service import SessionService
from docuchat_auth.tokens.service import TokenService
from docuchat_common.service import DbSession, runtime_of

router = APIRouter(prefix="/api/v1", tags=["sessions"])


def session_service(request: Request, session: AsyncSession) -> SessionService:
    runtime = runtime_of(request)
    tokens: TokenService = runtime.state["tokens"]
    return SessionService(
        session,
        database=runtime.database,
        tokens=tokens,
        throttler=runtime.state["throttler"],
        mail=runtime.state["mail"],
        settings=tokens.settings,
    )


def client_ip(request: Request) -> str:
    # uvicorn runs with proxy_headers: behind the gateway this is the X-Forwarded-For client.
    return request.client.host if request.client else "unknown"


@router.post("/auth/login", response_model=SignedInOut)
async def login(body: LoginIn, request: Request, session: DbSession) -> SignedInOut:
    """Sign in with email and password. Repeated failures lock the account (and the client IP)
    for a while: 429 with Retry-After, even for the right password."""
    return await session_service(request, session).login(
        body.email, body.password, client_ip=client_ip(request)
    )


@router.post("/auth/refresh", response_model=SignedInOut)
async def refresh(body: RefreshTokenIn, request: Request, session: DbSession) -> SignedInOut:
    """A new pair for a refresh token, which then stops working. Presenting a spent token again
    ends every session descending from the same login (401 ``refresh_token_reused``)."""
    return await session_service(request, session).refresh(body.refresh_token)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshTokenIn, request: Request, session: DbSession) -> Response:
    await session_service(request, session).logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/email-code", status_code=status.HTTP_202_ACCEPTED)
async def send_email_code(body: EmailIn, request: Request, session: DbSession) -> Response:
    """Email a 6-digit sign-in code if the account exists; the answer never says."""
    await session_service(request, session).send_email_code(
        body.email, client_ip=client_ip(request)
    )
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/auth/email-code/verify", response_model=SignedInOut)
async def verify_email_code(
    body: EmailCodeVerifyIn, request: Request, session: DbSession
) -> SignedInOut:
    return await session_service(request, session).verify_email_code(
        body.email, body.code, client_ip=client_ip(request)
    )


@router.post("/auth/password/forgot", status_code=status.HTTP_202_ACCEPTED)
async def forgot_password(body: EmailIn, request: Request, session: DbSession) -> Response:
    """Email a password-reset link if the account exists; the answer never says."""
    await session_service(request, session).send_password_reset(
        body.email, client_ip=client_ip(request)
    )
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/auth/password/reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(body: PasswordResetIn, request: Request, session: DbSession) -> Response:
    """Set a new password with a reset (or invitation) token; every session of the user ends."""
    await session_service(request, session).reset_password(body.token, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
