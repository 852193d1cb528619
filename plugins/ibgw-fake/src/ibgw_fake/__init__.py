"""ibgw-fake: the offline backend of ibgw.

``ibgw --backend fake`` answers every read from fixtures (see
:mod:`ibgw_fake.router` for the fixture format) in a chosen scenario (see
:mod:`ibgw_fake.scenarios`); ``ibgw fake-gateway serve`` serves the same
fixtures as a real loopback HTTP(S) gateway that enforces IBKR's pacing.

This module holds only hook implementations and imports nothing heavy: the
transport, router and server are imported when they are used.
"""

from ibgw.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def ibgw_backend(config, pm):
    if getattr(config, "backend", None) != "fake":
        return None
    from .transport import FakeTransport

    return FakeTransport(
        pm,
        scenario=getattr(config, "scenario", None) or "connected",
        latency_ms=getattr(config, "latency_ms", None) or 0,
    )


@hookimpl
def ibgw_register_commands(cli):
    from .commands import register_commands

    register_commands(cli)
