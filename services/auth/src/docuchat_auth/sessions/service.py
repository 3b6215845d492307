"""Signing in and out: passwords, refresh-token rotation, emailed codes and password resets.

Services flush; the request commits. Two writes must survive a 401 that rolls the request back,
so they run in their own transaction: the attempt counted against an email code, and a refresh
(a reused token revokes its family *and* answers 401). Brute-force counters are the throttler's,
which does the same for its own rows.

What an anonymous caller learns must not depend on whether an email has an account: the same
answers, and the same argon2 work on both paths (a decoy hash stands in for a missing one).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.accounts import passwords
from docuchat_auth.accounts.repository import AccountRepository
from docuchat_auth.accounts.schemas import SignedInOut
from docuchat_auth.accounts.service import normalise_email, signed_in_out
from docuchat_auth.mail import Mail, MailSender
from docuchat_auth.models import User
from docuchat_auth.sessions.repository import OneTimeSecretRepository
from docuchat_auth.settings import AuthSettings
from docuchat_auth.throttling import Limit, Throttler
from docuchat_auth.tokens.repository import RefreshTokenRepository
from docuchat_auth.tokens.service import TokenService, hash_refresh_token
from docuchat_common.db import Database
from docuchat_common.errors import BadRequest, Unauthorized

# OneTimeSecret.purpose values. Invitations (tenants slice) are completed by a password reset.
EMAIL_CODE = "email_code"
PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose name, not a secret
INVITE = "invite"

EMAIL_CODE_DIGITS = 6
RESET_TOKEN_BYTES = 32

_decoy: dict[str, str] = {}


async def _decoy_password_hash() -> str:
    """An argon2 hash of a random password, made once per process: checking a guess against it
    costs what a real check costs, and nothing matches it."""
    if "hash" not in _decoy:
        _decoy["hash"] = await passwords.hash_password(secrets.token_urlsafe(16))
    return _decoy["hash"]


def hash_one_time_token(token: str) -> str:
    """Reset and invite tokens carry 256 random bits: SHA-256 suffices (nothing to brute-force)
    and lets the token itself be the lookup key."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_email_code() -> str:
    return f"{secrets.randbelow(10**EMAIL_CODE_DIGITS):0{EMAIL_CODE_DIGITS}d}"


class SessionService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        database: Database,
        tokens: TokenService,
        throttler: Throttler,
        mail: MailSender,
        settings: AuthSettings,
    ) -> None:
        self.session = session
        self.database = database
        self.accounts = AccountRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.secrets = OneTimeSecretRepository(session)
        self.tokens = tokens
        self.throttler = throttler
        self.mail = mail
        self.settings = settings

    def _account_limit(self, action: str, email: str) -> Limit:
        return Limit(f"{action}:account:{email}", self.settings.max_failures_per_account)

    def _ip_limit(self, action: str, client_ip: str) -> Limit:
        return Limit(f"{action}:ip:{client_ip}", self.settings.max_failures_per_ip)

    async def _sign_in(self, user: User) -> SignedInOut:
        user.last_login_at = datetime.now(UTC)
        pair = await self.tokens.issue_pair(user, self.refresh_tokens)
        return signed_in_out(pair, user, await self.accounts.tenant_of(user))

    # Password login

    async def login(self, email: str, password: str, *, client_ip: str) -> SignedInOut:
        email = normalise_email(email)
        account_limit = self._account_limit("login", email)
        ip_limit = self._ip_limit("login", client_ip)
        # While locked even the right password is refused: otherwise the lock would just tell
        # an attacker which guess was right.
        await self.throttler.attempt(account_limit, ip_limit)
        user = await self.accounts.user_by_email(email)
        # Unknown and passwordless (invited) accounts are checked against the decoy.
        password_hash = user.password_hash if user is not None else None
        valid = await passwords.verify_password(
            password_hash or await _decoy_password_hash(), password
        )
        if user is None or password_hash is None or not valid:
            raise Unauthorized("the email or the password is wrong", code="invalid_credentials")
        # The account starts over; the IP only gets this attempt back: one good login must not
        # erase what the IP tried on other accounts.
        await self.throttler.succeed(account_limit, refund=(ip_limit,))
        return await self._sign_in(user)

    # Refresh tokens

    async def refresh(self, refresh_token: str) -> SignedInOut:
        """Rotate: the token is spent and a new one joins its family. A spent token coming back
        means a copy exists; the whole family ends, the newest token included."""
        # Its own transaction, committed even when answering 401 for a reuse. (Revoking from a
        # second transaction while the request's holds the token's row lock would wait forever.)
        async with self.database.transaction() as session:
            refresh_tokens = RefreshTokenRepository(session)
            token = await refresh_tokens.get_for_update(hash_refresh_token(refresh_token))
            if (
                token is None
                or token.revoked_at is not None
                or token.expires_at <= datetime.now(UTC)
            ):
                raise Unauthorized(
                    "the refresh token is invalid, expired or revoked",
                    code="invalid_refresh_token",
                )
            if token.used_at is None:
                await refresh_tokens.mark_used(token)
                accounts = AccountRepository(session)
                user = await accounts.user_by_id(token.user_id)
                if user is None:
                    raise Unauthorized("the account no longer exists", code="invalid_refresh_token")
                pair = await self.tokens.issue_pair(user, refresh_tokens, family_id=token.family_id)
                return signed_in_out(pair, user, await accounts.tenant_of(user))
            await refresh_tokens.revoke_family(token.family_id)
        raise Unauthorized(
            "the refresh token was already used; every session it started has ended",
            code="refresh_token_reused",
        )

    async def logout(self, refresh_token: str) -> None:
        """End the token's session (its family). An unknown token is already logged out."""
        token = await self.refresh_tokens.get_for_update(hash_refresh_token(refresh_token))
        if token is not None:
            await self.refresh_tokens.revoke_family(token.family_id)

    # Emailed login codes

    async def _limit_mail(self, email: str, client_ip: str) -> None:
        """Mail on request is limited per address and per IP, whether or not the address has
        an account (so the 429 tells nothing): nobody can flood an inbox through us."""
        await self.throttler.attempt(
            Limit(f"mail:account:{email}", self.settings.max_mails_per_account),
            Limit(f"mail:ip:{client_ip}", self.settings.max_failures_per_ip),
        )

    async def send_email_code(self, email: str, *, client_ip: str) -> None:
        email = normalise_email(email)
        await self._limit_mail(email, client_ip)
        code = new_email_code()
        # argon2, not HMAC: a million possible codes are cheap to try against a fast hash, and
        # there is no server secret to key an HMAC with. Hashed before the lookup so unknown
        # emails cost the same.
        code_hash = await passwords.hash_password(code)
        user = await self.accounts.user_by_email(email)
        if user is None:
            return
        ttl = self.settings.email_code_ttl_seconds
        await self.secrets.replace(
            purpose=EMAIL_CODE,
            subject=email,
            user_id=user.id,
            secret_hash=code_hash,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        )
        await self.mail.send(
            Mail(
                to=email,
                subject="Your DocuChat sign-in code",  # not the code: subjects are logged
                text=(
                    f"Your DocuChat sign-in code is {code}.\n\n"
                    f"It works once, within {ttl // 60} minutes. "
                    "If you did not ask for it, ignore this email.\n"
                ),
                kind=EMAIL_CODE,
            )
        )

    async def verify_email_code(self, email: str, code: str, *, client_ip: str) -> SignedInOut:
        email = normalise_email(email)
        account_limit = self._account_limit("code", email)
        ip_limit = self._ip_limit("code", client_ip)
        await self.throttler.attempt(account_limit, ip_limit)
        # Each code allows a few attempts; the attempt is counted before checking and in its own
        # transaction, so neither the 401's rollback nor concurrent guesses get around the limit.
        async with self.database.transaction() as session:
            secret = await OneTimeSecretRepository(session).claim_attempt(
                purpose=EMAIL_CODE,
                subject=email,
                max_attempts=self.settings.email_code_max_attempts,
            )
        valid = await passwords.verify_password(
            secret.secret_hash if secret is not None else await _decoy_password_hash(), code
        )
        user = (
            await self.accounts.user_by_id(secret.user_id)
            if secret is not None and secret.user_id is not None and valid
            else None
        )
        if secret is None or user is None or not await self.secrets.consume(secret.id):
            raise Unauthorized("the code is wrong, used or expired", code="invalid_code")
        await self.throttler.succeed(account_limit, refund=(ip_limit,))
        return await self._sign_in(user)

    # Password reset (and accepting an invitation, which sets the first password)

    async def send_password_reset(self, email: str, *, client_ip: str) -> None:
        email = normalise_email(email)
        await self._limit_mail(email, client_ip)
        token = secrets.token_urlsafe(RESET_TOKEN_BYTES)
        token_hash = hash_one_time_token(token)
        user = await self.accounts.user_by_email(email)
        # Unknown emails skip a row and a mail. The answer is the same; the timing differs by a
        # mail send (a known limit with SMTP: sending after commit, from a queue, would close it).
        if user is None:
            return
        ttl = self.settings.password_reset_ttl_seconds
        await self.secrets.replace(
            purpose=PASSWORD_RESET,
            subject=email,
            user_id=user.id,
            secret_hash=token_hash,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        )
        link = f"{self.settings.public_url.rstrip('/')}/reset-password?token={token}"
        await self.mail.send(
            Mail(
                to=email,
                subject="Reset your DocuChat password",
                text=(
                    f"Choose a new password: {link}\n"
                    f"(or POST /api/v1/auth/password/reset with this token: {token})\n\n"
                    f"The link works once, within {ttl // 60} minutes. "
                    "If you did not ask for it, ignore this email: your password is unchanged.\n"
                ),
                kind=PASSWORD_RESET,
            )
        )

    async def reset_password(self, token: str, new_password: str) -> None:
        secret = await self.secrets.live_by_hash_for_update(
            purposes=(PASSWORD_RESET, INVITE), secret_hash=hash_one_time_token(token)
        )
        user = (
            await self.accounts.user_by_id(secret.user_id)
            if secret is not None and secret.user_id is not None
            else None
        )
        if secret is None or user is None:
            raise BadRequest(
                "the reset link is invalid, used or expired; ask for a new one",
                code="invalid_reset_token",
            )
        # A weak password leaves the token unused (the request rolls back): the user retries.
        passwords.check_policy(
            new_password, min_length=self.settings.password_min_length, email=user.email
        )
        user.password_hash = await passwords.hash_password(new_password)
        user.password_changed_at = datetime.now(UTC)
        await self.secrets.consume(secret.id)
        # Whoever knew the old password may hold a session: every one of them ends.
        await self.refresh_tokens.revoke_user(user.id)
        # Control of the mailbox is proven: a login lockout on the account is lifted.
        await self.throttler.succeed(self._account_limit("login", user.email))
