"""RS256 signing keys and the JWKS.

Several keys may be loaded; the newest signs, all are published, so rotation is: add a key,
wait out the token lifetime and the JWKS cache, remove the old one. Dev and tests generate a key
on first start; production must provide them (``DOCUCHAT_AUTH_SIGNING_KEYS_PEM``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from docuchat_auth.settings import AuthSettings

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?:RSA )?PRIVATE KEY-----.+?-----END (?:RSA )?PRIVATE KEY-----", re.S
)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key())
        )
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return jwk


def _kid(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")


def _load_pem(pem: str) -> SigningKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("signing keys must be RSA")
    return SigningKey(_kid(key), key)


def _generate(keys_dir: Path) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Zero-padded nanoseconds: file names sort in creation order, and the newest signs.
    path = keys_dir / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


class KeyRing:
    def __init__(self, keys: list[SigningKey], *, issuer: str) -> None:
        if not keys:
            raise ValueError("no signing keys")
        self.keys = keys
        self.issuer = issuer

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyRing:
        if settings.signing_keys_pem is not None:
            pems = _PEM_BLOCK.findall(settings.signing_keys_pem.get_secret_value())
            keys = [_load_pem(p) for p in pems]
        else:
            if not settings.is_dev and settings.environment != "test":
                raise ValueError(
                    "DOCUCHAT_AUTH_SIGNING_KEYS_PEM is required outside dev: "
                    "generated keys would differ per replica and vanish with the pod"
                )
            if not list(settings.keys_dir.glob("*.pem")):
                _generate(settings.keys_dir)
            keys = [_load_pem(p.read_text()) for p in sorted(settings.keys_dir.glob("*.pem"))]
        return cls(keys, issuer=settings.jwt_issuer)

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def sign(self, claims: dict[str, Any], *, audience: str, ttl_seconds: int) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(
            payload, self.active.private_key, algorithm="RS256", headers={"kid": self.active.kid}
        )
