"""Password hashing (argon2id via argon2-cffi) and the password policy."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from docuchat_common.errors import Unprocessable

# argon2-cffi's defaults are RFC 9106's "low memory" profile: argon2id, t=3, m=64 MiB, p=4.
_hasher = PasswordHasher()

# The most common passwords of public breach corpora that pass a length check.
_COMMON = frozenset(
    {
        "password123",
        "password1234",
        "123456789012",
        "1234567890",
        "qwertyuiop",
        "iloveyou123",
        "qwerty123456",
        "passw0rd123",
        "administrator",
        "letmein1234",
        "welcome12345",
        "abc123456789",
        "password!123",
        "1q2w3e4r5t6y",
        "qwertyuiop123",
        "1234567890ab",
        "trustno1234",
        "football1234",
        "baseball1234",
        "sunshine1234",
    }
)


def check_policy(password: str, *, min_length: int, email: str) -> None:
    if len(password) < min_length:
        raise Unprocessable(
            f"password must be at least {min_length} characters", code="weak_password"
        )
    lowered = password.lower()
    if lowered in _COMMON or len(set(password)) < 4:
        raise Unprocessable("password is too common", code="weak_password")
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in lowered:
        raise Unprocessable("password must not contain the email address", code="weak_password")


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow (tens of ms): keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
