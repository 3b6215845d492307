"""Forged and broken tokens are refused; keys rotate without a restart."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from docuchat_auth.app import build_runtime
from docuchat_auth.settings import AuthSettings
from docuchat_auth.tokens.keys import KeyRing, _generate
from docuchat_common.errors import Unauthorized
from docuchat_common.identity import INTERNAL_AUDIENCE, JWKSCache, TokenVerifier

ISSUER, AUDIENCE = "docuchat-auth", "docuchat"


def _claims(**extra: Any) -> dict[str, Any]:
    return {
        "sub": str(uuid.uuid4()),
        "tid": str(uuid.uuid4()),
        "role": "member",
        "scopes": ["read"],
        **extra,
    }


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    return KeyRing.from_settings(AuthSettings(environment="test", keys_dir=tmp_path / "keys"))


@pytest.fixture
def verifier(keys: KeyRing) -> TokenVerifier:
    jwks = JWKSCache.static({k.kid: k.private_key.public_key() for k in keys.keys})
    return TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)


async def test_a_valid_token_gives_the_identity(keys: KeyRing, verifier: TokenVerifier) -> None:
    claims = _claims(role="admin")
    identity = await verifier.identity(keys.sign(claims, audience=AUDIENCE, ttl_seconds=60))
    assert str(identity.user_id) == claims["sub"] and str(identity.tenant_id) == claims["tid"]
    assert identity.role == "admin" and identity.scopes == {"read"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _forgeries(keys: KeyRing) -> dict[str, str]:
    now = int(time.time())
    good = keys.sign(_claims(), audience=AUDIENCE, ttl_seconds=60)
    header, payload, signature = good.split(".")
    public_pem = keys.active.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    base = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60, **_claims()}
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["role"] = "owner"
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': keys.active.kid})}.{_b64(base)}.",
        "HS256 keyed with the public key": (
            f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': keys.active.kid})}.{_b64(base)}."
            + base64.urlsafe_b64encode(
                __import__("hmac")
                .new(public_pem, f"{_b64({'alg': 'HS256'})}.{_b64(base)}".encode(), "sha256")
                .digest()
            )
            .decode()
            .rstrip("=")
        ),
        "expired": keys.sign(_claims(), audience=AUDIENCE, ttl_seconds=-120),
        "wrong audience": keys.sign(_claims(), audience="someone-else", ttl_seconds=60),
        "internal audience used as access token": keys.sign(
            _claims(), audience=INTERNAL_AUDIENCE, ttl_seconds=60
        ),
        "wrong issuer": jwt.encode(
            {**base, "iss": "evil"},
            keys.active.private_key,
            "RS256",
            headers={"kid": keys.active.kid},
        ),
        "unknown kid": jwt.encode(base, keys.active.private_key, "RS256", headers={"kid": "nope"}),
        "tampered payload": f"{header}.{_b64(tampered)}.{signature}",
        "signed by another key": jwt.encode(
            base, other_key, "RS256", headers={"kid": keys.active.kid}
        ),
        "garbage": "not-a-token",
        "no identity claims": keys.sign({"sub": "x"}, audience=AUDIENCE, ttl_seconds=60),
    }


async def test_forged_and_broken_tokens_are_refused(keys: KeyRing, verifier: TokenVerifier) -> None:
    for name, token in _forgeries(keys).items():
        with pytest.raises(Unauthorized):
            await verifier.identity(token)
        print("refused:", name)


async def test_keys_rotate_without_a_restart(tmp_path: Path) -> None:
    """A token signed by a newly added key is accepted after one JWKS refetch."""
    settings = AuthSettings(environment="test", keys_dir=tmp_path / "keys")
    runtime = build_runtime(settings)
    transport = httpx.ASGITransport(app=runtime.create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://auth") as client:
        cache = JWKSCache(
            "http://auth/.well-known/jwks.json", min_refetch_interval=0, client=client
        )
        verifier = TokenVerifier(cache, issuer=ISSUER, audience=AUDIENCE)
        old = KeyRing.from_settings(settings)
        assert await verifier.identity(old.sign(_claims(), audience=AUDIENCE, ttl_seconds=60))

        _generate(settings.keys_dir)  # rotation: a new key, newest signs, both published
        rotated_runtime = build_runtime(settings)
        transport.app = rotated_runtime.create_app()
        new = KeyRing.from_settings(settings)
        assert new.active.kid != old.active.kid
        assert len((await client.get("/.well-known/jwks.json")).json()["keys"]) == 2
        assert await verifier.identity(new.sign(_claims(), audience=AUDIENCE, ttl_seconds=60))
        assert await verifier.identity(old.sign(_claims(), audience=AUDIENCE, ttl_seconds=60))


async def test_a_remembered_token_still_ends_at_its_expiry_and_keeps_its_audience(
    keys: KeyRing,
) -> None:
    jwks = JWKSCache.static({k.kid: k.private_key.public_key() for k in keys.keys})
    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0)
    token = keys.sign(_claims(), audience=AUDIENCE, ttl_seconds=1)
    first = await verifier.identity(token)
    assert await verifier.identity(token) == first  # remembered: same identity
    with pytest.raises(Unauthorized):  # a token verified for one audience is not for another
        await verifier.identity(token, audience=INTERNAL_AUDIENCE)

    expiry = jwt.decode(token, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, expiry - time.time()) + 0.05)  # the token's time runs out
    with pytest.raises(Unauthorized) as refused:
        await verifier.identity(token)
    assert refused.value.code == "token_expired"
