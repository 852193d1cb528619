"""A brokerage session can be replaced without any read failing (IBKR's nightly
reset, the user logging in again). A long-running process (the MCP server) sees it
where it checks the status: not authenticated, then usable again, or a different
``/tickle`` session. Then what the old session was primed with, the symbol-search
cache among it, is dropped, so the next read searches again (IBKR requires the search
in the current session before strikes, info and derivative snapshots)."""

from __future__ import annotations

import pytest


def _searches(server) -> int:
    return sum(1 for r in server.requests if r[1].endswith("/iserver/secdef/search"))


@pytest.fixture
def mcp(ibgw_pm, ibgw_fake_gateway):
    import ibgw_fake.market
    import ibgw_options

    from ibgw.app import App
    from ibgw.mcp_server import build

    for plugin in (ibgw_options, ibgw_fake.market):
        if not any(p is plugin for p in ibgw_pm.get_plugins()):
            ibgw_pm.register(plugin)
    app = App(ibgw_pm, {"backend": "live", "gateway_url": ibgw_fake_gateway.url})
    app.pacer.acquire = lambda classes, deadline: None  # about caching, not pacing
    server = build(app)

    def call(name, **arguments):
        result = server._call_sync(name, arguments)
        assert not result.is_error, result.content
        return result

    call.server = ibgw_fake_gateway
    return call


def _state(result) -> str:
    return result.structured_content["state"]


def test_a_status_change_mid_run_drops_the_symbol_cache(mcp):
    server = mcp.server
    mcp("options_expirations", symbol="SPY")
    mcp("options_expirations", symbol="SPY")
    assert _searches(server) == 1  # cached within one session
    assert _state(mcp("session_status")) == "usable"
    mcp("options_expirations", symbol="SPY")
    assert _searches(server) == 1  # a usable status that stays usable changes nothing

    # the nightly reset: the gateway says not authenticated (HTTP 200, no read fails) ...
    server.scenario = "keepalive-expired"
    assert _state(mcp("session_status")) == "manual_action_required"
    # ... and the user logs in again: a new session
    server.scenario = "connected"
    assert _state(mcp("session_status")) == "usable"
    mcp("options_expirations", symbol="SPY")
    assert _searches(server) == 2  # searched again in the new session
    mcp("options_expirations", symbol="SPY")
    assert _searches(server) == 2


def test_a_new_tickle_session_drops_the_symbol_cache(ibgw_pm, ibgw_responses):
    """Keepalive sees a different /tickle session while usable: a new session."""
    import ibgw_options

    from ibgw.app import App
    from ibgw.runner import run_read
    from ibgw.status import keepalive_once

    ibgw_pm.register(ibgw_options)
    base = ibgw_responses.base
    search = ibgw_responses.add(
        "GET",
        f"{base}/iserver/secdef/search",
        json=[
            {
                "conid": "756733",
                "symbol": "SPY",
                "description": "ARCA",
                "sections": [{"secType": "OPT", "months": "APR26", "exchange": "SMART"}],
            }
        ],
    )
    auth = {"authenticated": True, "established": True, "competing": False, "connected": True}

    def tickle(session):
        return {"session": session, "iserver": {"authStatus": auth}}

    app = App(ibgw_pm, {"backend": "live"})
    read = next(r for r in app.reads if r.key == "options expirations")

    ibgw_responses.add("POST", f"{base}/tickle", json=tickle("a" * 32))
    assert keepalive_once(app).outcome == "keepalive-success"
    run_read(app, read, {"symbol": "SPY"})
    assert keepalive_once(app).outcome == "keepalive-success"  # the same session
    run_read(app, read, {"symbol": "SPY"})
    assert search.call_count == 1

    ibgw_responses.replace("POST", f"{base}/tickle", json=tickle("b" * 32))
    assert keepalive_once(app).outcome == "keepalive-success"  # a new session
    run_read(app, read, {"symbol": "SPY"})
    assert search.call_count == 2
