"""pytest fixtures that need the fake backend, for testing ibgw and ibgw plugins offline.

Installed with ``ibgw-fake`` as the ``pytest11`` entry point ``ibgw-fake``, so any
test session of an environment holding ibgw-fake gets them without a ``conftest.py``
(ibgw's own pytest plugin, :mod:`ibgw.testing`, adds ``ibgw_env``,
``ibgw_responses`` and ``ibgw_subprocess_env``):

``ibgw_pm``
    a fresh plugin manager with the built-in plugins and the fake backend;
    register your own plugin with ``ibgw_pm.register(my_module)``.
``ibgw_cli``
    run the ``ibgw`` CLI built from ``ibgw_pm`` against the fake backend.
``ibgw_fake_gateway`` / ``ibgw_fake_gateway_tls``
    a real loopback HTTP / HTTPS fake Client Portal Gateway.

A plugin test then reads::

    import my_plugin

    def test_my_read(ibgw_pm, ibgw_cli):
        ibgw_pm.register(my_plugin)
        result = ibgw_cli("fx", "rate", "USD", "EUR", "-o", "json")
        assert result.exit_code == 0, result.output

This module imports only the standard library and pytest at top level: it is
loaded into every pytest run of an environment where ibgw-fake is installed.
"""

from __future__ import annotations

import pytest

FIXTURES = ("ibgw_pm", "ibgw_cli", "ibgw_fake_gateway", "ibgw_fake_gateway_tls")


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
    import ibgw_fake
    from ibgw.plugins import PluginInfo, get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    if not pm.has_plugin("fake"):
        info = PluginInfo(name="fake", distribution="ibgw-fake", version=ibgw_fake.__version__)
        pm.register_checked(ibgw_fake, "fake", info)
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


def _served(pm, tls: bool):
    from .server import FakeGatewayServer

    server = FakeGatewayServer(pm, tls=tls, port=0)
    server.start()
    return server


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
    server = _served(ibgw_pm, tls=False)
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
    server = _served(ibgw_pm, tls=True)
    try:
        yield server
    finally:
        server.stop()
