"""What the dev stack hands its gateway: the service URLs, and the gateway's own settings
(its rate limits, for instance) when the stack is configured with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from docuchat.stack import CORS_REGEX_ENV, DEV_CORS_ORIGIN_REGEX, DevStack
from tests.devstack.test_llm import stack_config


def test_gateway_settings_in_extra_env_reach_the_gateway(tmp_path: Path) -> None:
    stack = DevStack(
        stack_config(
            tmp_path,
            local_llm=False,
            extra_env={"DOCUCHAT_GATEWAY_IP_RATE": "5000", "DOCUCHAT_CHAT_LLM_MODEL": "m"},
        )
    )

    assert stack.gateway.env["DOCUCHAT_GATEWAY_IP_RATE"] == "5000"
    assert "DOCUCHAT_CHAT_LLM_MODEL" not in stack.gateway.env  # a service's, not the gateway's
    assert stack.gateway.env["DOCUCHAT_INGEST_URL"] == stack.service_url("ingest")


def test_in_dev_a_frontend_on_any_localhost_port_may_call_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCUCHAT_CORS_ORIGINS", raising=False)
    monkeypatch.delenv(CORS_REGEX_ENV, raising=False)
    dev = DevStack(stack_config(tmp_path, local_llm=False, environment="dev"))
    assert dev.gateway.env[CORS_REGEX_ENV] == DEV_CORS_ORIGIN_REGEX
    # not outside dev, and never over the developer's own CORS settings
    assert CORS_REGEX_ENV not in DevStack(stack_config(tmp_path, local_llm=False)).gateway.env
    monkeypatch.setenv("DOCUCHAT_CORS_ORIGINS", "https://app.example.com")
    configured = DevStack(stack_config(tmp_path, local_llm=False, environment="dev"))
    assert CORS_REGEX_ENV not in configured.gateway.env
