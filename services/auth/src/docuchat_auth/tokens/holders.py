"""Whether an access token's user still belongs to its tenant, with a short in-memory cache.

Access tokens are verified by signature alone and live minutes: without this, a user removed
from a tenant (or a deleted tenant's whole team) would keep acting for the rest of their
tokens' lifetime, and see empty lists rather than a 401. Forward-auth asks here for every
access token; one database read per user and replica at most every ``cache_seconds``
(which bounds how long a removal takes to reach every replica), none for the others.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from docuchat_auth.accounts.repository import AccountRepository
from docuchat_common.errors import Unauthorized
from docuchat_common.identity import Identity

MAX_CACHED_HOLDERS = 10_000


class TokenHolders:
    def __init__(
        self,
        *,
        cache_seconds: float,
        max_entries: int = MAX_CACHED_HOLDERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._clock = clock
        # (tenant, user) → (still a member, when that was read)
        self._members: dict[tuple[uuid.UUID, uuid.UUID], tuple[bool, float]] = {}

    async def ensure_member(self, identity: Identity, accounts: AccountRepository) -> None:
        """Refuse the token of a user no longer in its tenant (removed, or the tenant gone)."""
        key = (identity.tenant_id, identity.user_id)
        tick = self._clock()
        cached = self._members.get(key)
        if cached is None or tick - cached[1] >= self.cache_seconds:
            member = await accounts.user_in_tenant(identity.user_id, identity.tenant_id) is not None
            self._members.pop(key, None)
            while len(self._members) >= self.max_entries:
                # Oldest read first (dicts keep insertion order); a dropped holder is re-read.
                del self._members[next(iter(self._members))]
            self._members[key] = (member, tick)
            cached = self._members[key]
        if not cached[0]:
            raise Unauthorized(
                "the token's user is no longer a member of its tenant", code="account_removed"
            )
