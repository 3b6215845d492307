"""Auth: tenants, users, roles, tokens, API keys and the gateway's forward-auth."""

from __future__ import annotations

from pathlib import Path

from docuchat_auth.accounts.router import router as accounts_router
from docuchat_auth.api_keys.resolver import ApiKeyResolver
from docuchat_auth.api_keys.router import router as api_keys_router
from docuchat_auth.mail import FileMailSender, MailSender, SmtpMailSender
from docuchat_auth.models import metadata
from docuchat_auth.sessions.router import router as sessions_router
from docuchat_auth.settings import AuthSettings
from docuchat_auth.tenants import consumers as tenant_consumers
from docuchat_auth.tenants.router import router as tenants_router
from docuchat_auth.throttling import Throttler
from docuchat_auth.tokens.holders import TokenHolders
from docuchat_auth.tokens.keys import KeyRing
from docuchat_auth.tokens.router import router as tokens_router
from docuchat_auth.tokens.service import TokenService
from docuchat_common.events.catalog import TenantCreated, TenantDeleted, UserCreated, UserDeleted
from docuchat_common.identity import JWKSCache, TokenVerifier
from docuchat_common.service import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def mail_sender(settings: AuthSettings) -> MailSender:
    if settings.smtp_host:
        return SmtpMailSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        )
    if not settings.is_dev and settings.environment != "test":
        raise ValueError("DOCUCHAT_AUTH_SMTP_HOST is required outside dev: mail would go nowhere")
    return FileMailSender(settings.mail_file)


def build_runtime(settings: AuthSettings | None = None) -> ServiceRuntime:
    settings = settings or AuthSettings()
    runtime = ServiceRuntime(
        name="auth",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[accounts_router, sessions_router, tenants_router, api_keys_router, tokens_router],
        publishes=[TenantCreated, TenantDeleted, UserCreated, UserDeleted],
    )
    keys = KeyRing.from_settings(settings)
    tenant_consumers.register(runtime)
    runtime.state["keys"] = keys
    runtime.state["tokens"] = TokenService(keys, settings)
    runtime.state["mail"] = mail_sender(settings)
    runtime.state["api_key_resolver"] = ApiKeyResolver(cache_seconds=settings.api_key_cache_seconds)
    runtime.state["token_holders"] = TokenHolders(cache_seconds=settings.api_key_cache_seconds)
    runtime.state["throttler"] = Throttler(
        runtime.database,
        window_seconds=settings.failure_window_seconds,
        lockout_seconds=settings.lockout_seconds,
    )
    runtime.token_verifier = TokenVerifier(
        # Auth verifies its own tokens from its key ring, not over HTTP.
        JWKSCache.static({k.kid: k.private_key.public_key() for k in keys.keys}),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return runtime
