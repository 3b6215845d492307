"""Feedback on answers: up or down with a comment, one per message and user (the latest wins);
only the asker's own answers can be rated."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from docuchat_chat.models import Feedback
from tests.chat.answering.test_ask import DISTANCE_EDUCATION
from tests.chat.conftest import ChatService, Corpus


async def test_an_answer_is_rated_once_per_user_and_rating_again_replaces_it(
    chat: ChatService, corpus: Corpus
) -> None:
    user = uuid.uuid4()
    me = chat.headers(corpus.tenant_id, user)
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    answer = (await chat.ask(corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)).json()
    path = f"/api/v1/messages/{answer['id']}/feedback"

    up = await chat.client.post(path, json={"rating": "up"}, headers=me)
    assert up.status_code == 200, up.text
    assert (up.json()["rating"], up.json()["comment"]) == ("up", None)
    down = await chat.client.post(
        path, json={"rating": "down", "comment": "wrong page"}, headers=me
    )
    assert (down.json()["rating"], down.json()["comment"]) == ("down", "wrong page")
    async with chat.runtime.database.transaction() as db:
        rows = (await db.scalars(select(Feedback))).all()
    assert [(r.message_id, r.user_id, r.rating) for r in rows] == [
        (uuid.UUID(answer["id"]), user, "down")
    ]

    invalid = await chat.client.post(path, json={"rating": "meh"}, headers=me)
    assert invalid.status_code == 422
    question_id = (await chat.messages(corpus.tenant_id, user, session["id"]))[0]["id"]
    not_an_answer = await chat.client.post(
        f"/api/v1/messages/{question_id}/feedback", json={"rating": "up"}, headers=me
    )
    assert not_an_answer.status_code == 422
    assert not_an_answer.json()["code"] == "not_an_answer"
    for stranger in (
        chat.headers(corpus.tenant_id, uuid.uuid4()),
        chat.headers(uuid.uuid4(), user),
    ):
        refused = await chat.client.post(path, json={"rating": "up"}, headers=stranger)
        assert refused.status_code == 404 and refused.json()["code"] == "message_not_found"
