"""Providers by configuration, sharing what is expensive or stateful between calls.

One HTTP connection pool serves every endpoint; one ``AsyncOpenAI`` per (base URL, API key) sits
on it (a client is a light wrapper, so tenants' own keys cost little); one circuit breaker per
base URL, shared by every key that calls it; one token counter.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING

import httpx2

from .extractive import ExtractiveProvider
from .openai_compat import EndpointBreakers, OpenAICompatProvider, RetryPolicy
from .port import LLMProvider, ProviderConfig
from .tokens import TokenCounter

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from docuchat_chat.settings import ChatSettings

__all__ = ["OPENAI_BASE_URL", "ProviderRegistry"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Sent when an endpoint needs no key (local servers): the client refuses to run without one.
_NO_KEY = "unused"


class ProviderRegistry:
    def __init__(
        self,
        settings: ChatSettings,
        *,
        token_counter: TokenCounter | None = None,
        policy: RetryPolicy | None = None,
        max_connections: int = 200,
        max_clients: int = 1024,
    ) -> None:
        self.settings = settings
        self.token_counter = token_counter or TokenCounter()
        self.policy = policy or RetryPolicy(
            connect_timeout=settings.llm_connect_timeout_seconds,
            read_timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            budget=settings.llm_retry_budget_seconds,
        )
        self.breakers = EndpointBreakers(
            threshold=settings.llm_breaker_threshold,
            cooldown=settings.llm_breaker_cooldown_seconds,
        )
        self._max_connections = max_connections
        self._http: httpx2.AsyncClient | None = None
        # Least recently used last out: a rotated BYOK key's client is dropped, not kept forever.
        # Dropping is enough (never close() one: it would close the shared pool).
        self._clients: OrderedDict[tuple[str, str], AsyncOpenAI] = OrderedDict()
        self._max_clients = max_clients
        self._extractive = ExtractiveProvider(self.token_counter)

    def default_config(self) -> ProviderConfig:
        """The provider the settings configure (used when a tenant has no LLM settings)."""
        s = self.settings
        return ProviderConfig(
            kind=s.llm_provider,
            model="extractive" if s.llm_provider == "extractive" else s.llm_model,
            base_url=s.llm_base_url,
            api_key=s.llm_api_key.get_secret_value() if s.llm_api_key else None,
        )

    async def warm(self) -> None:
        """Load the token encodings the default model and the extractive provider use, off the
        event loop, so the first question does not pay for it."""
        models = {self.default_config().model, self._extractive.model}
        await asyncio.to_thread(self.token_counter.warm, *sorted(models))

    def provider(self, config: ProviderConfig | None = None) -> LLMProvider:
        config = config or self.default_config()
        if config.kind == "extractive":
            return self._extractive
        return OpenAICompatProvider(
            client=self.client(config.base_url, config.api_key),
            model=config.model,
            breakers=self.breakers,
            token_counter=self.token_counter,
            policy=self.policy,
        )

    def client(self, base_url: str | None, api_key: str | None) -> AsyncOpenAI:
        """The shared client for one endpoint and key."""
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        key = ((base_url or OPENAI_BASE_URL).rstrip("/"), api_key or _NO_KEY)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
        else:
            if self._http is None:
                self._http = DefaultAsyncHttpxClient(
                    limits=httpx2.Limits(
                        max_connections=self._max_connections,
                        max_keepalive_connections=min(self._max_connections, 100),
                    ),
                )
            client = AsyncOpenAI(
                base_url=key[0],
                api_key=key[1],
                max_retries=0,  # retries are ours: see openai_compat
                http_client=self._http,
            )
            self._clients[key] = client
            if len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
        return client

    async def aclose(self) -> None:
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
