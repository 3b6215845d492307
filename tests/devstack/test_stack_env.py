"""What the dev stack hands its gateway: the service URLs, and the gateway's own settings
(its rate limits, for instance) when the stack is configured with them."""

from __future__ import annotations

from pathlib import Path

from docuchat.stack import DevStack
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
