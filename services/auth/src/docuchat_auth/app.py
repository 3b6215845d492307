"""Auth: tenants, users, roles, tokens, API keys and the gateway's forward-auth."""

from __future__ import annotations

from pathlib import Path

from docuchat_auth.accounts.router import router as accounts_router
from docuchat_auth.models import metadata
from docuchat_auth.settings import AuthSettings
from docuchat_auth.tokens.keys import KeyRing
from docuchat_auth.tokens.router import router as tokens_router
from docuchat_auth.tokens.service import TokenService
from docuchat_common.events.catalog import TenantCreated, TenantDeleted, UserCreated, UserDeleted
from docuchat_common.identity import JWKSCache, TokenVerifier
from docuchat_common.service import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: AuthSettings | None = None) -> ServiceRuntime:
    settings = settings or AuthSettings()
    runtime = ServiceRuntime(
        name="auth",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[accounts_router, tokens_router],
        publishes=[TenantCreated, TenantDeleted, UserCreated, UserDeleted],
    )
    keys = KeyRing.from_settings(settings)
    runtime.state["keys"] = keys
    runtime.state["tokens"] = TokenService(keys, settings)
    runtime.token_verifier = TokenVerifier(
        # Auth verifies its own tokens from its key ring, not over HTTP.
        JWKSCache.static({k.kid: k.private_key.public_key() for k in keys.keys}),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return runtime
