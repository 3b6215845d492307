"""A tenant's base_url may not point into the deployment's private network (SSRF)."""

from __future__ import annotations

import pytest

from docuchat_chat.llm_settings.url_policy import check_base_url
from docuchat_common.errors import DocuChatError


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8101/v1",  # another service of ours
        "http://localhost:5432",
        "http://169.254.169.254/latest/meta-data",  # the cloud metadata endpoint
        "http://10.0.0.7/v1",
        "http://192.168.1.20:11434/v1",  # an Ollama on the LAN
        "http://[::1]:8000/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://0.0.0.0:8080/v1",
    ],
)
async def test_private_and_reserved_addresses_are_refused(url: str) -> None:
    with pytest.raises(DocuChatError) as refused:
        await check_base_url(url, allow_private=False)
    assert (refused.value.status, refused.value.code) == (422, "base_url_not_allowed")


@pytest.mark.parametrize(
    "url", ["ftp://8.8.8.8/v1", "https://user:secret@8.8.8.8/v1", "https:///v1"]
)
async def test_only_plain_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(DocuChatError) as refused:
        await check_base_url(url, allow_private=True)
    assert refused.value.code == "base_url_not_allowed"


async def test_public_addresses_pass_and_operators_may_allow_private_ones() -> None:
    await check_base_url("https://8.8.8.8/v1", allow_private=False)
    await check_base_url("https://[2606:4700:4700::1111]/v1", allow_private=False)
    await check_base_url("http://127.0.0.1:11434/v1", allow_private=True)
