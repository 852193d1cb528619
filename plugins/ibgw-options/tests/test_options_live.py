"""ibgw-options over the live transport, every request pinned with ``responses``.

Request shapes: endpoint reference §3 (search), §4 (strikes, info), §5.1 (snapshot).
"""

import csv
import io
import json

import ibgw_options
import pytest
from ibgw_options import reads
from responses import matchers

SPY_SEARCH = [
    {
        "conid": "756733",
        "companyHeader": "SPDR S&P 500 ETF TRUST - ARCA",
        "companyName": "SPDR S&P 500 ETF TRUST",
        "symbol": "SPY",
        "description": "ARCA",
        "restricted": None,
        "sections": [
            {"secType": "STK"},
            {"secType": "OPT", "months": "APR26;MAY26;JUN26", "exchange": "SMART;AMEX;CBOE"},
            {"secType": "CFD", "exchange": "SMART", "conid": "134770228"},
            {"secType": "BAG"},
        ],
    },
    {
        "conid": "38709152",
        "companyHeader": "SPDR S&P 500 ETF TRUST - MEXI",
        "companyName": "SPDR S&P 500 ETF TRUST",
        "symbol": "SPY",
        "description": "MEXI",
        "restricted": None,
        "sections": [{"secType": "STK", "exchange": "MEXI;"}],
    },
]
VALID_EXCHANGES = "SMART,AMEX,CBOE,PHLX,PSE,ISE,BOX,BATS,NASDAQOM,CBOE2,NASDAQBX,MIAX,GEMINI,EDGX"


@pytest.fixture
def live(ibgw_pm, ibgw_cli, ibgw_responses, monkeypatch):
    ibgw_pm.register(ibgw_options)
    monkeypatch.setattr(reads, "PRICE_INTERVAL", 0.0)

    def run(*args):
        return ibgw_cli("--backend", "live", *args)

    run.rsps = ibgw_responses
    run.base = ibgw_responses.base
    return run


def pin_search(live, symbol="SPY", body=None, sec_type="STK"):
    return live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/search",
        json=SPY_SEARCH if body is None else body,
        match=[matchers.query_param_matcher({"symbol": symbol, "secType": sec_type})],
    )


def pin_strikes(live, month="APR26", exchange="SMART", **answer):
    return live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/strikes",
        match=[
            matchers.query_param_matcher(
                {"conid": "756733", "sectype": "OPT", "month": month, "exchange": exchange}
            )
        ],
        **answer,
    )


def pin_info(live, strike, right, answer, month="APR26"):
    return live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/info",
        json=answer,
        match=[
            matchers.query_param_matcher(
                {
                    "conid": "756733",
                    "sectype": "OPT",
                    "month": month,
                    "strike": strike,
                    "right": right,
                    "exchange": "SMART",
                }
            )
        ],
    )


def pin_accounts(live):
    return live.rsps.add(
        "GET",
        f"{live.base}/iserver/accounts",
        json={"accounts": ["DU1234567"], "selectedAccount": "DU1234567"},
    )


def pin_snapshots(live, *answers):
    """Answers in order, for the underlying's price snapshot (conids=756733, fields=31,84,86)."""
    pin_accounts(live)
    match = [matchers.query_param_matcher({"conids": "756733", "fields": "31,84,86"})]
    return [
        live.rsps.add("GET", f"{live.base}/iserver/marketdata/snapshot", json=a, match=match)
        for a in answers
    ]


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# -- expirations ----------------------------------------------------------------------------
def test_live_expirations_pinned(live):
    search = pin_search(live)
    r = live("options", "SPY")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[2].split() == ["APR26", "2026-04", "SMART,AMEX,CBOE"]
    r = live("options", "expirations", "SPY", "-o", "json")
    assert json.loads(r.stdout)[2] == {
        "month": "JUN26",
        "expiry_month": "2026-06",
        "exchanges": "SMART,AMEX,CBOE",
    }
    r = live("options", "expirations", "SPY", "-o", "csv")
    assert r.stdout.splitlines() == [
        "month,expiry_month,exchanges",
        'APR26,2026-04,"SMART,AMEX,CBOE"',
        'MAY26,2026-05,"SMART,AMEX,CBOE"',
        'JUN26,2026-06,"SMART,AMEX,CBOE"',
    ]
    assert search.call_count == 3  # one search per process (the cache is per transport)


def test_live_months_out_of_order_are_sorted(live):
    body = json.loads(json.dumps(SPY_SEARCH))
    body[0]["sections"][1]["months"] = "JAN27;DEC26;MAR27"
    pin_search(live, body=body)
    rows = json.loads(live("options", "SPY", "-o", "json").stdout)
    assert [(r["month"], r["expiry_month"]) for r in rows] == [
        ("DEC26", "2026-12"),
        ("JAN27", "2027-01"),
        ("MAR27", "2027-03"),
    ]


def test_live_unknown_symbol_exits_2(live):
    # no STK entry: the resolver asks once more as an index (IND) before giving up
    pin_search(live, symbol="ZZZZ", body=[])
    pin_search(live, symbol="ZZZZ", body=[], sec_type="IND")
    r = live("options", "ZZZZ")
    assert r.exit_code == 2 and one_line(r.stderr)
    assert "unknown symbol ZZZZ" in r.stderr


def test_live_symbol_without_options_exits_2(live):
    body = [
        {
            "conid": "756733",
            "symbol": "SPY",
            "description": "ARCA",
            "sections": [{"secType": "STK"}],
        }
    ]
    pin_search(live, body=body)
    r = live("options", "strikes", "SPY", "--month", "APR26")
    assert r.exit_code == 2 and one_line(r.stderr)
    assert "SPY has no listed options" in r.stderr


# -- strikes --------------------------------------------------------------------------------
def test_live_strikes_numbers_and_strings(live):
    pin_search(live)
    strikes = pin_strikes(
        live, json={"call": [495.0, "500", 505, "bad", None], "put": ["500", 505.0, "510.5"]}
    )
    r = live("options", "strikes", "SPY", "--month", "APR26", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"strike": 495.0, "call": True, "put": False},
        {"strike": 500.0, "call": True, "put": True},
        {"strike": 505.0, "call": True, "put": True},
        {"strike": 510.5, "call": False, "put": True},
    ]
    r = live("options", "strikes", "SPY", "--month", "APR26")
    assert r.stdout.splitlines()[2:] == [
        "495       True    False",
        "500       True    True",
        "505       True    True",
        "510.5     False   True",
    ]
    r = live("options", "strikes", "SPY", "--month", "APR26", "-o", "csv")
    assert list(csv.reader(io.StringIO(r.stdout)))[4] == ["510.5", "False", "True"]
    assert strikes.call_count == 3


def test_live_strikes_other_exchange(live):
    pin_search(live)
    strikes = pin_strikes(live, month="MAY26", exchange="CBOE", json={"call": [500], "put": [500]})
    r = live("options", "strikes", "SPY", "--month", "may26", "--exchange", "cboe", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [{"strike": 500.0, "call": True, "put": True}]
    assert strikes.call_count == 1


@pytest.mark.parametrize("answer", [{"call": [], "put": []}, {}, {"call": None}])
def test_live_empty_strike_list_is_no_rows_with_a_note(live, answer):
    pin_search(live)
    pin_strikes(live, json=answer)
    r = live("options", "strikes", "SPY", "--month", "APR26")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "(no rows)\n"
    assert "note: no strikes listed for SPY APR26 on SMART" in r.stderr
    r = live("options", "chain", "SPY", "--month", "APR26", "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    assert "no strikes listed for SPY APR26 on SMART" in r.stderr


def test_live_strikes_malformed_answer_exits_4(live):
    pin_search(live)
    pin_strikes(live, json=[1, 2, 3])
    r = live("options", "strikes", "SPY", "--month", "APR26")
    assert r.exit_code == 4 and one_line(r.stderr)


# -- chain ----------------------------------------------------------------------------------
INFO_500C = [
    {
        "conid": 712345001,
        "symbol": "SPY",
        "secType": "OPT",
        "exchange": "SMART",
        "listingExchange": None,
        "right": "C",
        "strike": 500.0,
        "currency": "USD",
        "cusip": None,
        "coupon": "No Coupon",
        "desc1": "SPY",
        "desc2": "APR 17 '26 500 Call",
        "maturityDate": "20260417",
        "multiplier": "100",
        "tradingClass": "SPY",
        "validExchanges": VALID_EXCHANGES,
    },
    {
        "conid": 712345000,
        "symbol": "SPY",
        "secType": "OPT",
        "exchange": "SMART",
        "right": "C",
        "strike": 500.0,
        "desc2": "APR 10 '26 500 Call",
        "maturityDate": "20260410",
        "multiplier": "100",
        "tradingClass": "SPY",
    },
]
INFO_500P = [  # conid and strike as strings; no tradingClass, multiplier or desc2
    {
        "conid": "712345002",
        "symbol": "SPY",
        "secType": "OPT",
        "exchange": "SMART",
        "right": "P",
        "strike": "500",
        "maturityDate": "20260417",
    },
]
INFO_505P = {  # one object instead of an array, 'ticker' instead of 'symbol' (OpenAPI 2.28)
    "conid": 712345003,
    "ticker": "SPY",
    "right": "P",
    "strike": 505,
    "maturityDate": "20260417",
    "multiplier": 100,
    "tradingClass": "SPYW",
}


def pin_chain_infos(live):
    return [
        pin_info(live, "500", "C", INFO_500C),
        pin_info(live, "500", "P", INFO_500P),
        pin_info(live, "505", "C", []),  # nothing listed for this one
        pin_info(live, "505", "P", INFO_505P),
    ]


def test_live_chain_strikes_around_with_pre_flight(live):
    pin_search(live)
    strikes = pin_strikes(
        live, json={"call": [490, 495, 500, 505, 510], "put": [490, 495, 500, 505, 510]}
    )
    snaps = pin_snapshots(
        live,
        [{"conid": 756733, "conidEx": "756733"}],  # pre-flight: the stream opens, no values
        [
            {
                "conid": "756733",
                "conidEx": "756733",
                "31": "C502.10",
                "84": "502.05",
                "86": "502.15",
                "6509": "RpB",
                "_updated": 1775169600000,
            }
        ],
    )
    infos = pin_chain_infos(live)
    r = live("options", "chain", "SPY", "--month", "APR26", "--strikes-around", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {
            "conid": 712345000,
            "symbol": "SPY",
            "expiry": "2026-04-10",
            "strike": 500.0,
            "right": "C",
            "trading_class": "SPY",
            "multiplier": 100,
            "exchange": "SMART",
            "description": "APR 10 '26 500 Call",
        },
        {
            "conid": 712345001,
            "symbol": "SPY",
            "expiry": "2026-04-17",
            "strike": 500.0,
            "right": "C",
            "trading_class": "SPY",
            "multiplier": 100,
            "exchange": "SMART",
            "description": "APR 17 '26 500 Call",
        },
        {
            "conid": 712345002,
            "symbol": "SPY",
            "expiry": "2026-04-17",
            "strike": 500.0,
            "right": "P",
            "trading_class": None,
            "multiplier": None,
            "exchange": "SMART",
            "description": None,
        },
        {
            "conid": 712345003,
            "symbol": "SPY",
            "expiry": "2026-04-17",
            "strike": 505.0,
            "right": "P",
            "trading_class": "SPYW",
            "multiplier": 100,
            "exchange": "SMART",
            "description": None,
        },
    ]
    assert [s.call_count for s in snaps] == [1, 1]
    assert [i.call_count for i in infos] == [1, 1, 1, 1]
    assert strikes.call_count == 1

    # second run: the contract definitions come from the disk cache (the empty one is asked again)
    r = live("options", "chain", "SPY", "--month", "APR26", "--strikes-around", "1")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "conid",
        "symbol",
        "expiry",
        "strike",
        "right",
        "trading_class",
        "multiplier",
        "exchange",
    ]
    assert lines[2].split() == ["712345000", "SPY", "2026-04-10", "500", "C", "SPY", "100", "SMART"]
    assert lines[4].split() == ["712345002", "SPY", "2026-04-17", "500", "P", "SMART"]
    assert [i.call_count for i in infos] == [1, 1, 2, 1]
    assert "3 of 4 contract look-ups from the cache (cached" in r.stderr
    assert snaps[1].call_count == 2  # the stream was open: values at once

    r = live("options", "chain", "SPY", "--month", "APR26", "--strikes-around", "1", "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[2] == {
        "conid": "712345002",
        "symbol": "SPY",
        "expiry": "2026-04-17",
        "strike": "500.0",
        "right": "P",
        "trading_class": "",
        "multiplier": "",
        "exchange": "SMART",
        "description": "",
    }


def test_live_chain_price_never_arrives_uses_the_middle_strike(live):
    pin_search(live)
    pin_strikes(live, json={"call": [490, 495, 500, 505, 510, 515], "put": []})
    empty = [{"conid": 756733, "conidEx": "756733"}]
    snaps = pin_snapshots(live, *([empty] * 5))
    pin_info(
        live, "505", "C", [{"conid": 1, "right": "C", "strike": 505, "maturityDate": "20260417"}]
    )
    pin_info(
        live, "500", "C", [{"conid": 2, "right": "C", "strike": 500, "maturityDate": "20260417"}]
    )
    r = live("options", "chain", "SPY", "--month", "APR26", "--strikes-around", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [row["conid"] for row in json.loads(r.stdout)] == [2, 1]
    assert sum(s.call_count for s in snaps) == 5  # bounded re-poll
    assert "no price for SPY after 5 snapshots; centred on the middle strike 505" in r.stderr


def test_live_chain_right_and_range(live):
    pin_search(live)
    pin_strikes(
        live, month="JUN26", json={"call": ["480", "485", "490"], "put": ["480", "485", "490"]}
    )
    info = pin_info(
        live,
        "485",
        "P",
        [{"conid": "9", "right": "P", "strike": "485", "maturityDate": "20260619"}],
        month="JUN26",
    )
    r = live(
        "options",
        "chain",
        "SPY",
        "--month",
        "JUN26",
        "--right",
        "put",
        "--min-strike",
        "482",
        "--max-strike",
        "488",
        "-o",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["conid"] == 9 and info.call_count == 1


def test_live_chain_info_rejected_exits_2(live):
    pin_search(live)
    pin_strikes(live, json={"call": [500], "put": []})
    live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/info",
        status=400,
        json={"error": "Invalid strike", "statusCode": 400},
    )
    r = live("options", "chain", "SPY", "--month", "APR26")
    assert r.exit_code == 2 and one_line(r.stderr)
    assert "/iserver/secdef/info" in r.stderr


def test_live_chain_rate_limited_exits_4_and_is_not_retried(live):
    pin_search(live)
    pin_strikes(live, json={"call": [500], "put": []})
    info = live.rsps.add(
        "GET", f"{live.base}/iserver/secdef/info", status=429, body="Too Many Requests"
    )
    r = live("options", "chain", "SPY", "--month", "APR26")
    assert r.exit_code == 4 and one_line(r.stderr)
    assert info.call_count == 1
