"""Keyset pagination for the API's lists: ``?limit=`` (1..100, default 20) and an opaque
``?cursor=`` naming the last item seen by its sort key (a time and an id, so ties are stable).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Query

from docuchat_common.errors import Unprocessable

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page")]


def encode_cursor(at: datetime, item_id: uuid.UUID) -> str:
    raw = json.dumps([at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, item_id = json.loads(raw)
        return datetime.fromisoformat(at), uuid.UUID(item_id)
    except (ValueError, TypeError) as exc:
        raise Unprocessable("cursor is not one this API returned", code="invalid_cursor") from exc
