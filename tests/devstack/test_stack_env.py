"""What the dev stack hands its gateway: the service URLs, and the gateway's own settings
(its rate limits, for instance) when the stack is configured with them."""

from __future__ import annotations

from pathlib import Path

from docuchat.devstack import free_port
from docuchat.stack import DevStack, StackConfig


def test_gateway_settings_in_extra_env_reach_the_gateway(tmp_path: Path) -> None:
    stack = DevStack(
        StackConfig(
            data_dir=tmp_path,
            gateway_port=free_port(),
            postgres_port=None,
            kafka_port=None,
            base_service_port=0,
            environment="test",
            extra_env={"DOCUCHAT_GATEWAY_IP_RATE": "5000", "DOCUCHAT_CHAT_LLM_MODEL": "m"},
        )
    )

    assert stack.gateway.env["DOCUCHAT_GATEWAY_IP_RATE"] == "5000"
    assert "DOCUCHAT_CHAT_LLM_MODEL" not in stack.gateway.env  # a service's, not the gateway's
    assert stack.gateway.env["DOCUCHAT_INGEST_URL"] == stack.service_url("ingest")
