"""Pytest fixtures for the fake OpenAI server.

Load them with ``pytest_plugins = ["tests.fakes.fixtures"]`` in the root ``conftest.py``, or import
them into a test module.
"""

from collections.abc import Iterator

import pytest

from .openai_server import FakeOpenAI


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One fake server for the whole session; prefer ``fake_openai`` in tests."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The session's fake server with default behaviour, no faults and no recorded requests."""
    fake_openai_server.reset()
    return fake_openai_server
