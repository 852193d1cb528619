"""The canonical core fixtures (``fixtures/*.json``, installed as ``ibgw.fixtures``):
shapes as in the endpoint reference, pagination, and no real session material."""

import json
import re
from importlib.resources import files

import pytest

pytest.importorskip("ibgw_fake", reason="the fake backend (plugins/ibgw-fake) is not installed")

from ibgw_fake.router import FakeRequest, FakeRouter  # noqa: E402

from ibgw.default_plugins import core_fixtures  # noqa: E402

SECRET_KEYS = {
    "session", "sessionId", "MAC", "hardware_info", "userId", "USER_ID", "USER_NAME",
    "CREDENTIAL", "IP", "PAPER_USER_NAME",
}  # fmt: skip
PLACEHOLDER = re.compile(r"\{\{secret:[A-Za-z0-9_.-]+\}\}")
PAPER, SECOND = "DU1234567", "U7654321"


@pytest.fixture(scope="module")
def router():
    return FakeRouter(None)


def get(router, path, **query):
    answer = router.handle(FakeRequest("GET", path, query=query))
    assert answer.status == 200, (path, answer.status)
    return json.loads(answer.body)


def fixture_files():
    import ibgw_fake

    core = [e for e in files("ibgw.fixtures").iterdir() if e.name.endswith(".json")]
    own = [e for e in (files(ibgw_fake) / "fixtures").iterdir() if e.name.endswith(".json")]
    return core + own


def test_core_plugin_registers_every_json_fixture():
    seen = []
    core_fixtures.ibgw_fake_fixtures(register=seen.append)
    assert sorted(e.name for e in seen) == [
        "accounts.json",
        "contracts.json",
        "positions.json",
        "session.json",
    ]


def test_core_fixtures_load_without_errors(router):
    assert router.errors == []
    assert len(router.routes) >= 30


def walk(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, key)
    else:
        yield key, value


@pytest.mark.parametrize("entry", fixture_files(), ids=lambda e: e.name)
def test_fixtures_hold_no_session_material(entry):
    text = entry.read_text(encoding="utf-8")
    data = json.loads(text)
    slots = 0
    for key, value in walk(data):
        if key in SECRET_KEYS:
            assert isinstance(value, str) and PLACEHOLDER.fullmatch(value), (key, value)
            slots += 1
    stripped = PLACEHOLDER.sub("", text)
    assert not re.search(r"\b[0-9a-fA-F]{32}\b", stripped)  # no session ids / cookies
    assert not re.search(r"\b([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}\b", stripped)  # no MACs
    assert "Set-Cookie" not in stripped and "JSESSIONID" not in stripped
    if entry.name in ("session.json", "accounts.json", "scenarios.json"):
        assert slots > 0


def test_positions_three_full_pages_then_empty(router):
    pages = [get(router, f"/portfolio/{PAPER}/positions/{n}") for n in range(5)]
    assert [len(p) for p in pages] == [100, 100, 37, 0, 0]
    assert get(router, f"/portfolio/{PAPER}/positions/99") == []
    items = [item for page in pages for item in page]
    assert len({i["conid"] for i in items}) == 237
    assert {i["acctId"] for i in items} == {PAPER}
    assert all(i["pageSize"] == 100 for i in items)
    second = [get(router, f"/portfolio/{SECOND}/positions/{n}") for n in range(3)]
    assert [len(p) for p in second] == [5, 0, 0]


def test_position_items_have_the_reference_shape(router):
    reference = {
        "acctId", "conid", "contractDesc", "position", "mktPrice", "mktValue", "currency", "avgCost",
        "avgPrice", "realizedPnl", "unrealizedPnl", "exchs", "expiry", "putOrCall", "multiplier", "strike",
        "exerciseStyle", "conExchMap", "assetClass", "undConid", "model", "listingExchange", "countryCode",
        "name", "lastTradingDay", "ticker", "undSym", "fullName", "isUS", "isEventContract", "pageSize",
    }  # fmt: skip
    items = get(router, f"/portfolio/{PAPER}/positions/0") + get(
        router, f"/portfolio/{PAPER}/positions/2"
    )
    for item in items:
        assert reference <= set(item), reference - set(item)
        assert item["assetClass"] in ("STK", "OPT")
        if item["assetClass"] == "OPT":
            assert item["putOrCall"] in ("C", "P") and re.fullmatch(r"\d{8}", item["expiry"])
            assert isinstance(item["strike"], str) and item["multiplier"] == 100.0
        else:
            assert item["expiry"] is None and item["putOrCall"] is None
    assert {i["assetClass"] for i in items} == {"STK", "OPT"}


def test_accounts(router):
    accounts = get(router, "/portfolio/accounts")
    assert [a["accountId"] for a in accounts] == [PAPER, SECOND]
    for account in accounts:
        for key in ("id", "accountId", "accountVan", "accountTitle", "displayName", "currency", "type",
                    "tradingType", "businessType", "faclient", "acctCustType", "parent", "desc"):  # fmt: skip
            assert key in account
    assert get(router, "/portfolio/subaccounts") == accounts
    assert get(router, f"/portfolio/{PAPER}/meta") == accounts[0]
    assert get(router, f"/portfolio/{SECOND}/meta") == accounts[1]
    iserver = get(router, "/iserver/accounts")
    assert iserver["accounts"] == [PAPER, SECOND]
    assert iserver["selectedAccount"] == PAPER
    assert set(iserver["acctProps"]) == set(iserver["aliases"]) == {PAPER, SECOND}
    for key in (
        "allowFeatures",
        "chartPeriods",
        "groups",
        "profiles",
        "serverInfo",
        "sessionId",
        "isFT",
        "isPaper",
    ):
        assert key in iserver


@pytest.mark.parametrize("account", [PAPER, SECOND])
def test_summary_and_ledger(router, account):
    summary = get(router, f"/portfolio/{account}/summary")
    for key in ("accountcode", "netliquidation", "buyingpower", "totalcashvalue", "availablefunds",
                "excessliquidity", "initmarginreq", "maintmarginreq", "cushion"):  # fmt: skip
        assert set(summary[key]) == {
            "amount",
            "currency",
            "isNull",
            "timestamp",
            "value",
            "severity",
        }
        assert isinstance(summary[key]["timestamp"], int)
    assert summary["accountcode"]["value"] == account
    ledger = get(router, f"/portfolio/{account}/ledger")
    assert "BASE" in ledger and "USD" in ledger
    for currency, entry in ledger.items():
        assert entry["acctcode"] == account and entry["currency"] == currency == entry["secondkey"]
        assert entry["key"] == "LedgerList"
        for key in (
            "cashbalance",
            "netliquidationvalue",
            "stockmarketvalue",
            "unrealizedpnl",
            "exchangerate",
        ):
            assert isinstance(entry[key], int | float)


def test_secdef_search_matches_the_recorded_shape(router):
    spy = get(router, "/iserver/secdef/search", symbol="SPY")
    assert spy[0] == {
        "conid": "756733", "companyHeader": "SPDR S&P 500 ETF TRUST - ARCA",
        "companyName": "SPDR S&P 500 ETF TRUST", "symbol": "SPY", "description": "ARCA", "restricted": None,
        "sections": [{"secType": "STK"}, {"secType": "OPT", "months": "APR26;MAY26;JUN26", "exchange": "SMART;AMEX;CBOE"},
                     {"secType": "CFD", "exchange": "SMART", "conid": "134770228"}, {"secType": "BAG"}],
    }  # fmt: skip
    aapl = get(router, "/iserver/secdef/search", symbol="AAPL")
    for item in spy + aapl:
        assert set(item) == {
            "conid",
            "companyHeader",
            "companyName",
            "symbol",
            "description",
            "restricted",
            "sections",
        }
        assert isinstance(item["conid"], str)
    assert aapl[0]["conid"] == "265598"
    post = FakeRequest("POST", "/iserver/secdef/search", body={"symbol": "AAPL", "secType": "STK"})
    assert json.loads(router.handle(post).body) == aapl


def test_trsrv_stocks(router):
    aapl = get(router, "/trsrv/stocks", symbols="AAPL")
    assert list(aapl) == ["AAPL"]
    us = [c for entry in aapl["AAPL"] for c in entry["contracts"] if c["isUS"]]
    assert us == [{"conid": 265598, "exchange": "NASDAQ", "isUS": True}]
    assert set(get(router, "/trsrv/stocks", symbols="AAPL,SPY")) == {"AAPL", "SPY"}


def test_session_answers(router):
    status = json.loads(router.handle(FakeRequest("POST", "/iserver/auth/status", body={})).body)
    assert set(status) == {"authenticated", "established", "competing", "connected", "message", "MAC",
                           "serverInfo", "hardware_info", "fail"}  # fmt: skip
    tickle = json.loads(router.handle(FakeRequest("POST", "/tickle", body={})).body)
    assert set(tickle) == {"session", "ssoExpires", "collission", "userId", "hmds", "iserver"}
    sso = get(router, "/sso/validate")
    assert sso["RESULT"] is True and sso["LOGIN_TYPE"] == 2 and isinstance(sso["AUTH_TIME"], int)
