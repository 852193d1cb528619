"""ibgw-greeks over the live transport, every request pinned with ``responses``.

Snapshot shapes and formats: endpoint reference §5.1 (pre-flight, string values,
``%`` and thousands separators, ``C``/``H`` prefixes, 6509 availability).
"""

import csv
import io
import json

import ibgw_greeks
import pytest
from ibgw_greeks import reads
from responses import matchers

FIELDS = "31,84,86,7635,7308,7309,7310,7311,7633,7638,87,7762,6509,55,6070,201,7219,7220"
SPY_SEARCH = [
    {
        "conid": 756733,  # a number here, a string in other builds
        "companyHeader": "SPDR S&P 500 ETF TRUST - ARCA",
        "companyName": "SPDR S&P 500 ETF TRUST",
        "symbol": "SPY",
        "description": "ARCA",
        "sections": [{"secType": "OPT", "months": "APR26;MAY26", "exchange": "SMART;CBOE"}],
    }
]
OPTION = {  # the reference's option snapshot, second call
    "conid": 667629330,
    "conidEx": "667629330",
    "_updated": 1704384000000,
    "server_id": "q3",
    "6509": "RpB",
    "31": "2.45",
    "84": "2.40",
    "86": "2.50",
    "7308": "-0.412",
    "7309": "0.031",
    "7310": "-0.155",
    "7311": "0.118",
    "7633": "24.6%",
    "7638": "18342",
    "87": "5.2K",
    "7762": "5210",  # the contract's day volume
    "7089": "6.1M",  # the underlying's option volume: never the contract's volume
    "7635": "2.45",
}


@pytest.fixture
def live(ibgw_pm, ibgw_cli, ibgw_responses, monkeypatch):
    ibgw_pm.register(ibgw_greeks)
    monkeypatch.setattr(reads, "POLL_INTERVAL", 0.0)
    monkeypatch.setattr(reads, "PRICE_INTERVAL", 0.0)

    def run(*args):
        return ibgw_cli("--backend", "live", *args)

    run.rsps = ibgw_responses
    run.base = ibgw_responses.base
    ibgw_responses.add(
        "GET",
        f"{ibgw_responses.base}/iserver/accounts",
        json={"accounts": ["DU1234567"], "selectedAccount": "DU1234567"},
    )
    # --conid reads look their underlyings up first; by default nothing is known
    run.secdef = ibgw_responses.add(
        "GET", f"{ibgw_responses.base}/trsrv/secdef", json={"secdef": []}
    )
    return run


def pin_snapshot(live, conids, *answers, fields=FIELDS):
    match = [matchers.query_param_matcher({"conids": conids, "fields": fields})]
    return [
        live.rsps.add("GET", f"{live.base}/iserver/marketdata/snapshot", json=a, match=match)
        for a in answers
    ]


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def test_live_conid_pre_flight_then_values(live):
    calls = pin_snapshot(
        live, "667629330", [{"conid": 667629330, "conidEx": "667629330"}], [OPTION]
    )
    r = live("greeks", "--conid", "667629330", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {
            "conid": 667629330,
            "symbol": None,
            "description": None,
            "expiry": None,
            "strike": None,
            "right": None,
            "last": 2.45,
            "bid": 2.4,
            "ask": 2.5,
            "mark": 2.45,
            "delta": -0.412,
            "gamma": 0.031,
            "theta": -0.155,
            "vega": 0.118,
            "implied_vol": 24.6,
            "open_interest": 18342,
            "volume": 5210,
            "availability": "real-time",
        }
    ]
    assert [c.call_count for c in calls] == [1, 1]


def test_live_table_and_csv(live):
    answer = dict(OPTION, **{"55": "AAPL", "7220": "JAN 05 '24 195 Put", "201": "P"})
    pin_snapshot(live, "667629330", [answer])
    r = live("greeks", "--conid", "667629330")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "conid",
        "description",
        "last",
        "bid",
        "ask",
        "mark",
        "delta",
        "gamma",
        "theta",
        "vega",
        "implied_vol",
        "open_interest",
        "volume",
        "availability",
    ]
    assert lines[2].split() == [
        "667629330",
        "AAPL",
        "JAN",
        "05",
        "'24",
        "195",
        "Put",
        "2.45",
        "2.4",
        "2.5",
        "2.45",
        "-0.412",
        "0.031",
        "-0.155",
        "0.118",
        "24.6",
        "18342",
        "5210",
        "real-time",
    ]
    r = live("greeks", "--conid", "667629330", "-o", "csv")
    row = next(csv.DictReader(io.StringIO(r.stdout)))
    assert row["implied_vol"] == "24.6" and row["volume"] == "5210" and row["right"] == "P"
    assert row["description"] == "AAPL JAN 05 '24 195 Put"


def test_live_string_conids_prefixes_and_missing_fields(live):
    answers = [
        [
            {
                "conid": "1001",
                "conidEx": "1001",
                "6509": "DpB",
                "31": "C1.20",
                "7308": "0.25",
                "7633": "31.5%",
                "87": "1.2K",
            },  # delayed, prior close, a K suffix, no gamma/vega
            {
                "conid": 1002,
                "conidEx": "1002",
                "6509": "ZpB",
                "31": "H3.10",
                "7308": "0.5",
                "7309": "0.02",
                "7638": "12,345",
            },
        ]
    ]
    pin_snapshot(live, "1001,1002", *answers)
    r = live("greeks", "--conid", "1001", "--conid", "1002", "-o", "json")
    assert r.exit_code == 0, r.stderr
    a, b = json.loads(r.stdout)
    assert (a["last"], a["delta"], a["gamma"], a["vega"], a["implied_vol"], a["volume"]) == (
        1.2,
        0.25,
        None,
        None,
        31.5,
        1200,
    )
    assert a["availability"] == "delayed" and a["bid"] is None  # missing is null, never 0
    assert (b["last"], b["open_interest"], b["availability"]) == (3.1, 12345, "frozen")
    assert "last is the prior close for 1 conid" in r.stderr
    assert "trading is halted for 1 conid" in r.stderr


def test_live_not_subscribed_exits_5_without_re_polling(live):
    calls = pin_snapshot(
        live,
        "1001,1002",
        [{"conid": 1001, "conidEx": "1001"}, {"conid": 1002, "conidEx": "1002"}],
        [
            {"conid": 1001, "conidEx": "1001", "6509": "N"},
            {"conid": 1002, "conidEx": "1002", "6509": "NpB"},
        ],
    )
    r = live("greeks", "--conid", "1001", "--conid", "1002")
    assert r.exit_code == 5 and one_line(r.stderr)
    assert (
        "not entitled: option greeks for 2 conids (market data availability: not subscribed)"
        in r.stderr
    )
    assert r.stdout == ""
    assert [c.call_count for c in calls] == [1, 1]


def test_live_delayed_without_greeks_exits_5_after_bounded_polls(live):
    delayed = [{"conid": 1001, "conidEx": "1001", "6509": "D", "31": "1.20", "84": "1.10"}]
    calls = pin_snapshot(live, "1001", *([delayed] * 6))
    r = live("-o", "json", "greeks", "--conid", "1001")
    assert r.exit_code == 5
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "not-entitled"
    assert (
        err["message"]
        == "not entitled: option greeks for 1 conid (market data availability: delayed)"
    )
    assert sum(c.call_count for c in calls) == 5  # SNAPSHOT_POLLS, then give up


def test_live_partial_greeks_note(live):
    pin_snapshot(
        live,
        "1001,1002",
        [
            OPTION | {"conid": 1001, "conidEx": "1001"},
            {"conid": 1002, "conidEx": "1002", "6509": "N"},
        ],
    )
    r = live("greeks", "--conid", "1001", "--conid", "1002", "-o", "json")
    assert r.exit_code == 0, r.stderr
    a, b = json.loads(r.stdout)
    assert a["delta"] == -0.412 and b["delta"] is None and b["availability"] == "not subscribed"
    assert "no greeks for 1 of 2 conids (market data availability: not subscribed)" in r.stderr


def test_live_stock_conid_is_a_usage_error(live):
    pin_snapshot(
        live,
        "756733",
        [{"conid": 756733, "conidEx": "756733", "6070": "STK", "31": "501.42", "6509": "RpB"}],
    )
    r = live("greeks", "--conid", "756733")
    assert r.exit_code == 2 and "conid 756733 is a STK, not an option" in r.stderr


def test_live_by_symbol_pins_every_request(live):
    search = live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/search",
        json=SPY_SEARCH,
        match=[matchers.query_param_matcher({"symbol": "SPY", "secType": "STK"})],
    )
    strikes = live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/strikes",
        json={"call": ["495", "500", "505"], "put": [495.0, 500.0, 505.0]},
        match=[
            matchers.query_param_matcher(
                {"conid": "756733", "sectype": "OPT", "month": "MAY26", "exchange": "SMART"}
            )
        ],
    )
    info = live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/info",
        json=[
            {
                "conid": "700000002",
                "symbol": "SPY",
                "right": "P",
                "strike": "500",
                "maturityDate": "20260515",
                "desc2": "MAY 15 '26 500 Put",
                "multiplier": "100",
            },
            {
                "conid": 700000001,
                "symbol": "SPY",
                "right": "P",
                "strike": 500.0,
                "maturityDate": "20260508",
                "desc2": "MAY 08 '26 500 Put",
            },
        ],
        match=[
            matchers.query_param_matcher(
                {
                    "conid": "756733",
                    "sectype": "OPT",
                    "month": "MAY26",
                    "strike": "500",
                    "right": "P",
                    "exchange": "SMART",
                }
            )
        ],
    )
    snaps = pin_snapshot(
        live,
        "700000001,700000002",
        [
            {"conid": 700000001, "conidEx": "700000001"},
            {"conid": 700000002, "conidEx": "700000002"},
        ],
        [
            OPTION | {"conid": 700000001, "conidEx": "700000001"},
            OPTION | {"conid": "700000002", "conidEx": "700000002", "7308": "-0.455"},
        ],
    )
    r = live("greeks", "SPY", "--month", "MAY26", "--strike", "500", "--right", "p", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["conid"], x["expiry"], x["description"], x["delta"]) for x in rows] == [
        (700000001, "2026-05-08", "SPY MAY 08 '26 500 Put", -0.412),
        (700000002, "2026-05-15", "SPY MAY 15 '26 500 Put", -0.455),
    ]
    assert rows[0]["strike"] == 500.0 and rows[0]["right"] == "P"
    assert (search.call_count, strikes.call_count, info.call_count) == (1, 1, 1)
    assert [c.call_count for c in snaps] == [1, 1]


def test_live_at_the_money_strike(live):
    live.rsps.add("GET", f"{live.base}/iserver/secdef/search", json=SPY_SEARCH)
    live.rsps.add(
        "GET", f"{live.base}/iserver/secdef/strikes", json={"call": [495, 500, 505], "put": []}
    )
    pin_snapshot(
        live,
        "756733",
        [{"conid": 756733, "conidEx": "756733"}],
        [{"conid": 756733, "31": "503.10"}],
        fields="31,84,86",
    )
    info = live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/info",
        json=[{"conid": 5, "right": "C", "strike": 505, "maturityDate": "20260417"}],
        match=[
            matchers.query_param_matcher(
                {
                    "conid": "756733",
                    "sectype": "OPT",
                    "month": "APR26",
                    "strike": "505",
                    "right": "C",
                    "exchange": "SMART",
                }
            )
        ],
    )
    pin_snapshot(live, "5", [OPTION | {"conid": 5}])
    r = live("greeks", "SPY", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [row["conid"] for row in json.loads(r.stdout)] == [5]
    assert info.call_count == 1
    assert "strike 505 (nearest the last price 503.1)" in r.stderr


def test_live_malformed_snapshot_exits_4(live):
    pin_snapshot(live, "1001", {"error": "something"})
    r = live("greeks", "--conid", "1001")
    assert r.exit_code == 4 and one_line(r.stderr)
