"""pytest fixtures for testing ibgw and ibgw plugins offline.

Installed with the core as the ``pytest11`` entry point ``ibgw``, so any test
session that has ``ibgw`` installed gets these fixtures without a ``conftest.py``:

``ibgw_env``
    an isolated environment (own state dir, empty config file, no stray ``IBGW_*``).
``ibgw_pm``
    a fresh plugin manager with the built-in plugins and the fake backend;
    register your own plugin with ``ibgw_pm.register(my_module)``.
``ibgw_cli``
    run the ``ibgw`` CLI built from ``ibgw_pm`` against the fake backend.
``ibgw_fake_gateway`` / ``ibgw_fake_gateway_tls``
    a real loopback HTTP / HTTPS fake Client Portal Gateway.
``ibgw_responses``
    a started ``responses`` mock for pinning the live transport's requests.
``ibgw_subprocess_env``
    the environment for running the installed ``ibgw`` script in a subprocess.

A plugin test then reads::

    import my_plugin

    def test_my_read(ibgw_pm, ibgw_cli):
        ibgw_pm.register(my_plugin)
        result = ibgw_cli("fx", "rate", "USD", "EUR", "-o", "json")
        assert result.exit_code == 0, result.output

This module imports only the standard library and pytest at top level: it is
loaded into every pytest run of an environment where ibgw is installed.
"""

from __future__ import annotations

import os

import pytest

_FAKE_MISSING = (
    "the ibgw pytest fixtures need the fake backend: install the 'ibgw-fake' distribution "
    "(pip install ibgw-fake, or pip install -e plugins/ibgw-fake from a checkout)"
)


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
def ibgw_pm(ibgw_env):
    """A fresh :class:`ibgw.plugins.PluginManager` for one test.

    It holds the built-in plugins and the fake backend (``ibgw_fake``, registered
    under the name ``fake``) but no entry-point plugins, so tests do not depend
    on what else is installed. Add the plugin under test with
    ``ibgw_pm.register(my_module)``; the fake backend picks up its fixtures
    (``ibgw_fake_fixtures``) even when it is registered after the fake gateway
    fixture started.
    """
    from ibgw.plugins import PluginInfo, get_plugin_manager

    try:
        import ibgw_fake
    except ImportError:
        pytest.fail(_FAKE_MISSING, pytrace=False)
    pm = get_plugin_manager(load_entrypoints=False)
    if not pm.has_plugin("fake"):
        pm.register_checked(
            ibgw_fake, "fake", PluginInfo(name="fake", distribution="ibgw-fake", version=None)
        )
    return pm


@pytest.fixture
def ibgw_cli(ibgw_pm):
    """Run the ibgw CLI in-process: ``ibgw_cli(*args, input=None, **kwargs)``.

    Builds a fresh root command with ``ibgw.cli.create_cli(ibgw_pm)`` for every
    call and runs it through :class:`click.testing.CliRunner`. ``--backend fake``
    is put in front of ``args`` unless they already choose a backend
    (``--backend NAME`` or ``--backend=NAME``); choose a fault with the CLI's own
    scenario option. Extra keyword arguments go to ``CliRunner.invoke`` (for
    example ``env=`` or ``catch_exceptions=False``). Returns the
    :class:`click.testing.Result`: check ``exit_code``, ``output`` (stdout) and
    ``stderr``.
    """
    from click.testing import CliRunner

    from ibgw.cli import create_cli

    def run(*args, input=None, **kwargs):
        argv = [str(a) for a in args]
        if not any(a == "--backend" or a.startswith("--backend=") for a in argv):
            argv = ["--backend", "fake", *argv]
        return CliRunner().invoke(create_cli(ibgw_pm), argv, input=input, **kwargs)

    return run


def _fake_gateway(pm, tls: bool):
    try:
        from ibgw_fake.server import FakeGatewayServer
    except ImportError:
        pytest.fail(_FAKE_MISSING, pytrace=False)
    return FakeGatewayServer(pm, tls=tls, port=0)


@pytest.fixture
def ibgw_fake_gateway(ibgw_pm):
    """A running fake Client Portal Gateway over plain HTTP on a free loopback port.

    A :class:`ibgw_fake.server.FakeGatewayServer` serving every fixture of
    ``ibgw_pm`` under ``/v1/api``: ``.url`` is ``http://127.0.0.1:PORT/v1/api``;
    set ``.scenario`` (and ``.latency_ms``) at any time; ``.requests`` logs
    ``(method, path, query)`` of every request and ``.stats`` counts requests
    per path and the 429s of its enforced IBKR pacing limits. Stopped after
    the test.
    """
    server = _fake_gateway(ibgw_pm, tls=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ibgw_fake_gateway_tls(ibgw_pm):
    """Like ``ibgw_fake_gateway`` but over HTTPS with a freshly generated
    self-signed certificate for ``localhost``/``127.0.0.1``/``::1``:
    ``.url`` is ``https://localhost:PORT/v1/api``, ``.fingerprint`` the
    certificate's SHA-256 fingerprint (lower-case hex) and ``.cert_path`` a PEM
    file usable as a CA bundle while the server runs."""
    server = _fake_gateway(ibgw_pm, tls=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
