"""Tenants' LLM API keys at rest: MultiFernet over the configured keys (rotatable)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError:
        # A passphrase rather than a Fernet key: derive the 32 bytes Fernet wants from it.
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


class KeyVault:
    """Encrypts with the first key, decrypts with any: put a new key first to rotate."""

    def __init__(self, keys: SecretStr) -> None:
        parts = [k.strip() for k in keys.get_secret_value().split(",") if k.strip()]
        if not parts:
            raise ValueError("no LLM key encryption key configured")
        fernets = [_fernet(k) for k in parts]
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("the stored LLM API key cannot be decrypted with any key") from exc

    def is_current(self, token: str) -> bool:
        """Encrypted with the first key (nothing to rotate)."""
        try:
            self._primary.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """The same secret encrypted with the current first key."""
        return self._fernet.rotate(token.encode()).decode()


def mask(secret: str) -> str:
    """``sk-...abcd``: the key's prefix and last four characters."""
    prefix = secret.split("-", 1)[0] + "-" if "-" in secret[:8] else ""
    return f"{prefix}...{secret[-4:]}" if len(secret) > 8 else "..."
