from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from docuchat_common.settings import DEV_SECRET, InsecureSettingsError, ServiceSettings


class ChatSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOCUCHAT_CHAT_", extra="ignore")

    service_name: ClassVar[str] = "chat"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/docuchat_chat"

    # Ingest's API (its knowledge-base search), called with the caller's identity.
    retrieval_url: str = "http://127.0.0.1:8102"
    retrieval_timeout_seconds: float = 10.0
    # Passages asked for per question; None: the knowledge base's own top_k.
    retrieval_top_k: int | None = Field(default=None, ge=1, le=50)
    # Cosine similarity (query vs chunk) below which a passage is not evidence. With no passage
    # at or above it the answer is "not in your documents" and no model is called. For MiniLM on
    # the corpus, questions the documents answer scored 0.31-0.67 and off-topic ones -0.01-0.10.
    relevance_threshold: float = Field(default=0.25, ge=-1.0, le=1.0)
    # Earlier turns of the conversation sent with a question, newest first, up to this many
    # tokens (the model's tokenizer).
    history_token_budget: int = Field(default=1500, ge=0)
    max_answer_tokens: int = Field(default=512, ge=1)

    # The default LLM (a tenant's own LLM settings override it). "extractive" answers with the
    # best cited passages and needs no model; "openai" is OpenAI or any compatible server.
    llm_provider: Literal["openai", "extractive"] = "extractive"
    llm_base_url: str | None = None  # None: OpenAI's API
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    llm_timeout_seconds: float = Field(default=60.0, gt=0)  # longest silence while answering
    llm_max_retries: int = Field(default=2, ge=0)
    # Time from the call to the first token, retries and their waits included.
    llm_retry_budget_seconds: float = Field(default=30.0, gt=0)
    # Consecutive failed calls that open an endpoint's circuit breaker, and how long it stays open.
    llm_breaker_threshold: int = Field(default=5, ge=1)
    llm_breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    # On shutdown a streamed answer may go on this long before it is cut with a final event
    # (keep it under the server's graceful timeout, 20 s, and the pod's grace period).
    stream_shutdown_grace_seconds: float = Field(default=10.0, gt=0)
    # Tenants' own base_url may point into the private network (dev and test always may).
    llm_allow_private_base_urls: bool = False

    # Encrypt tenants' LLM API keys at rest: comma-separated Fernet keys (or passphrases, from
    # which a Fernet key is derived). The first encrypts; all decrypt, so a new key is rotated in
    # by putting it first and dropping the old one once every stored key has been re-encrypted.
    llm_key_encryption_keys: SecretStr = SecretStr(DEV_SECRET)

    @model_validator(mode="after")
    def _refuse_default_encryption_key(self) -> ChatSettings:
        if self.environment in ("dev", "test"):
            return self
        keys = [k.strip() for k in self.llm_key_encryption_keys.get_secret_value().split(",")]
        if any(k in ("", DEV_SECRET) for k in keys):
            raise InsecureSettingsError(
                "ChatSettings.llm_key_encryption_keys holds an empty key or the public development"
                f" default; set DOCUCHAT_CHAT_LLM_KEY_ENCRYPTION_KEYS (environment="
                f"{self.environment})"
            )
        return self
