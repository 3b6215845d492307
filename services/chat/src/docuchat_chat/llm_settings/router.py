from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request

from docuchat_chat.llm_settings.repository import LLMSettingsRepository
from docuchat_chat.llm_settings.schemas import LLMSettingsOut, LLMSettingsPatch
from docuchat_chat.llm_settings.service import LLMSettingsService
from docuchat_chat.settings import ChatSettings
from docuchat_common.identity import Identity, require
from docuchat_common.service import DbSession, runtime_of

router = APIRouter(prefix="/api/v1/llm-settings", tags=["llm settings"])

Admin = Annotated[Identity, Depends(require(role="admin", scope="admin"))]


def llm_settings_service(request: Request, session: DbSession) -> LLMSettingsService:
    runtime = runtime_of(request)
    settings = cast(ChatSettings, runtime.settings)
    return LLMSettingsService(
        LLMSettingsRepository(session),
        runtime.state["key_vault"],
        runtime.state.get("quota"),
        allow_private_base_urls=settings.llm_allow_private_base_urls
        or settings.environment in ("dev", "test"),
    )


Service = Annotated[LLMSettingsService, Depends(llm_settings_service)]


@router.get("", response_model=LLMSettingsOut)
async def get_llm_settings(identity: Admin, service: Service) -> LLMSettingsOut:
    return await service.get(identity)


@router.patch("", response_model=LLMSettingsOut)
async def update_llm_settings(
    body: LLMSettingsPatch, identity: Admin, service: Service
) -> LLMSettingsOut:
    """``api_key`` is write-only: it is read back masked."""
    return await service.update(identity, body)
