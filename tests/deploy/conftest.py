"""Fixtures of the deployment validation: the npm-installed tools (installed once per machine)."""

from __future__ import annotations

import pytest

from tests.deploy.tools import Tools, ensure_tools


@pytest.fixture(scope="session")
def tools() -> Tools:
    return ensure_tools()
