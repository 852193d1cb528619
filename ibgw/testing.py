"""pytest fixtures for testing ibgw and ibgw plugins offline.

Installed with the core as the ``pytest11`` entry point ``ibgw``, so any test
session that has ``ibgw`` installed gets these fixtures without a ``conftest.py``:

``ibgw_env``
    an isolated environment (own state dir, empty config file, no stray ``IBGW_*``).
``ibgw_responses``
    a started ``responses`` mock for pinning the live transport's requests.
``ibgw_subprocess_env``
    the environment for running the installed ``ibgw`` script in a subprocess.

The fixtures that need the fake backend (``ibgw_pm``, ``ibgw_cli``,
``ibgw_fake_gateway``, ``ibgw_fake_gateway_tls``) ship with it, in
``ibgw_fake.testing`` (the ``ibgw-fake`` distribution's ``pytest11`` entry point):
the core never imports a plugin package. A test that asks for one of them without
ibgw-fake installed fails with one line saying what to install.

This module imports only the standard library and pytest at top level: it is
loaded into every pytest run of an environment where ibgw is installed.
"""

from __future__ import annotations

import os
import sys

import pytest

_FAKE_FIXTURES = ("ibgw_pm", "ibgw_cli", "ibgw_fake_gateway", "ibgw_fake_gateway_tls")
_FAKE_MISSING = (
    "{names}: the fixtures that need the fake backend come with the 'ibgw-fake' distribution; "
    "install it (pip install ibgw-fake, or pip install -e plugins/ibgw-fake from a checkout)"
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """One clear line instead of pytest's "fixture 'ibgw_pm' not found" when a test
    asks for a fake-backend fixture and ibgw-fake's pytest plugin is not loaded."""
    wanted = [n for n in _FAKE_FIXTURES if n in getattr(item, "fixturenames", ())]
    if not wanted:
        return
    plugin = sys.modules.get("ibgw_fake.testing")
    if plugin is not None and item.config.pluginmanager.is_registered(plugin):
        return
    defined = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    missing = [n for n in wanted if n not in defined]  # a conftest may define its own
    if missing:
        pytest.fail(_FAKE_MISSING.format(names=", ".join(missing)), pytrace=False)


@pytest.fixture
def ibgw_env(tmp_path, monkeypatch):
    """Isolate ibgw from the user's machine for one test.

    Removes every ``IBGW_*`` variable, points ``IBGW_STATE_DIR`` at
    ``tmp_path / "state"`` (not created: ibgw creates it with its own
    permissions) and ``IBGW_CONFIG`` at ``tmp_path / "config.toml"``, an empty
    file, so the user's configuration is never read (an explicitly named config
    file must exist); write settings into it to test them. Yields ``tmp_path``.
    """
    for key in list(os.environ):
        if key.startswith("IBGW_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("IBGW_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    monkeypatch.setenv("IBGW_CONFIG", str(tmp_path / "config.toml"))
    yield tmp_path


@pytest.fixture
def ibgw_responses(ibgw_env, monkeypatch):
    """A started ``responses.RequestsMock`` for pinning the live transport's requests.

    ``ibgw_responses.base`` is the default gateway root
    (``https://localhost:5000/v1/api``); run the CLI with
    ``ibgw_cli("--backend", "live", ...)``. Pacing sleeps are turned off for the
    test (the pacer still runs, with every slot free), so a read that makes many
    calls stays fast. Unused registrations are allowed; assert on
    ``ibgw_responses.calls`` to pin what was sent.
    """
    import time

    import responses

    from ibgw.pacing import Pacer

    monkeypatch.setattr(Pacer, "acquire", lambda self, classes, deadline: time.time())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.base = "https://localhost:5000/v1/api"
        yield mock


@pytest.fixture
def ibgw_subprocess_env(ibgw_env):
    """Environment variables for running the installed ``ibgw`` console script in a
    subprocess, as a user would: this test's isolated state dir and empty config,
    and no other ``IBGW_*`` variable. The script lies beside the interpreter:
    ``subprocess.run([Path(sys.executable).with_name("ibgw"), ...], env=ibgw_subprocess_env)``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    env["IBGW_STATE_DIR"] = str(ibgw_env / "state")
    env["IBGW_CONFIG"] = str(ibgw_env / "config.toml")
    return env
