"""Settings shared by every service.

Each service declares one ``BaseSettings`` subclass with its own env prefix
(``DOCUCHAT_AUTH_``, ``DOCUCHAT_USAGE_``...). A value not set under the service's prefix falls
back to the shared ``DOCUCHAT_`` prefix, so an all-in-one process can be configured once while a
Kubernetes Deployment can still override a single service.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

Environment = Literal["dev", "test", "prod"]

SHARED_ENV_PREFIX = "DOCUCHAT_"

# Values that ship in the repository. Anything still equal to one of them outside dev/test is a
# misconfiguration that would let anyone who read the source forge or decrypt things.
DEV_SECRET = "dev-insecure-change-me"  # noqa: S105 - the point is to recognise it


class InsecureSettingsError(ValueError):
    """A default (public) secret is configured outside development."""


class ServiceSettings(BaseSettings):
    """Base for the per-service settings; subclasses set ``model_config['env_prefix']``."""

    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    service_name: ClassVar[str] = "service"

    environment: Environment = "dev"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool | None = Field(default=None, description="JSON logs; default: when not a TTY")

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/docuchat"
    database_pool_size: int = 10
    migrate_on_start: bool = True

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # tansu (the embedded broker) supports neither idempotent producers nor transactions.
    kafka_enable_idempotence: bool = False
    # On shutdown a consumer finishes its in-flight message for up to this long, then abandons
    # it uncommitted (redelivered elsewhere). Keep the pod's grace period above it.
    consumer_graceful_timeout_seconds: float = 15.0
    # JSON bodies; multipart uploads have their own (larger, per plan) limit.
    max_request_body_bytes: int = 1024 * 1024
    # The embedded broker keeps everything in memory: a restart loses topics and offsets.
    kafka_ephemeral_broker: bool = False
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_client_id_suffix: str = ""
    consumer_max_attempts: int = 3
    # Prepended to every consumer group id: lets two deployments (or two tests) share a broker.
    consumer_group_prefix: str = ""
    consume_events: bool = True
    # Off on API replicas when a separate ``--target relay`` deployment publishes the outbox.
    relay_enabled: bool = True

    # Housekeeping of the event tables (docuchat_common.events.housekeeping): published outbox
    # rows are kept this long; consumers' claims longer than the topics' retention (a replay
    # must still find them: Kafka keeps 7 days by default).
    outbox_retention_hours: float = 7 * 24
    claim_retention_hours: float = 14 * 24
    housekeeping_interval_seconds: float = 3600.0

    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    jwt_issuer: str = "docuchat-auth"
    jwt_audience: str = "docuchat"
    jwks_cache_seconds: int = 300

    otlp_endpoint: str | None = None
    trace_sample_ratio: float = 1.0

    # Container allocations between two young-generation collections once started (see
    # docuchat_common.memory); 0 keeps CPython's defaults and does not freeze.
    gc_young_threshold: int = Field(default=20_000, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared_env = EnvSettingsSource(
            settings_cls,
            env_prefix=SHARED_ENV_PREFIX,
            env_nested_delimiter="__",
            case_sensitive=False,
        )
        return init_settings, env_settings, shared_env, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        if self.environment in ("dev", "test"):
            return self
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value() in ("", DEV_SECRET):
                raise InsecureSettingsError(
                    f"{type(self).__name__}.{name} is unset or the public development default; "
                    f"set {self.model_config.get('env_prefix', '')}{name.upper()} "
                    f"(environment={self.environment})"
                )
        return self

    @property
    def is_dev(self) -> bool:
        return self.environment == "dev"

    def public_dict(self) -> dict[str, Any]:
        """Settings as loggable data: secrets masked."""
        return {
            name: ("***" if isinstance(value, SecretStr) else value)
            for name, value in self.model_dump().items()
        }
