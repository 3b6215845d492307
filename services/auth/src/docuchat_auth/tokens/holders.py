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

from cachetools import TTLCache

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
        # (tenant, user) → still a member; a removed one is remembered too (no read per request)
        self._members: TTLCache[tuple[uuid.UUID, uuid.UUID], bool] = TTLCache(
            maxsize=max_entries, ttl=cache_seconds, timer=clock
        )

    async def ensure_member(self, identity: Identity, accounts: AccountRepository) -> None:
        """Refuse the token of a user no longer in its tenant (removed, or the tenant gone)."""
        key = (identity.tenant_id, identity.user_id)
        member = self._members.get(key)
        if member is None:
            member = await accounts.user_in_tenant(identity.user_id, identity.tenant_id) is not None
            self._members[key] = member
        if not member:
            raise Unauthorized(
                "the token's user is no longer a member of its tenant", code="account_removed"
            )
