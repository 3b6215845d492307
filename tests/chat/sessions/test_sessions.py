"""Sessions: create (on a knowledge base the caller can see), list (newest first, cursor
paged, archived apart), get, rename, archive, restore, delete; each user sees only their own,
another tenant's or user's is a 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from docuchat_chat.models import Message
from docuchat_chat.sessions.repository import SessionRepository
from tests.chat.conftest import ChatService, HttpService, make_kb

SESSIONS = "/api/v1/sessions"


async def test_a_session_lives_through_rename_archive_restore_and_delete(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    kb = await make_kb(ingest, tenant)
    me = chat.headers(tenant, user)
    created = await chat.new_session(tenant, user, kb, title="  Contracts  ")
    assert created["title"] == "Contracts"
    assert created["knowledge_base_id"] == str(kb)
    assert created["archived"] is False and created["last_message_at"] is None
    path = f"{SESSIONS}/{created['id']}"

    renamed = await chat.client.patch(path, json={"title": "Leases"}, headers=me)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["title"] == "Leases"

    archived = await chat.client.patch(path, json={"archived": True}, headers=me)
    assert archived.json()["archived"] is True and archived.json()["archived_at"]
    active = (await chat.client.get(SESSIONS, headers=me)).json()["items"]
    assert active == []
    in_archive = await chat.client.get(SESSIONS, params={"archived": "true"}, headers=me)
    assert [s["id"] for s in in_archive.json()["items"]] == [created["id"]]

    restored = await chat.client.patch(path, json={"archived": False}, headers=me)
    assert restored.json()["archived"] is False and restored.json()["archived_at"] is None
    assert (await chat.client.get(path, headers=me)).json()["title"] == "Leases"
    # a null title, a non-boolean archived flag or a typo is refused, and changes nothing
    for body in ({"title": None}, {"archived": "yes"}, {"archivd": True}):
        refused = await chat.client.patch(path, json=body, headers=me)
        assert refused.status_code == 422, body
    kept = (await chat.client.get(path, headers=me)).json()
    assert (kept["title"], kept["archived"]) == ("Leases", False)

    deleted = await chat.client.delete(path, headers=me)
    assert deleted.status_code == 204
    gone = await chat.client.get(path, headers=me)
    assert gone.status_code == 404 and gone.json()["code"] == "session_not_found"


async def test_sessions_page_newest_first_with_a_cursor(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    kb = await make_kb(ingest, tenant)
    me = chat.headers(tenant, user)
    made = [(await chat.new_session(tenant, user, kb, title=f"s{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await chat.client.get(SESSIONS, params=params, headers=me)).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))

    bad = await chat.client.get(SESSIONS, params={"cursor": "nonsense"}, headers=me)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"


async def test_another_tenants_or_users_session_is_not_found(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, owner = uuid.uuid4(), uuid.uuid4()
    kb = await make_kb(ingest, tenant)
    session = await chat.new_session(tenant, owner, kb, title="Mine")
    path = f"{SESSIONS}/{session['id']}"
    colleague = chat.headers(tenant, uuid.uuid4())
    stranger = chat.headers(uuid.uuid4(), owner)  # same user id, other tenant
    for headers in (colleague, stranger):
        for method, url, body in (
            ("GET", path, None),
            ("PATCH", path, {"title": "Theirs"}),
            ("DELETE", path, None),
            ("GET", f"{path}/messages", None),
            ("GET", f"{path}/export", None),
            ("POST", f"{path}/messages", {"content": "hello?"}),
        ):
            answer = await chat.client.request(method, url, json=body, headers=headers)
            assert answer.status_code == 404, (method, url, answer.text)
        listed = await chat.client.get(SESSIONS, headers=headers)
        assert listed.json()["items"] == []
    still = await chat.client.get(path, headers=chat.headers(tenant, owner))
    assert still.json()["title"] == "Mine"


async def test_creating_needs_a_visible_knowledge_base_and_credentials(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    me = chat.headers(tenant, user)
    missing = await chat.client.post(SESSIONS, json={"title": "x"}, headers=me)
    assert missing.status_code == 422
    # a knowledge base that does not exist, or another tenant's, is refused at once
    others = await make_kb(ingest, uuid.uuid4())
    for kb in (uuid.uuid4(), others):
        refused = await chat.client.post(SESSIONS, json={"knowledge_base_id": str(kb)}, headers=me)
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "knowledge_base_not_found"
    assert (await chat.client.get(SESSIONS, headers=me)).json()["items"] == []
    anonymous = await chat.client.get(SESSIONS)
    assert anonymous.status_code == 401


async def test_creating_while_knowledge_bases_are_unreachable_is_a_503_and_stores_nothing(
    chat_app: ChatService,
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    me = chat_app.headers(tenant, user)
    refused = await chat_app.client.post(
        SESSIONS, json={"knowledge_base_id": str(uuid.uuid4())}, headers=me
    )
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "retrieval_unavailable"
    assert (await chat_app.client.get(SESSIONS, headers=me)).json()["items"] == []


async def test_messages_page_oldest_first_even_when_stored_together(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    session = await chat.new_session(tenant, user, await make_kb(ingest, tenant), title="t")
    at = datetime.now(UTC)
    async with chat.runtime.database.transaction() as db:  # one timestamp for all of them
        repository = SessionRepository(db)
        for i in range(7):
            await repository.add_message(
                Message(
                    id=uuid.uuid4(),
                    session_id=uuid.UUID(session["id"]),
                    tenant_id=tenant,
                    role="user" if i % 2 == 0 else "assistant",
                    content=f"m{i}",
                    citations=[],
                    complete=True,
                    status="answered",
                    created_at=at,
                )
            )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await chat.client.get(
            f"{SESSIONS}/{session['id']}/messages",
            params=params,
            headers=chat.headers(tenant, user),
        )
        assert page.status_code == 200, page.text
        seen += [m["content"] for m in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"m{i}" for i in range(7)]
