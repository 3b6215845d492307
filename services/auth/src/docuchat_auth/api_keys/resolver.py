"""Turning an API key presented at the gateway into an identity, with a short in-memory cache.

The forward-auth runs for every request through the gateway; without the cache each one would
read the database. A resolved key is trusted for at most ``api_key_cache_seconds``, which bounds
how long a key revoked on another replica keeps working (the issue asks for 5 s); a revocation
served by this process evicts the key at once. Expiry is checked on every use, cached or not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from docuchat_auth.api_keys.repository import ApiKeyRepository
from docuchat_auth.api_keys.service import KEY_FORMAT, hash_api_key
from docuchat_auth.models import ApiKey
from docuchat_common.errors import Unauthorized
from docuchat_common.identity import Identity
from docuchat_common.service import ServiceRuntime

# A key whose creator is gone still acts as someone: a stable id derived from the key's id.
API_KEY_USER_NAMESPACE = uuid.UUID("6f1d3c1e-4b0e-5d55-9a57-2f0c1a7d0b6e")
MARK_USED_EVERY = timedelta(minutes=1)
MAX_CACHED_KEYS = 10_000


def _invalid() -> Unauthorized:
    return Unauthorized("API key is unknown, revoked or expired", code="invalid_api_key")


def key_identity(key: ApiKey) -> Identity:
    scopes = frozenset(key.scopes)
    return Identity(
        user_id=key.created_by or uuid.uuid5(API_KEY_USER_NAMESPACE, str(key.id)),
        tenant_id=key.tenant_id,
        role="admin" if "admin" in scopes else "member",
        scopes=scopes,
        via="api_key",
    )


@dataclass
class _Resolved:
    key_id: uuid.UUID
    identity: Identity
    expires_at: datetime | None
    fetched_at: float  # monotonic
    marked_used_at: float | None  # monotonic; None until this process has written it


class ApiKeyResolver:
    def __init__(
        self,
        *,
        cache_seconds: float,
        mark_used_every: timedelta = MARK_USED_EVERY,
        max_entries: int = MAX_CACHED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_seconds = cache_seconds
        self.mark_used_every = mark_used_every
        self.max_entries = max_entries
        self._clock = clock
        self._by_hash: dict[str, _Resolved] = {}

    async def resolve(self, key: str, keys: ApiKeyRepository) -> Identity:
        if not KEY_FORMAT.match(key):
            raise _invalid()  # not worth a database read
        key_hash = hash_api_key(key)
        now = datetime.now(UTC)
        tick = self._clock()
        entry = self._by_hash.get(key_hash)
        if entry is None or tick - entry.fetched_at >= self.cache_seconds:
            row = await keys.find_usable(key_hash, now)
            if row is None:
                self._by_hash.pop(key_hash, None)
                raise _invalid()
            entry = self._remember(key_hash, row, tick, previous=entry)
        if entry.expires_at is not None and entry.expires_at <= now:
            self._by_hash.pop(key_hash, None)
            raise _invalid()
        every = self.mark_used_every.total_seconds()
        if entry.marked_used_at is None or tick - entry.marked_used_at >= every:
            # Written with the request's transaction; at most once per interval and key.
            await keys.mark_used(entry.key_id, now, interval=self.mark_used_every)
            entry.marked_used_at = tick
        return entry.identity

    def forget(self, key_id: uuid.UUID) -> None:
        """Drop a key from the cache (revoked here: no need to wait for the entry to age)."""
        for key_hash in [h for h, e in self._by_hash.items() if e.key_id == key_id]:
            del self._by_hash[key_hash]

    def _remember(
        self, key_hash: str, row: ApiKey, tick: float, previous: _Resolved | None
    ) -> _Resolved:
        entry = _Resolved(
            key_id=row.id,
            identity=key_identity(row),
            expires_at=row.expires_at,
            fetched_at=tick,
            marked_used_at=previous.marked_used_at if previous else None,
        )
        self._by_hash.pop(key_hash, None)
        while len(self._by_hash) >= self.max_entries:
            # Oldest refresh first (dicts keep insertion order); a dropped key is re-read.
            del self._by_hash[next(iter(self._by_hash))]
        self._by_hash[key_hash] = entry
        return entry


def api_key_resolver(runtime: ServiceRuntime) -> ApiKeyResolver:
    """The process's resolver (one cache per replica), made by ``build_runtime``."""
    resolver: ApiKeyResolver = runtime.state["api_key_resolver"]
    return resolver
