"""The ingest service's tables. It owns its database; no other service reads it."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from docuchat_common.db import new_metadata
from docuchat_common.events.tables import outbox_table, processed_events_table

metadata = new_metadata()
outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)


class Base(DeclarativeBase):
    metadata = metadata
