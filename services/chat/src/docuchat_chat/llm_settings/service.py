"""A tenant's own model endpoint (BYOK): key encrypted at rest, masked on read, the model
checked against the plan. Keys are never logged."""

from __future__ import annotations

import dataclasses
import uuid

from docuchat_chat.llm.port import ProviderConfig
from docuchat_chat.llm_settings.crypto import KeyVault, mask
from docuchat_chat.llm_settings.repository import LLMSettingsRepository
from docuchat_chat.llm_settings.schemas import LLMSettingsOut, LLMSettingsPatch
from docuchat_chat.llm_settings.url_policy import check_base_url
from docuchat_chat.models import LLMSettings
from docuchat_common.identity import Identity
from docuchat_common.quota import QuotaGuard


def settings_out(row: LLMSettings | None) -> LLMSettingsOut:
    if row is None:
        return LLMSettingsOut(base_url=None, model=None, api_key=None, updated_at=None)
    return LLMSettingsOut(
        base_url=row.base_url, model=row.model, api_key=row.api_key_hint, updated_at=row.updated_at
    )


class LLMSettingsService:
    def __init__(
        self,
        repository: LLMSettingsRepository,
        vault: KeyVault,
        quota: QuotaGuard | None,
        *,
        allow_private_base_urls: bool = False,
    ) -> None:
        self.repository = repository
        self.vault = vault
        self.quota = quota
        self.allow_private_base_urls = allow_private_base_urls

    async def get(self, identity: Identity) -> LLMSettingsOut:
        return settings_out(await self.repository.get(identity.tenant_id))

    async def update(self, identity: Identity, patch: LLMSettingsPatch) -> LLMSettingsOut:
        fields = patch.model_fields_set
        if "model" in fields and patch.model is not None and self.quota is not None:
            self.quota.check_fixed(identity.tenant_id, model=patch.model)
        if "base_url" in fields and patch.base_url is not None:
            await check_base_url(str(patch.base_url), allow_private=self.allow_private_base_urls)
        row = await self.repository.get_or_new(identity.tenant_id)
        if "api_key" in fields:
            if patch.api_key is None:
                row.api_key_encrypted = row.api_key_hint = None
            else:
                row.api_key_encrypted = self.vault.encrypt(patch.api_key)
                row.api_key_hint = mask(patch.api_key)
        if "base_url" in fields:
            row.base_url = str(patch.base_url).rstrip("/") if patch.base_url else None
        if "model" in fields:
            row.model = patch.model
        await self.repository.save(row)
        return settings_out(row)

    async def rotate_keys(self) -> int:
        """Re-encrypt stored keys that an older encryption key protects with the current one, so
        the older one can be dropped; how many were."""
        rotated = 0
        for row in await self.repository.with_keys():
            token = row.api_key_encrypted
            if token is not None and not self.vault.is_current(token):
                row.api_key_encrypted = self.vault.rotate(token)
                rotated += 1
        if rotated:
            await self.repository.session.flush()
        return rotated

    async def provider_config(
        self, tenant_id: uuid.UUID, default: ProviderConfig
    ) -> ProviderConfig:
        """The tenant's endpoint when it configured one (BYOK), else the service default."""
        row = await self.repository.get(tenant_id)
        if row is None:
            return default
        if row.api_key_encrypted is None and row.base_url is None:
            return dataclasses.replace(default, model=row.model) if row.model else default
        return ProviderConfig(
            kind="openai",
            model=row.model or default.model,
            base_url=row.base_url,
            api_key=self.vault.decrypt(row.api_key_encrypted) if row.api_key_encrypted else None,
        )
