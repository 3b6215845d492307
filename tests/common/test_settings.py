from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from docuchat_auth.settings import AuthSettings
from docuchat_auth.tokens.keys import KeyRing
from docuchat_common.settings import DEV_SECRET, ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DOCUCHAT_DEMO_", extra="ignore")
    service_name: ClassVar[str] = "demo"
    encryption_key: SecretStr = SecretStr(DEV_SECRET)


def test_service_prefix_wins_over_the_shared_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUCHAT_KAFKA_BOOTSTRAP_SERVERS", "shared:9092")
    monkeypatch.setenv("DOCUCHAT_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("DOCUCHAT_DEMO_KAFKA_BOOTSTRAP_SERVERS", "demo:9092")
    settings = DemoSettings()
    assert settings.kafka_bootstrap_servers == "demo:9092"
    assert settings.log_level == "DEBUG"


def test_default_secrets_are_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DemoSettings(environment="dev").encryption_key.get_secret_value() == DEV_SECRET
    with pytest.raises(ValueError, match="DOCUCHAT_DEMO_ENCRYPTION_KEY"):
        DemoSettings(environment="prod")
    monkeypatch.setenv("DOCUCHAT_DEMO_ENCRYPTION_KEY", "a-real-secret-from-the-vault")
    assert DemoSettings(environment="prod").encryption_key.get_secret_value().startswith("a-real")


def test_secrets_are_masked_in_loggable_settings() -> None:
    assert DemoSettings().public_dict()["encryption_key"] == "***"


def test_production_auth_needs_provided_signing_keys(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(ValueError, match="SIGNING_KEYS_PEM is required"):
        KeyRing.from_settings(AuthSettings(environment="prod", keys_dir=tmp_path))  # type: ignore[arg-type]
