"""Sessions: create, list (newest first, cursor paged, archived apart), get, rename, archive,
restore, delete; each user sees only their own, another tenant's or user's is a 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from docuchat_chat.models import Message
from docuchat_chat.sessions.repository import SessionRepository
from tests.chat.conftest import ChatService

SESSIONS = "/api/v1/sessions"


async def test_a_session_lives_through_rename_archive_restore_and_delete(
    chat_app: ChatService,
) -> None:
    tenant, user, kb = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    me = chat_app.headers(tenant, user)
    created = await chat_app.new_session(tenant, user, kb, title="  Contracts  ")
    assert created["title"] == "Contracts"
    assert created["knowledge_base_id"] == str(kb)
    assert created["archived"] is False and created["last_message_at"] is None
    path = f"{SESSIONS}/{created['id']}"

    renamed = await chat_app.client.patch(path, json={"title": "Leases"}, headers=me)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["title"] == "Leases"

    archived = await chat_app.client.patch(path, json={"archived": True}, headers=me)
    assert archived.json()["archived"] is True and archived.json()["archived_at"]
    active = (await chat_app.client.get(SESSIONS, headers=me)).json()["items"]
    assert active == []
    in_archive = await chat_app.client.get(SESSIONS, params={"archived": "true"}, headers=me)
    assert [s["id"] for s in in_archive.json()["items"]] == [created["id"]]

    restored = await chat_app.client.patch(path, json={"archived": False}, headers=me)
    assert restored.json()["archived"] is False and restored.json()["archived_at"] is None
    assert (await chat_app.client.get(path, headers=me)).json()["title"] == "Leases"

    deleted = await chat_app.client.delete(path, headers=me)
    assert deleted.status_code == 204
    gone = await chat_app.client.get(path, headers=me)
    assert gone.status_code == 404 and gone.json()["code"] == "session_not_found"


async def test_sessions_page_newest_first_with_a_cursor(chat_app: ChatService) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    me = chat_app.headers(tenant, user)
    made = [
        (await chat_app.new_session(tenant, user, uuid.uuid4(), title=f"s{i}"))["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await chat_app.client.get(SESSIONS, params=params, headers=me)).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))

    bad = await chat_app.client.get(SESSIONS, params={"cursor": "nonsense"}, headers=me)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"


async def test_another_tenants_or_users_session_is_not_found(chat_app: ChatService) -> None:
    tenant, owner = uuid.uuid4(), uuid.uuid4()
    session = await chat_app.new_session(tenant, owner, uuid.uuid4(), title="Mine")
    path = f"{SESSIONS}/{session['id']}"
    colleague = chat_app.headers(tenant, uuid.uuid4())
    stranger = chat_app.headers(uuid.uuid4(), owner)  # same user id, other tenant
    for headers in (colleague, stranger):
        for method, url, body in (
            ("GET", path, None),
            ("PATCH", path, {"title": "Theirs"}),
            ("DELETE", path, None),
            ("GET", f"{path}/messages", None),
            ("GET", f"{path}/export", None),
            ("POST", f"{path}/messages", {"content": "hello?"}),
        ):
            answer = await chat_app.client.request(method, url, json=body, headers=headers)
            assert answer.status_code == 404, (method, url, answer.text)
        listed = await chat_app.client.get(SESSIONS, headers=headers)
        assert listed.json()["items"] == []
    still = await chat_app.client.get(path, headers=chat_app.headers(tenant, owner))
    assert still.json()["title"] == "Mine"


async def test_creating_needs_a_knowledge_base_and_credentials(chat_app: ChatService) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    missing = await chat_app.client.post(
        SESSIONS, json={"title": "x"}, headers=chat_app.headers(tenant, user)
    )
    assert missing.status_code == 422
    anonymous = await chat_app.client.get(SESSIONS)
    assert anonymous.status_code == 401


async def test_messages_page_oldest_first_even_when_stored_together(chat_app: ChatService) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    session = await chat_app.new_session(tenant, user, uuid.uuid4(), title="t")
    at = datetime.now(UTC)
    async with chat_app.runtime.database.transaction() as db:  # one timestamp for all of them
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
        page = await chat_app.client.get(
            f"{SESSIONS}/{session['id']}/messages",
            params=params,
            headers=chat_app.headers(tenant, user),
        )
        assert page.status_code == 200, page.text
        seen += [m["content"] for m in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"m{i}" for i in range(7)]
