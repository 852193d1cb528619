"""``ibgw fake-gateway serve`` and ``ibgw fake-gateway scenarios``."""

from __future__ import annotations

import errno
import sys

import click

from ibgw.errors import UsageError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _app_state() -> tuple[object, dict]:
    """``(plugin manager, root flags)`` of the running ibgw command."""
    try:
        from ibgw.app import current_app

        app = current_app()
        return app.pm, dict(app.flags)
    except Exception:  # run outside create_cli (a bare click group in tests)
        from ibgw.plugins import get_plugin_manager

        return get_plugin_manager(), {}


def _wait_for_signal(announce=None) -> None:
    """Block until Ctrl-C or SIGTERM. ``announce()`` runs once the SIGTERM handler is
    in place: whoever reads the announcement may stop the server at once."""
    import signal  # here, not at the top: every 'ibgw' start imports this module
    import threading

    done = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    try:
        if announce is not None:
            announce()
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@click.group("fake-gateway")
def fake_gateway():
    """A fake Client Portal Gateway on a loopback port, for offline clients and tests."""


@fake_gateway.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    type=click.Choice(LOOPBACK),
    help="Loopback address to listen on.",
)
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option(
    "--scenario", default=None, metavar="NAME", help="Scenario to start in [default: connected]."
)
@click.option(
    "--latency-ms",
    default=0,
    show_default=True,
    type=click.IntRange(0, 60_000),
    help="Delay added to every answer.",
)
@click.option(
    "--tls/--no-tls",
    default=True,
    show_default=True,
    help="HTTPS (like the real gateway) or plain HTTP.",
)
@click.option(
    "--cert",
    default=None,
    metavar="PEM",
    type=click.Path(exists=True, dir_okay=False),
    help="Certificate file (default: a fresh self-signed one).",
)
@click.option(
    "--key",
    default=None,
    metavar="PEM",
    type=click.Path(exists=True, dir_okay=False),
    help="Private key of --cert.",
)
@click.option(
    "--pacing/--no-pacing",
    default=True,
    show_default=True,
    help="Enforce IBKR's pacing limits (429 beyond them).",
)
def serve(host, port, scenario, latency_ms, tls, cert, key, pacing):
    """Serve the fake gateway until Ctrl-C or SIGTERM.

    Prints one line with the API root URL (and, with TLS, the certificate's
    SHA-256 fingerprint to pin), then answers every fixture of the installed
    plugins under /v1/api in the chosen scenario.
    """
    from ibgw.output import emit

    from .server import FakeGatewayServer

    pm, flags = _app_state()
    scenario = scenario or flags.get("scenario") or "connected"
    server = FakeGatewayServer(
        pm, scenario=scenario, latency_ms=latency_ms, tls=tls, port=port, host=host,
        cert=cert, key=key, pacing=pacing,
    )  # fmt: skip
    try:
        server.start()
    except OSError as exc:
        reason = "address in use" if exc.errno == errno.EADDRINUSE else "cannot bind"
        raise UsageError(f"fake-gateway: cannot listen on {host} port {port} ({reason})") from None

    def announce():
        emit(f"ibgw fake gateway listening on {server.url}\n")
        if server.fingerprint:
            emit(f"tls fingerprint sha256 {server.fingerprint}\n")
        sys.stdout.flush()

    try:
        _wait_for_signal(announce)
    finally:
        server.stop()


@fake_gateway.command("scenarios")
def scenarios():
    """List the fake backend's scenarios."""
    from ibgw.output import emit

    from .router import FakeRouter
    from .scenarios import describe

    pm, _flags = _app_state()
    items = describe(FakeRouter(pm))
    width = max(len(n) for n in items)
    for name, text in items.items():
        emit(f"{name:<{width}}  {text}\n")


def register_commands(cli) -> None:
    cli.add_command(fake_gateway)
