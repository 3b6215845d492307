"""A tenant's own model endpoint (BYOK): owner/admin only, the key write-only (masked on read,
encrypted at rest with rotatable keys), the model checked against the plan, and used for the
tenant's answers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from docuchat_chat.llm_settings.crypto import KeyVault, mask
from docuchat_chat.models import LLMSettings
from docuchat_chat.settings import ChatSettings
from docuchat_common.events.catalog import QuotaChangedData
from docuchat_common.settings import DEV_SECRET
from tests.chat.answering.test_ask import DISTANCE_EDUCATION
from tests.chat.conftest import ChatService, Corpus, serve_chat
from tests.fakes.openai_server import FakeOpenAI

SETTINGS = "/api/v1/llm-settings"
TENANT_KEY = "sk-tenant-0123456789abcdef"


async def test_the_key_is_write_only_encrypted_and_used_for_the_tenants_answers(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    owner = chat.headers(corpus.tenant_id)
    empty = await chat.client.get(SETTINGS, headers=owner)
    assert empty.status_code == 200, empty.text
    assert empty.json() | {"updated_at": None} == {
        "base_url": None,
        "model": None,
        "api_key": None,
        "updated_at": None,
    }

    saved = await chat.client.patch(
        SETTINGS,
        json={"api_key": TENANT_KEY, "base_url": fake_openai.base_url, "model": "gpt-4o-mini"},
        headers=owner,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["api_key"] == "sk-...cdef"
    assert saved.json()["base_url"] == fake_openai.base_url
    read = await chat.client.get(SETTINGS, headers=owner)
    assert read.json() == saved.json()
    assert TENANT_KEY not in read.text

    async with chat.runtime.database.transaction() as db:
        row = (await db.scalars(select(LLMSettings))).one()
    assert row.api_key_encrypted and TENANT_KEY not in row.api_key_encrypted
    assert chat.runtime.state["key_vault"].decrypt(row.api_key_encrypted) == TENANT_KEY

    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    answered = await chat.ask(corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)
    assert answered.status_code == 201, answered.text
    assert [r.api_key for r in fake_openai.chat_requests] == [TENANT_KEY]

    cleared = await chat.client.patch(SETTINGS, json={"api_key": None}, headers=owner)
    assert cleared.json()["api_key"] is None
    assert cleared.json()["model"] == "gpt-4o-mini"  # fields not sent stay


async def test_only_owners_and_admins_see_or_change_it(chat_app: ChatService) -> None:
    tenant = uuid.uuid4()
    member = chat_app.headers(tenant, role="member")
    assert (await chat_app.client.get(SETTINGS, headers=member)).status_code == 403
    patched = await chat_app.client.patch(SETTINGS, json={"model": "x"}, headers=member)
    assert patched.status_code == 403
    admin = chat_app.headers(tenant, role="admin")
    assert (await chat_app.client.get(SETTINGS, headers=admin)).status_code == 200
    bad_url = await chat_app.client.patch(SETTINGS, json={"base_url": "not a url"}, headers=admin)
    assert bad_url.status_code == 422


async def test_a_model_outside_the_plan_cannot_be_chosen(chat_app: ChatService) -> None:
    tenant = uuid.uuid4()
    await chat_app.set_quota(
        tenant, QuotaChangedData(plan="free", limits={}, allowed_models=["gpt-4o-mini"])
    )
    owner = chat_app.headers(tenant)
    refused = await chat_app.client.patch(SETTINGS, json={"model": "gpt-4.1"}, headers=owner)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "model_not_allowed"
    allowed = await chat_app.client.patch(SETTINGS, json={"model": "gpt-4o-mini"}, headers=owner)
    assert allowed.status_code == 200


def test_keys_rotate_the_first_encrypts_and_all_decrypt() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = KeyVault(SecretStr(old)).encrypt(TENANT_KEY)
    rotating = KeyVault(SecretStr(f"{new},{old}"))
    assert rotating.decrypt(stored) == TENANT_KEY
    rotated = rotating.rotate(stored)
    assert KeyVault(SecretStr(new)).decrypt(rotated) == TENANT_KEY
    with pytest.raises(ValueError, match="cannot be decrypted"):
        KeyVault(SecretStr(new)).decrypt(stored)
    # a passphrase works too: a Fernet key is derived from it
    assert (
        KeyVault(SecretStr("a long passphrase")).decrypt(
            KeyVault(SecretStr("a long passphrase")).encrypt("x")
        )
        == "x"
    )


def test_the_public_default_key_is_refused_outside_dev_and_test() -> None:
    with pytest.raises(ValueError, match="LLM_KEY_ENCRYPTION_KEYS"):
        ChatSettings(environment="prod")
    with pytest.raises(ValueError, match="LLM_KEY_ENCRYPTION_KEYS"):
        ChatSettings(
            environment="prod",
            llm_key_encryption_keys=SecretStr(f"{Fernet.generate_key().decode()},{DEV_SECRET}"),
        )
    assert ChatSettings(
        environment="prod", llm_key_encryption_keys=SecretStr(Fernet.generate_key().decode())
    )
    assert ChatSettings(environment="dev").llm_key_encryption_keys.get_secret_value() == DEV_SECRET


def test_a_masked_key_shows_its_prefix_and_last_four() -> None:
    assert mask("sk-proj-abcdefghijkl") == "sk-...ijkl"
    assert mask("abcdefghijkl") == "...ijkl"
    assert mask("short") == "..."


async def test_a_new_encryption_key_put_first_re_encrypts_stored_keys_at_start(
    settings_for: Any, infra: Any, keys_dir: Path, fake_openai: FakeOpenAI
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    tenant = uuid.uuid4()
    async with serve_chat(
        settings_for, infra, keys_dir, llm_key_encryption_keys=SecretStr(old)
    ) as before:
        saved = await before.client.patch(
            SETTINGS, json={"api_key": TENANT_KEY}, headers=before.headers(tenant)
        )
        assert saved.status_code == 200, saved.text
    async with serve_chat(
        settings_for, infra, keys_dir, llm_key_encryption_keys=SecretStr(f"{new},{old}")
    ) as after:
        async with after.runtime.database.transaction() as db:
            row = (await db.scalars(select(LLMSettings))).one()
        assert row.api_key_encrypted is not None
        assert KeyVault(SecretStr(new)).decrypt(row.api_key_encrypted) == TENANT_KEY
        read = await after.client.get(SETTINGS, headers=after.headers(tenant))
        assert read.json()["api_key"] == "sk-...cdef"
