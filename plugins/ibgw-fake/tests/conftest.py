"""Fixtures for the fake backend's own tests."""

import pytest
from ibgw_fake_testutil import make_pm


@pytest.fixture
def fake_pm(monkeypatch):
    """Core fixtures + the fake backend only; no canary planted."""
    monkeypatch.delenv("IBGW_FAKE_CANARY", raising=False)
    return make_pm()
