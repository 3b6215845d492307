from __future__ import annotations

import json
import logging

import pytest

from docuchat_common.context import bound_context
from docuchat_common.logging import configure_logging, get_logger


def test_json_logs_carry_context_ids_and_never_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    try:
        with bound_context(request_id="r-1", correlation_id="c-1", tenant_id="t-1"):
            get_logger("test").info(
                "calling provider",
                password="hunter2",
                api_key="sk-live-123",
                header="Authorization: Bearer eyJhbGciOi.payload.sig",
                note="key dck_abcdef123456 used",
                prompt_tokens=12,
            )
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        logging.getLogger().handlers.clear()
    assert line["event"] == "calling provider"
    assert (line["request_id"], line["correlation_id"], line["tenant_id"]) == ("r-1", "c-1", "t-1")
    assert line["password"] == "***" and line["api_key"] == "***"
    assert "eyJ" not in line["header"] and "dck_abcdef" not in line["note"]
    assert line["prompt_tokens"] == 12


def test_a_token_in_a_logged_url_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    try:
        # as uvicorn logs a browser's WebSocket when it accepts it
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]',
            "127.0.0.1:50000",
            "/api/v1/sessions/s-1/ws?access_token=eyJhbGciOi.payload.sig&lang=en",
        )
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        logging.getLogger().handlers.clear()
    assert "eyJ" not in line["event"]
    assert "/api/v1/sessions/s-1/ws?access_token=***&lang=en" in line["event"]
