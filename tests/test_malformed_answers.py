"""Malformed gateway answers are the gateway's fault, never the user's (issue 18,
finding 8): ``null`` accounts, a ``null`` symbol search, ``{}`` for an exchange rate
end as ``unavailable`` / ``malformed-response`` (exit 4) with a hint about the
gateway's answer; a well-formed empty list stays what it is (exit 2 for "no
accounts" / "unknown symbol").

Driven through the live backend against a hostile loopback gateway: a tiny
``http.server`` on 127.0.0.1 that answers the session calls healthily and the
path under test with the bad body."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HEALTHY = {
    "authenticated": True,
    "established": True,
    "competing": False,
    "connected": True,
    "message": "",
    "serverInfo": {"serverName": "H1", "serverVersion": "Build 10.46.1l"},
}


class Hostile:
    """``bodies`` maps a path below /v1/api to the raw body it answers (200,
    application/json). Everything else not listed answers ``[]``."""

    def __init__(self):
        self.bodies: dict[str, bytes] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                path = self.path.split("?", 1)[0]
                if path.startswith("/v1/api"):
                    path = path[len("/v1/api") :]
                outer.requests.append(path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if path in outer.bodies:
                    body = outer.bodies[path]
                elif path == "/iserver/auth/status":
                    body = json.dumps(HEALTHY).encode()
                elif path == "/tickle":
                    body = json.dumps({"iserver": {"authStatus": HEALTHY}}).encode()
                elif path == "/iserver/accounts":
                    body = json.dumps({"accounts": ["DU1111111"]}).encode()
                else:
                    body = b"[]"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(ibgw_pm):
    import ibgw_fx
    import ibgw_greeks
    import ibgw_options

    for plugin in (ibgw_fx, ibgw_options, ibgw_greeks):
        if not any(p is plugin for p in ibgw_pm.get_plugins()):
            ibgw_pm.register(plugin)
    with Hostile() as server:
        yield server


def _run(ibgw_cli, hostile, *args):
    result = ibgw_cli("--backend", "live", "--gateway-url", hostile.url, "-o", "json", *args)
    assert "Traceback" not in result.output + result.stderr
    return result


def _error(result) -> dict:
    return json.loads(result.stderr or result.stdout)["error"]


def _blames_the_gateway(result):
    assert result.exit_code == 4, result.output + result.stderr
    err = _error(result)
    assert err["state"] == "unavailable" and err["reason"] == "malformed-response"
    assert "answer" in err["hint"]
    assert "Start the Client Portal Gateway" not in err["hint"]


@pytest.mark.parametrize("body", [b"null", b"{}", b'{"accounts": []}', b'"DU1"'])
def test_malformed_portfolio_accounts_is_unavailable(ibgw_cli, hostile, body):
    hostile.bodies["/portfolio/accounts"] = body
    _blames_the_gateway(_run(ibgw_cli, hostile, "accounts", "summary"))
    _blames_the_gateway(_run(ibgw_cli, hostile, "accounts", "list"))


def test_empty_portfolio_accounts_is_still_no_accounts(ibgw_cli, hostile):
    hostile.bodies["/portfolio/accounts"] = b"[]"
    result = _run(ibgw_cli, hostile, "accounts", "summary")
    assert result.exit_code == 2 and _error(result)["reason"] == "no-accounts"


@pytest.mark.parametrize("body", [b"null", b'{"error": "x"}', b"42"])
def test_malformed_symbol_search_is_unavailable(ibgw_cli, hostile, body):
    hostile.bodies["/iserver/secdef/search"] = body
    _blames_the_gateway(_run(ibgw_cli, hostile, "options", "expirations", "SPY"))


def test_search_entry_without_a_conid_is_unavailable(ibgw_cli, hostile):
    hostile.bodies["/iserver/secdef/search"] = b'[{"symbol": "SPY", "conid": null}]'
    _blames_the_gateway(_run(ibgw_cli, hostile, "options", "expirations", "SPY"))


def test_empty_symbol_search_is_still_unknown_symbol(ibgw_cli, hostile):
    hostile.bodies["/iserver/secdef/search"] = b"[]"
    result = _run(ibgw_cli, hostile, "options", "expirations", "ZZZZ")
    assert result.exit_code == 2 and _error(result)["reason"] == "unknown-symbol"
    # the STK search, then the index (IND) retry
    assert hostile.requests.count("/iserver/secdef/search") == 2


@pytest.mark.parametrize("body", [b"{}", b"null", b'{"rate": null}', b"[]"])
def test_malformed_exchange_rate_is_unavailable(ibgw_cli, hostile, body):
    hostile.bodies["/iserver/exchangerate"] = body
    result = _run(ibgw_cli, hostile, "fx", "rate", "USD", "EUR")
    _blames_the_gateway(result)
    assert "currency codes" not in _error(result)["hint"]


def test_unparsable_answer_hint_is_about_the_answer(ibgw_cli, hostile):
    hostile.bodies["/portfolio/accounts"] = b'[{"accountId": "DU1'  # truncated JSON
    _blames_the_gateway(_run(ibgw_cli, hostile, "accounts", "list"))


SPY_SEARCH = json.dumps(
    [
        {
            "conid": "756733",
            "symbol": "SPY",
            "description": "ARCA",
            "sections": [{"secType": "OPT", "months": "APR26", "exchange": "SMART"}],
        }
    ]
).encode()


def test_option_info_without_contract_ids_is_unavailable(ibgw_cli, hostile):
    hostile.bodies["/iserver/secdef/search"] = SPY_SEARCH
    hostile.bodies["/iserver/secdef/strikes"] = b'{"call": [500], "put": [500]}'
    hostile.bodies["/iserver/secdef/info"] = b'[{"conid": null, "symbol": "SPY"}]'
    args = ("greeks", "SPY", "--month", "APR26", "--strike", "500", "--right", "C")
    _blames_the_gateway(_run(ibgw_cli, hostile, *args))


def test_no_option_contracts_from_a_well_formed_answer_is_still_a_usage_error(ibgw_cli, hostile):
    hostile.bodies["/iserver/secdef/search"] = SPY_SEARCH
    hostile.bodies["/iserver/secdef/strikes"] = b'{"call": [500], "put": [500]}'
    hostile.bodies["/iserver/secdef/info"] = b"[]"
    args = ("greeks", "SPY", "--month", "APR26", "--strike", "500", "--right", "C")
    result = _run(ibgw_cli, hostile, *args)
    assert result.exit_code == 2 and _error(result)["reason"] == "no-contracts"
