"""Every gateway fault ends in one of the three session states with a stable reason,
through the real live transport (requests intercepted by ``responses``)."""

import json

import pytest
import requests
from responses import matchers

BASE = "https://localhost:5000/v1/api"
HEALTHY = {
    "authenticated": True,
    "established": True,
    "competing": False,
    "connected": True,
    "message": "",
    "MAC": "00:11:22:33:44:55",
    "serverInfo": {"serverName": "GW1", "serverVersion": "Build 10.44.1d, Mar 3, 2026"},
    "hardware_info": "abcd|00:11:22:33:44:55",
    "fail": "",
}


def status(ibgw_cli):
    result = ibgw_cli("--backend", "live", "-o", "json", "status")
    assert "Traceback" not in result.output + result.stderr
    return result


# (kwargs for responses.add on POST /iserver/auth/status, exit code, state, reason)
FAULTS = [
    ({"json": HEALTHY}, 0, "usable", "ok"),
    ({"json": {k: v for k, v in HEALTHY.items() if k != "established"}}, 0, "usable", "ok"),
    ({"json": dict(HEALTHY, established=False)}, 4, "unavailable", "not-established"),
    (
        {"json": {"authenticated": False, "competing": False, "connected": False, "MAC": "x"}},
        3,
        "manual_action_required",
        "session-expired",
    ),
    (
        {"json": {"authenticated": False, "competing": False, "connected": True, "fail": "x"}},
        3,
        "manual_action_required",
        "not-authenticated",
    ),
    (
        {"json": {"authenticated": True, "competing": True, "connected": True}},
        3,
        "manual_action_required",
        "competing-session",
    ),
    ({"json": {"error": "no session"}}, 3, "manual_action_required", "no-session"),
    ({"status": 401, "body": ""}, 3, "manual_action_required", "not-logged-in"),
    ({"status": 403, "body": ""}, 3, "manual_action_required", "forbidden"),
    (
        {"status": 404, "body": "Access Denied", "content_type": "text/plain"},
        3,
        "manual_action_required",
        "ip-not-allowed",
    ),
    (
        {"status": 400, "json": {"error": "Bad Request: no bridge", "statusCode": 400}},
        3,
        "manual_action_required",
        "no-bridge",
    ),
    (
        {"status": 400, "json": {"error": "Init session first", "statusCode": 400}},
        3,
        "manual_action_required",
        "no-bridge",
    ),
    (
        {"status": 200, "body": "<html><title>Login</title></html>", "content_type": "text/html"},
        3,
        "manual_action_required",
        "login-page",
    ),
    (
        {"status": 200, "body": "  <!DOCTYPE html><html>", "content_type": "application/json"},
        3,
        "manual_action_required",
        "login-page",
    ),
    ({"status": 429, "body": "Too Many Requests"}, 4, "unavailable", "rate-limited"),
    ({"status": 500, "json": {"error": "x"}}, 4, "unavailable", "gateway-error"),
    (
        {"status": 503, "json": {"error": "Service Unavailable", "statusCode": 503}},
        4,
        "unavailable",
        "gateway-error",
    ),
    (
        {"status": 302, "headers": {"Location": "https://evil.example.com/logout"}, "body": ""},
        4,
        "unavailable",
        "redirect-refused",
    ),
    ({"status": 418, "body": ""}, 4, "unavailable", "unexpected-status"),
    (
        {"body": '{"authenticated": tr', "content_type": "application/json"},
        4,
        "unavailable",
        "malformed-response",
    ),
    ({"body": '{"authenticated": NaN}'}, 4, "unavailable", "malformed-response"),
    ({"body": '{"authenticated": Infinity}'}, 4, "unavailable", "malformed-response"),
    (
        {"body": '{"authenticated": true, "authenticated": false}'},
        4,
        "unavailable",
        "malformed-response",
    ),
    ({"body": "[" * 5000 + "]" * 5000}, 4, "unavailable", "malformed-response"),
    ({"json": []}, 4, "unavailable", "malformed-response"),
    ({"json": {}}, 4, "unavailable", "malformed-response"),
    ({"json": {"authenticated": "yes", "connected": True}}, 4, "unavailable", "malformed-response"),
    ({"json": {"authenticated": None, "connected": None}}, 4, "unavailable", "malformed-response"),
    ({"body": b"\xff\xfe{}"}, 4, "unavailable", "malformed-response"),
    (
        {"body": requests.ConnectionError("refused https://localhost:5000/?token=SECRET")},
        4,
        "unavailable",
        "gateway-down",
    ),
    ({"body": requests.ConnectTimeout("timeout")}, 4, "unavailable", "timeout"),
    ({"body": requests.ReadTimeout("timeout")}, 4, "unavailable", "timeout"),
    ({"body": requests.exceptions.SSLError("bad cert")}, 4, "unavailable", "tls-error"),
]


@pytest.mark.parametrize(
    "kwargs,code,state,reason", FAULTS, ids=[f[3] + f"-{i}" for i, f in enumerate(FAULTS)]
)
def test_status_maps_every_fault(ibgw_responses, ibgw_cli, kwargs, code, state, reason):
    ibgw_responses.add("POST", f"{BASE}/iserver/auth/status", **kwargs)
    result = status(ibgw_cli)
    assert result.exit_code == code, result.output + result.stderr
    if code == 0:
        assert json.loads(result.stdout)["state"] == state
        return
    out = json.loads(result.stdout)
    assert (out["state"], out["reason"]) == (state, reason)
    assert "SECRET" not in result.output + result.stderr


def test_auth_status_is_posted_with_an_empty_json_body(ibgw_responses, ibgw_cli):
    ibgw_responses.add(
        "POST",
        f"{BASE}/iserver/auth/status",
        json=HEALTHY,
        match=[
            matchers.json_params_matcher({}),
            matchers.header_matcher({"Content-Type": "application/json"}),
        ],
    )
    assert status(ibgw_cli).exit_code == 0


def test_huge_body_is_refused(ibgw_responses, ibgw_cli):
    ibgw_responses.add(
        "POST", f"{BASE}/iserver/auth/status", body=b'{"x": "' + b"a" * (17 * 1024 * 1024) + b'"}'
    )
    result = status(ibgw_cli)
    assert result.exit_code == 4
    assert json.loads(result.stdout)["reason"] == "response-too-large"


def test_keepalive_success_and_expired(ibgw_responses, ibgw_cli):
    tickle = {
        "session": "0123456789abcdef0123456789abcdef",
        "ssoExpires": 460311,
        "collission": False,
        "userId": 123456789,
        "hmds": {"error": "no bridge"},
        "iserver": {"authStatus": HEALTHY},
    }
    ibgw_responses.add("POST", f"{BASE}/tickle", json=tickle)
    result = ibgw_cli("--backend", "live", "-o", "json", "keepalive")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "keepalive-success"
    assert "0123456789abcdef" not in result.output + result.stderr
    expired = dict(
        tickle,
        iserver={"authStatus": {"authenticated": False, "competing": False, "connected": True}},
    )
    ibgw_responses.replace("POST", f"{BASE}/tickle", json=expired)
    result = ibgw_cli("--backend", "live", "-o", "json", "keepalive")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["outcome"] == "keepalive-expired"


ACCOUNTS = [
    {
        "id": "DU1111111",
        "accountId": "DU1111111",
        "accountAlias": None,
        "currency": "USD",
        "type": "DEMO",
        "tradingType": "STKNOPT",
        "businessType": "INDEPENDENT",
        "accountTitle": "Private Name",
        "displayName": "Private Name",
    }
]


def position(i):
    return {
        "acctId": "DU1111111",
        "conid": 1000 + i,
        "contractDesc": f"SYM{i}",
        "position": float(i),
        "mktPrice": "1.5",
        "mktValue": 1.5 * i,
        "currency": "USD",
        "avgCost": 1.0,
        "unrealizedPnl": 0.5,
        "realizedPnl": 0.0,
        "assetClass": "STK",
        "strike": "0",
        "putOrCall": None,
        "expiry": None,
        "pageSize": 100,
    }


def test_accounts_endpoints_are_pinned(ibgw_responses, ibgw_cli):
    r = ibgw_responses
    r.add("GET", f"{BASE}/portfolio/accounts", json=ACCOUNTS)
    for page, count in ((0, 100), (1, 100), (2, 7)):
        r.add(
            "GET",
            f"{BASE}/portfolio/DU1111111/positions/{page}",
            json=[position(page * 100 + i) for i in range(count)],
        )
    result = ibgw_cli("--backend", "live", "accounts", "positions", "-o", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 207 and rows[-1]["conid"] == 1206
    assert rows[0]["mkt_price"] == 1.5
    listed = ibgw_cli("--backend", "live", "accounts", "-o", "json")
    assert json.loads(listed.stdout)[0]["account"] == "DU1111111"
    assert "Private Name" not in listed.stdout  # titles identify people; not in the allow-list
    calls = [(c.request.method, c.request.path_url) for c in r.calls]
    assert ("GET", "/v1/api/portfolio/DU1111111/positions/2") in calls
    assert ("GET", "/v1/api/portfolio/DU1111111/positions/3") not in calls


def test_summary_and_ledger(ibgw_responses, ibgw_cli):
    r = ibgw_responses
    r.add("GET", f"{BASE}/portfolio/accounts", json=ACCOUNTS)
    r.add(
        "GET",
        f"{BASE}/portfolio/DU1111111/summary",
        json={
            "netliquidation": {
                "amount": 1005165.5,
                "currency": "USD",
                "isNull": False,
                "timestamp": 1,
                "value": None,
            },
            "accountcode": {
                "amount": 0.0,
                "currency": None,
                "isNull": False,
                "timestamp": 1,
                "value": "DU1111111",
            },
        },
    )
    r.add(
        "GET",
        f"{BASE}/portfolio/DU1111111/ledger",
        json={
            "USD": {"cashbalance": 971869.6, "settledcash": 971869.6, "exchangerate": 1},
            "BASE": {"cashbalance": 971869.6, "exchangerate": 1},
        },
    )
    summary = ibgw_cli("--backend", "live", "accounts", "summary", "-o", "json")
    assert json.loads(summary.stdout) == [
        {"metric": "netliquidation", "amount": 1005165.5, "currency": "USD", "value": None}
    ]
    ledger = ibgw_cli("--backend", "live", "accounts", "ledger", "-o", "csv")
    assert ledger.exit_code == 0 and ledger.stdout.splitlines()[1].startswith("USD,971869.6")
    unknown = ibgw_cli("--backend", "live", "accounts", "summary", "--account", "U999")
    assert unknown.exit_code == 2 and "not one of this login's accounts" in unknown.stderr


def test_symbol_search_pins_query_and_prefers_us_listing(ibgw_pm, ibgw_responses, ibgw_cli):
    from ibgw import Param, Read, hookimpl
    from ibgw.endpoints import SECDEF_SEARCH

    class P:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="sym",
                    name="find",
                    summary="x",
                    default=True,
                    single=True,
                    params=[
                        Param("symbol", "ticker", argument=True, required=True),
                        Param("exchange", "exchange"),
                    ],
                    endpoints=[SECDEF_SEARCH],
                    columns=["conid", "exchange", "months"],
                    fetch=lambda ctx, symbol, exchange=None: ctx.resolve_symbol(
                        symbol, exchange=exchange
                    ),
                )
            )

    ibgw_pm.register(P)
    ibgw_responses.add(
        "GET",
        f"{BASE}/iserver/secdef/search",
        match=[matchers.query_param_matcher({"symbol": "SPY", "secType": "STK"})],
        json=[
            {"conid": "38709152", "symbol": "SPY", "description": "MEXI", "sections": []},
            {
                "conid": "756733",
                "symbol": "SPY",
                "description": "ARCA",
                "companyName": "SPDR S&P 500 ETF TRUST",
                "sections": [{"secType": "OPT", "months": "APR26;MAY26", "exchange": "SMART;AMEX"}],
            },
        ],
    )
    result = ibgw_cli("--backend", "live", "sym", "spy", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "conid": 756733,
        "exchange": "ARCA",
        "months": ["APR26", "MAY26"],
    }
    mexi = ibgw_cli("--backend", "live", "sym", "SPY", "--exchange", "mexi", "-o", "json")
    assert json.loads(mexi.stdout)["conid"] == 38709152
    bad = ibgw_cli("--backend", "live", "sym", "SPY", "--exchange", "TSE")
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("ibgw: SPY is not listed on TSE")
    weird = ibgw_cli("--backend", "live", "sym", "../logout")
    assert weird.exit_code == 2 and "symbol: expected a ticker" in weird.stderr


def test_prerequisite_is_called_once_across_parallel_calls(ibgw_pm, ibgw_responses, ibgw_cli):
    """IBKR wants /iserver/accounts before market data; a read with several calls in
    flight must make it once, not once per thread (each spends pacing budget)."""
    from ibgw import Param, Read, hookimpl
    from ibgw.endpoints import SNAPSHOT

    class P:
        @hookimpl
        def ibgw_register_reads(register):
            def fetch(ctx, n):
                conids = [str(1000 + i) for i in range(n)]
                ctx.parallel(
                    lambda c: ctx.call(SNAPSHOT, query={"conids": c, "fields": "31"}),
                    conids,
                    workers=4,
                )
                return [{"calls": n}]

            register(
                Read(
                    category="par",
                    name="snap",
                    summary="x",
                    default=True,
                    params=[Param("n", "how many", type="int")],
                    endpoints=[SNAPSHOT],
                    fetch=fetch,
                    columns=["calls"],
                )
            )

    ibgw_pm.register(P)
    ibgw_responses.add("GET", f"{BASE}/iserver/accounts", json={"accounts": ["DU1111111"]})
    ibgw_responses.add("GET", f"{BASE}/iserver/marketdata/snapshot", json=[])
    result = ibgw_cli("--backend", "live", "par", "--n", "8")
    assert result.exit_code == 0, result.stderr
    paths = [c.request.path_url.split("?")[0] for c in ibgw_responses.calls]
    assert paths.count("/v1/api/iserver/accounts") == 1
    assert paths.count("/v1/api/iserver/marketdata/snapshot") == 8


def test_published_limits_apply_whatever_a_plugin_declares(
    ibgw_pm, ibgw_responses, ibgw_cli, monkeypatch
):
    """IBKR allows one /pa/transactions call per 15 minutes: a plugin that declares the
    endpoint with only the global class is still paced by the published limit."""
    import time

    from ibgw import Endpoint, Read, hookimpl
    from ibgw.pacing import Pacer

    careless = Endpoint(
        "POST", "/pa/transactions", params={"acctIds": r"[A-Z0-9]{1,16}"}, pacing="global"
    )
    seen = []
    monkeypatch.setattr(
        Pacer,
        "acquire",
        lambda self, classes, deadline: seen.append(sorted(classes)) or time.time(),
    )

    class P:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="careless",
                    name="tx",
                    summary="x",
                    default=True,
                    endpoints=[careless],
                    fetch=lambda ctx: [ctx.call(careless, body={"acctIds": ["DU1"]})],
                )
            )

    ibgw_pm.register(P)
    ibgw_responses.add("POST", f"{BASE}/pa/transactions", json={"transactions": []})
    result = ibgw_cli("--backend", "live", "careless")
    assert result.exit_code == 0, result.stderr
    assert seen == [["global", "pa"]]
