from __future__ import annotations

import re
import uuid

from pydantic import TypeAdapter

from docuchat.asyncapi import asyncapi_document, event_schemas
from docuchat_common.events.catalog import (
    CATALOG,
    TenantCreated,
    TenantCreatedData,
    TenantDeleted,
    event_union,
)
from docuchat_common.events.envelope import UnknownEvent

ENVELOPE = {"id", "type", "version", "occurred_at", "tenant_id", "source", "correlation_id", "data"}


def test_every_event_is_past_tense_versioned_and_enveloped() -> None:
    for model in CATALOG:
        event_type = model.model_fields["type"].default
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*\.[a-z]+ed", event_type), event_type
        assert model.model_fields["version"].default >= 1
        assert set(model.model_fields) == ENVELOPE
        assert model.topic.name.startswith("docuchat.")


def test_consumers_tolerate_types_and_versions_they_do_not_know() -> None:
    adapter = TypeAdapter(event_union(TenantCreated, TenantDeleted))
    tenant = uuid.uuid4()
    event = TenantCreated(
        tenant_id=tenant,
        source="auth",
        data=TenantCreatedData(tenant_id=tenant, name="Acme", owner_user_id=uuid.uuid4()),
    ).to_json_dict()
    assert isinstance(adapter.validate_python(event), TenantCreated)
    # Additive change: a producer adds a field; older consumers keep it and go on.
    event["data"]["region"] = "eu"
    assert adapter.validate_python(event).data.model_extra == {"region": "eu"}
    assert isinstance(adapter.validate_python({**event, "type": "tenant.renamed"}), UnknownEvent)
    assert isinstance(adapter.validate_python({**event, "version": 2}), UnknownEvent)


def test_asyncapi_is_generated_from_the_handlers_and_publishers() -> None:
    document = asyncapi_document()
    assert document["asyncapi"].startswith("3.")
    channels = {c["address"] for c in document["channels"].values()}
    assert {
        "docuchat.tenants",
        "docuchat.users",
        "docuchat.documents",
        "docuchat.tokens",
        "docuchat.quota",
    } <= channels
    operations = document["operations"]
    receives = [name for name, op in operations.items() if op["action"] == "receive"]
    assert any(name.startswith("usage.tenants") for name in receives)  # the real usage consumer
    schemas = event_schemas()
    assert "tenant.created.v1" in schemas
    assert set(schemas["tenant.created.v1"]["required"]) >= {"tenant_id", "source", "data"}
