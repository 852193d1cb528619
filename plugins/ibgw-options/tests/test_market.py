"""The fake backend's simulated option market (ibgw_fake.market), directly and through the router."""

import json
import time

import ibgw_fake.market as market
import pytest
from ibgw_fake.router import FakeRequest, FakeRouter

FIELDS = "31,84,86,7635,7308,7309,7310,7311,7633,7638,7089,6509,55,6070"


@pytest.fixture
def router(ibgw_pm):
    if not any(p is market for p in ibgw_pm.get_plugins()):
        ibgw_pm.register(market, name="fake-market-test")
    return FakeRouter(ibgw_pm)


def get(router, path, scenario="connected", **query):
    from ibgw_fake.scenarios import chain

    request = FakeRequest("GET", path, {k: str(v) for k, v in query.items()}, scenario=scenario)
    answer = router.route(request, chain(scenario, router))
    return answer.status, json.loads(answer.body)


def test_strike_lists():
    spy = market.strikes("SPY", "APR26")
    assert len(spy) == 100 and spy[0] == 250.0 and spy[-1] == 745.0
    assert all(b - a == 5.0 for a, b in zip(spy, spy[1:], strict=False))
    for month in ("MAY26", "JUN26"):
        assert len(market.strikes("SPY", month)) == 40
    for month in ("APR26", "MAY26", "JUN26", "JUL26", "SEP26", "DEC26"):
        aapl = market.strikes("AAPL", month)
        assert len(aapl) == 40 and 142.5 in aapl and aapl[0] <= 189.63 <= aapl[-1]
    assert market.strikes("SPY", "JUL26") == []
    assert market.strikes("IBM", "APR26") == []


def test_months_match_the_core_search_fixture():
    from pathlib import Path

    core = Path(__file__).resolve().parents[3] / "fixtures" / "contracts.json"
    routes = json.loads(core.read_text())["routes"]
    for symbol, und in market.UNDERLYINGS.items():
        answer = next(
            r["response"]
            for r in routes
            if r["path"] == "/iserver/secdef/search"
            and (r.get("query") or {}).get("symbol") == symbol
        )
        entry = next(e for e in answer if e["conid"] == str(und["conid"]))
        months = next(s["months"] for s in entry["sections"] if s["secType"] == "OPT")
        assert tuple(months.split(";")) == und["months"]


def test_expiries_are_third_fridays_and_a_spy_weekly():
    assert [d.isoformat() for d in market.expiries("SPY", "APR26")] == ["2026-04-10", "2026-04-17"]
    assert [d.isoformat() for d in market.expiries("SPY", "MAY26")] == ["2026-05-08", "2026-05-15"]
    assert [d.isoformat() for d in market.expiries("AAPL", "DEC26")] == ["2026-12-18"]
    for month in ("APR26", "JUN26", "SEP26"):
        (day,) = market.expiries("AAPL", month)
        assert day.weekday() == 4 and 15 <= day.day <= 21


def test_conids_are_stable_unique_nine_digits():
    # fixed values: the same on every machine and run (SHA-256, not hash())
    assert market.option_conid("SPY", "20260417", 500, "C") == 437673779
    assert (
        market.option_conid("AAPL", "20261218", 142.5, "P")
        == market.contracts("AAPL", "DEC26", 142.5, "P")[0]["conid"]
    )
    universe = market._build_universe()
    assert len(universe) == 720 + 480 + 240  # SPY, AAPL, SPX
    assert all(100_000_000 <= c <= 999_999_999 for c in universe)
    assert not set(universe) & {756733, 265598, 416904, *market.FX_PAIRS}


def test_info_record_shape():
    (weekly, monthly) = market.contracts("SPY", "APR26", 500, "P", exchange="CBOE")
    assert monthly == {
        "conid": market.option_conid("SPY", "20260417", 500, "P"),
        "symbol": "SPY",
        "secType": "OPT",
        "exchange": "CBOE",
        "listingExchange": None,
        "right": "P",
        "strike": 500.0,
        "currency": "USD",
        "cusip": None,
        "coupon": "No Coupon",
        "desc1": "SPY",
        "desc2": "APR 17 '26 500 Put",
        "maturityDate": "20260417",
        "multiplier": "100",
        "tradingClass": "SPY",
        "validExchanges": market.OPTION_EXCHANGES,
    }
    assert weekly["maturityDate"] == "20260410"
    assert market.contracts("SPY", "APR26", 502, "P") == []
    assert market.contracts("SPY", "APR26", 500, "X") == []


def test_greeks_follow_black_scholes_and_put_call_parity():
    call = market.fields_for(market.option_conid("SPY", "20260515", 500, "C"))
    put = market.fields_for(market.option_conid("SPY", "20260515", 500, "P"))
    delta_c, delta_p = float(call["7308"]), float(put["7308"])
    assert 0 < delta_c < 1 and -1 < delta_p < 0
    assert abs((delta_c - delta_p) - 0.998) < 0.01  # e^{-qT}
    assert call["7309"] == put["7309"] and call["7311"] == put["7311"]
    assert call["7633"].endswith("%") and call["7633"] == put["7633"]
    # parity: C - P = S e^{-qT} - K e^{-rT}
    t = (market.expiries("SPY", "MAY26")[1] - market.MARKET_DATE).days / 365
    spot, q = market.UNDERLYINGS["SPY"]["spot"], market.UNDERLYINGS["SPY"]["dividend_yield"]
    import math

    parity = spot * math.exp(-q * t) - 500 * math.exp(-market.RATE * t)
    assert abs(float(call["7635"]) - float(put["7635"]) - parity) < 0.02
    # deeper in the money calls have higher deltas; IV smile has a put skew
    deltas = [
        float(market.fields_for(market.option_conid("SPY", "20260515", k, "C"))["7308"])
        for k in (450, 500, 550)
    ]
    assert deltas == sorted(deltas, reverse=True)
    ivs = [
        float(market.fields_for(market.option_conid("SPY", "20260515", k, "C"))["7633"][:-1])
        for k in (400, 500)
    ]
    assert ivs[0] > ivs[1]
    assert "-0.000" not in json.dumps(market._fields_cache)


def test_formats_as_ibkr_sends_them():
    stock = market.fields_for(756733)
    assert stock["31"] == "501.42" and stock["88"] == "1,300" and stock["87"] == "45.2M"
    assert stock["7283"].endswith("%") and stock["7087"].endswith("%") and stock["6509"] == "RpB"
    for field in ("7280", "7281", "7051", "7671", "7672", "7674", "7675", "7676", "7677"):
        assert stock[field]
    fx = market.fields_for(12087792)
    assert fx["55"] == "EUR.USD" and fx["31"] == "1.08525" and fx["6070"] == "CASH"
    big = max(market._build_universe(), key=lambda c: int(market.fields_for(c)["7638"]))
    option = market.fields_for(big)
    # the contract's day volume: 87 abbreviated, 7762 whole; 7089 is the underlying's
    # option volume, the same on every option of SPY
    assert option["7762"].isdigit() and int(option["7762"]) > 0
    assert option["87"][-1] in "KM" or option["87"].isdigit()
    assert option["7089"] == market.UNDERLYINGS[market.option(big)["symbol"]]["option_volume"]
    index = market.fields_for(416904)
    assert index["55"] == "SPX" and index["6070"] == "IND"
    assert market.fields_for(5) is None and market.fields_for("x") is None


def test_routes_strikes_info(router):
    status, body = get(
        router,
        "/iserver/secdef/strikes",
        conid=756733,
        sectype="OPT",
        month="APR26",
        exchange="SMART",
    )
    assert status == 200 and len(body["call"]) == 100 and body["call"] == body["put"]
    assert get(router, "/iserver/secdef/strikes", conid=756733, sectype="OPT", month="AUG26") == (
        200,
        {"call": [], "put": []},
    )
    status, body = get(
        router,
        "/iserver/secdef/info",
        conid=265598,
        sectype="OPT",
        month="JUL26",
        strike="142.5",
        right="C",
        exchange="SMART",
    )
    assert status == 200 and [c["maturityDate"] for c in body] == ["20260717"]
    assert (
        get(
            router,
            "/iserver/secdef/info",
            conid=265598,
            sectype="OPT",
            month="JUL26",
            strike="143",
            right="C",
        )[1]
        == []
    )
    assert (
        get(
            router,
            "/iserver/secdef/info",
            conid=265598,
            sectype="OPT",
            month="JUL26",
            strike="142.5",
            right="X",
        )[0]
        == 400
    )


def test_snapshot_pre_flight_is_per_router(ibgw_pm, router):
    conid = market.option_conid("SPY", "20260417", 500, "C")
    first = get(router, "/iserver/marketdata/snapshot", conids=conid, fields=FIELDS)
    assert first == (200, [{"conid": conid, "conidEx": str(conid)}])
    status, (entry,) = get(router, "/iserver/marketdata/snapshot", conids=conid, fields=FIELDS)
    assert set(entry) - {"conid", "conidEx", "_updated", "server_id", "6119"} == set(
        FIELDS.split(",")
    )
    assert entry["7308"] == market.fields_for(conid)["7308"]
    other = FakeRouter(ibgw_pm)  # a new router (a new fake backend) opens the stream again
    assert get(other, "/iserver/marketdata/snapshot", conids=conid, fields="31")[1] == [
        {"conid": conid, "conidEx": str(conid)}
    ]
    assert "31" in get(router, "/iserver/marketdata/snapshot", conids=conid, fields="31")[1][0]


def test_snapshot_unknown_conid_and_bad_requests(router):
    for _ in range(3):
        assert get(router, "/iserver/marketdata/snapshot", conids=42, fields="31")[1] == [
            {"conid": 42, "conidEx": "42"}
        ]
    assert get(router, "/iserver/marketdata/snapshot", conids="", fields="31")[0] == 400
    assert get(router, "/iserver/marketdata/snapshot", conids="1,a", fields="31")[0] == 400
    many = ",".join(str(i) for i in range(1, 102))
    assert get(router, "/iserver/marketdata/snapshot", conids=many, fields="31")[0] == 400


def test_no_option_data_scenario(router):
    assert "no-option-data" in router.scenarios
    conid = market.option_conid("AAPL", "20260417", 190, "P")
    get(router, "/iserver/marketdata/snapshot", conids=f"{conid},265598", fields=FIELDS)
    _, (opt, stock) = get(
        router,
        "/iserver/marketdata/snapshot",
        "no-option-data",
        conids=f"{conid},265598",
        fields=FIELDS,
    )
    assert opt["6509"] == "N" and opt["55"] == "AAPL"
    assert not set(opt) & {"31", "84", "86", "7308", "7309", "7310", "7311", "7633"}
    assert stock["31"] == "189.63" and stock["6509"] == "RpB"


def test_hundred_conid_snapshot_under_5_ms():
    routes = market.MarketRoutes()
    conids = [c for c in list(market._build_universe())[:100]]

    class Req:
        query = {"conids": ",".join(map(str, conids)), "fields": FIELDS}
        scenario = "connected"

    routes.snapshot(Req)  # the pre-flight
    best = min(_timed(routes.snapshot, Req) for _ in range(20))
    assert best < 0.005, best
    status, body = routes.snapshot(Req)
    assert status == 200 and len(body) == 100 and all("7308" in e for e in body)


def _timed(fn, arg):
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start
