"""ibgw-marketdata: quotes and history on the fake backend (its simulated stock
market) and over the live transport with every request pinned by ``responses``.

Shapes: endpoint reference §5.1 (snapshot pre-flight, string values, 6509) and
§5.2 (history bars, period and bar vocabulary)."""

import csv
import datetime
import io
import json

import ibgw_fake.market as market
import ibgw_marketdata
import pytest
from ibgw_fake import stocks
from ibgw_marketdata import reads
from responses import matchers


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_marketdata)
    if not ibgw_pm.has_plugin("fake-market-test"):
        ibgw_pm.register(market, name="fake-market-test")
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def as_json(result):
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


# -- quote on the fake backend ------------------------------------------------------------
def test_quote_one_symbol_has_named_columns_from_the_field_ids(cli):
    rows = as_json(cli("-o", "json", "quote", "AAPL"))
    assert len(rows) == 1
    aapl = rows[0]
    f = market.fields_for(265598)  # what the simulated gateway sends, as strings
    assert aapl["conid"] == 265598 and aapl["symbol"] == "AAPL"
    assert aapl["last"] == float(f["31"]) and aapl["bid"] == float(f["84"])
    assert aapl["ask"] == float(f["86"])
    assert aapl["bid_size"] == 1300 and aapl["ask_size"] == 2100  # "1,300", "2,100"
    assert aapl["change"] == float(f["82"]) and aapl["change_pct"] == float(f["83"][:-1])
    assert aapl["volume"] == market.UNDERLYINGS["AAPL"]["volume"][0]  # 7762, not "52.8M"
    assert aapl["high"] == float(f["70"]) and aapl["low"] == float(f["71"])
    assert aapl["open"] == float(f["7295"]) and aapl["prior_close"] == float(f["7741"])
    assert aapl["availability"] == "real-time" and aapl["availability_code"] == "RpB"
    assert aapl["updated"].endswith("Z")


def test_quote_many_symbols_and_a_conid_keep_the_order_asked(cli):
    rows = as_json(cli("-o", "json", "quote", "spy", "MSFT", "AAPL", "272093"))
    # MSFT asked twice (ticker and conid): one row
    assert [(r["symbol"], r["conid"]) for r in rows] == [
        ("SPY", 756733),
        ("MSFT", 272093),
        ("AAPL", 265598),
    ]
    assert rows[1]["last"] == float(stocks.fields_for(272093)["31"])
    assert all(r["availability"] == "real-time" for r in rows)


def test_quote_table_and_csv(cli):
    r = cli("quote", "AAPL", "MSFT")
    assert r.exit_code == 0
    header = r.stdout.splitlines()[0].split()
    assert header[:5] == ["symbol", "conid", "last", "bid", "ask"]
    assert header[-1] == "availability"
    rows = list(csv.DictReader(io.StringIO(cli("-o", "csv", "quote", "AAPL", "MSFT").stdout)))
    assert [r["symbol"] for r in rows] == ["AAPL", "MSFT"]
    assert rows[0]["last_is"] == ""  # null, not "None"


def test_quote_of_200_symbols_goes_in_chunks_of_100(cli):
    tickers = sorted(stocks.universe())[:200]
    rows = as_json(cli("-o", "json", "quote", *tickers))
    assert len(rows) == 200
    assert all(r["last"] and r["availability"] == "real-time" for r in rows)


def test_unknown_symbols_are_left_out_with_a_note(cli):
    r = cli("-o", "json", "quote", "AAPL", "ZZZZ", "QQQQQ")
    rows = as_json(r)
    assert [row["symbol"] for row in rows] == ["AAPL"]
    assert "unknown symbols left out: ZZZZ, QQQQQ" in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (("ZZZZ",), "unknown symbol ZZZZ"),
        (("ZZZZ",), "give the conid (all digits)"),
        (("ZZZZ", "YYYY"), "unknown symbols: ZZZZ, YYYY"),
        (("AA/PL",), "invalid value"),
        (("AAPL", "--wait", "99"), "wait: must be at most 30"),
        (("AAPL", "--sec-type", "OPT"), "OPT"),
    ],
)
def test_quote_usage_errors_exit_2_in_one_line(cli, args, needle):
    r = cli("quote", *args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr) and needle in r.stderr, r.stderr


def test_a_conid_the_market_has_no_data_for_is_honest(cli):
    r = cli("-o", "json", "quote", "999999999", "--wait", "0.2")
    assert r.exit_code == 5, r.stderr
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "no-market-data" and "within 0.2 s" in err["message"]
    r = cli("-o", "json", "quote", "AAPL", "999999999", "--wait", "0.2")
    rows = as_json(r)
    assert [x["availability"] for x in rows] == ["real-time", "no data"]
    assert rows[1]["last"] is None
    assert "1 quote of 2: no data within 0.2 s" in r.stderr


@pytest.mark.parametrize(
    "scenario,code", [("expired-session", 3), ("gateway-down", 4), ("documented-only", 0)]
)
def test_scenarios(cli, scenario, code):
    for args in (
        ["quote", "AAPL"],
        ["quote", "AAPL", "MSFT", "SPY"],
        ["history", "AAPL", "--period", "1w", "--bar", "1d"],
    ):
        r = cli("--scenario", scenario, "-o", "json", *args)
        assert r.exit_code == code, (args, r.stderr)
        if code:
            assert json.loads(r.stderr)["error"]["state"] in (
                "manual_action_required",
                "unavailable",
            )
        else:
            assert json.loads(r.stdout)


# -- history on the fake backend ----------------------------------------------------------
def test_history_bars_in_the_exchange_zone_and_utc(cli):
    r = cli("-o", "json", "history", "AAPL", "--period", "1w", "--bar", "1d")
    bars = as_json(r)
    assert len(bars) == 5  # the week's sessions before MARKET_DATE's close
    for b in bars:
        local = datetime.datetime.fromisoformat(b["time"])
        utc = datetime.datetime.fromisoformat(b["time_utc"].replace("Z", "+00:00"))
        assert local == utc and local.strftime("%H:%M") == "09:30"  # the NASDAQ open
        assert local.utcoffset() == datetime.timedelta(hours=-4)  # New York, daylight time
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
    assert bars[-1]["close"] == market.UNDERLYINGS["AAPL"]["spot"]  # ends at the quote's last
    assert bars == sorted(bars, key=lambda b: b["time_utc"])
    assert "AAPL (265598, NASDAQ, America/New_York): 5 bars of 1d over 1w" in r.stderr


def test_history_csv_is_ready_for_a_spreadsheet(cli):
    r = cli("-o", "csv", "history", "MSFT", "--period", "1d", "--bar", "5min")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["time", "time_utc", "open", "high", "low", "close", "volume"]
    assert len(rows) == 1 + 78  # 09:30 .. 15:55
    assert rows[1][0] == "2026-04-01T09:30:00-04:00" and rows[1][1] == "2026-04-01T13:30:00Z"
    float(rows[1][2])


def test_history_of_a_conid_finds_its_exchange_zone(cli):
    by_ticker = as_json(cli("-o", "json", "history", "MSFT", "--period", "2d", "--bar", "1h"))
    by_conid = as_json(cli("-o", "json", "history", "272093", "--period", "2d", "--bar", "1h"))
    assert by_conid == by_ticker and by_conid[0]["time"].endswith("-04:00")


def test_outside_rth_adds_the_extended_sessions(cli):
    regular = as_json(cli("-o", "json", "history", "AAPL", "--period", "1d", "--bar", "1h"))
    extended = as_json(
        cli("-o", "json", "history", "AAPL", "--period", "1d", "--bar", "1h", "--outside-rth")
    )
    assert regular[0]["time"].startswith("2026-04-01T09:30")
    assert extended[0]["time"].startswith("2026-04-01T04:00") and len(extended) > len(regular)


def test_history_bad_period_names_the_allowed_periods(cli):
    r = cli("history", "AAPL", "--period", "2x", "--bar", "1d")
    assert r.exit_code == 2 and one_line(r.stderr)
    assert "1-30min, 1-8h, 1-1000d, 1-792w, 1-182m (months), 1-15y" in r.stderr
    for bad in ("0d", "31min", "16y", "1000000d", "d", "1 w"):
        r = cli("history", "AAPL", "--period", bad)
        assert r.exit_code == 2 and one_line(r.stderr) and "period" in r.stderr, bad
    r = cli("-o", "json", "history", "AAPL", "--bar", "7min")
    assert r.exit_code == 2
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "invalid-bar" and "1min, 2min, 3min, 5min" in err["message"]


def test_history_of_1000_plus_bars_says_the_oldest_are_left_out(cli):
    r = cli("-o", "json", "history", "AAPL", "--period", "1w", "--bar", "1min")
    assert len(as_json(r)) == 1000
    assert "at most 1000 bars" in r.stderr


def test_history_unknown_conid_is_a_usage_error(cli):
    r = cli("history", "999999999")
    assert r.exit_code == 2 and one_line(r.stderr) and "no 1w of 1d bars" in r.stderr


# -- over the live transport, every request pinned -------------------------------------------
@pytest.fixture
def live(ibgw_pm, ibgw_cli, ibgw_responses, monkeypatch):
    ibgw_pm.register(ibgw_marketdata)
    monkeypatch.setattr(reads, "POLL_INTERVAL", 0.0)

    def run(*args):
        return ibgw_cli("--backend", "live", *args)

    run.rsps = ibgw_responses
    run.base = ibgw_responses.base
    ibgw_responses.add(
        "GET",
        f"{ibgw_responses.base}/iserver/accounts",
        json={"accounts": ["DU1234567"], "selectedAccount": "DU1234567"},
    )
    run.secdef = ibgw_responses.add(
        "GET", f"{ibgw_responses.base}/trsrv/secdef", json={"secdef": []}
    )
    return run


def snap(live, conids, *answers):
    match = [matchers.query_param_matcher({"conids": conids, "fields": reads.FIELDS})]
    return [
        live.rsps.add("GET", f"{live.base}/iserver/marketdata/snapshot", json=a, match=match)
        for a in answers
    ]


def search(live, symbol, conid, exchange="NASDAQ", sec_type="STK"):
    live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/search",
        json=[{"conid": str(conid), "symbol": symbol, "description": exchange}],
        match=[matchers.query_param_matcher({"symbol": symbol, "secType": sec_type})],
    )


def test_live_pre_flight_then_values_after_accounts(live):
    calls = snap(
        live,
        "265598",
        [{"conid": 265598, "conidEx": "265598"}],  # pre-flight: the stream opens
        [{"conid": 265598, "31": "C168.42", "84": "168.41", "86": "168.42", "88": "1,300",
          "6509": "DpB", "_updated": 1712596911593}],
    )  # fmt: skip
    r = live("-o", "json", "quote", "265598")  # a conid: no search
    rows = as_json(r)
    assert [c.call_count for c in calls] == [1, 1]
    paths = [c.request.path_url.split("?")[0] for c in live.rsps.calls]
    assert (
        paths
        == ["/v1/api/trsrv/secdef", "/v1/api/iserver/accounts"]
        + ["/v1/api/iserver/marketdata/snapshot"] * 2
    )
    row = rows[0]
    assert row["last"] == 168.42 and row["last_is"] == "prior-close" and row["bid_size"] == 1300
    assert row["availability"] == "delayed" and row["updated"] == "2024-04-08T17:21:51Z"
    assert "1 quote of 1: delayed 15-20 minutes" in r.stderr
    assert "last is the prior close for 1 quote" in r.stderr


@pytest.mark.parametrize(
    "code,state",
    [
        ("RpB", "real-time"),
        ("DpB", "delayed"),
        ("ZpB", "frozen"),
        ("Y", "delayed-frozen"),
        ("vP", "real-time"),
        ("iP", "incomplete"),
        ("Q", "unknown (Q)"),
    ],
)
def test_live_availability_codes(live, code, state):
    snap(live, "8314", [{"conid": 8314, "31": "100.5", "6509": code}])
    assert as_json(live("-o", "json", "quote", "8314"))[0]["availability"] == state


def test_live_not_entitled_is_exit_5_and_never_zero(live):
    snap(live, "8314", [{"conid": 8314}], [{"conid": 8314, "6509": "N"}])
    r = live("-o", "json", "quote", "8314")
    assert r.exit_code == 5, r.stderr
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "not-entitled" and "not subscribed" in err["message"]


def test_live_one_not_entitled_among_several_is_a_row(live):
    snap(
        live,
        "8314,265598",
        [{"conid": 8314, "6509": "N"}, {"conid": 265598, "31": "190.1", "6509": "RpB"}],
    )
    r = live("-o", "json", "quote", "8314", "265598")
    rows = as_json(r)
    assert [(x["availability"], x["last"]) for x in rows] == [
        ("not entitled", None),
        ("real-time", 190.1),
    ]
    assert "1 quote of 2: not entitled" in r.stderr


def test_live_sec_type_and_exchange_go_to_the_resolver(live):
    live.rsps.add(
        "GET",
        f"{live.base}/iserver/secdef/search",
        json=[
            {"conid": "416904", "symbol": "SPX", "description": "CBOE"},
            {"conid": "999", "symbol": "SPX", "description": "OTHER"},
        ],
        match=[matchers.query_param_matcher({"symbol": "SPX", "secType": "IND"})],
    )
    snap(live, "416904", [{"conid": 416904, "31": "5200.1", "6509": "RpB"}])
    rows = as_json(live("-o", "json", "quote", "spx", "--sec-type", "IND", "--exchange", "cboe"))
    assert rows[0]["conid"] == 416904 and rows[0]["symbol"] == "SPX"


def test_live_150_conids_are_two_snapshot_calls_of_at_most_100(live):
    conids = [str(1000 + i) for i in range(150)]
    for part in (conids[:100], conids[100:]):
        snap(live, ",".join(part), [{"conid": int(c), "31": "1.5", "6509": "R"} for c in part])
    rows = as_json(live("-o", "json", "quote", *conids))
    assert len(rows) == 150
    snaps = [c for c in live.rsps.calls if "/marketdata/snapshot" in c.request.url]
    assert len(snaps) == 2


def test_live_history_request_and_times(live):
    search(live, "AAPL", 265598)
    live.rsps.add(
        "GET",
        f"{live.base}/iserver/marketdata/history",
        json={
            "symbol": "AAPL",
            "mktDataDelay": 0,
            "data": [  # the spec's example (Last), newest last
                {"c": 212.33, "h": 213.94, "l": 210.58, "o": 212.43, "t": 1747229400000, "v": 266616.18},
                {"c": 211.45, "h": 212.96, "l": 209.54, "o": 210.95, "t": 1747315800000, "v": 256847.25},
            ],
        },
        match=[
            matchers.query_param_matcher(
                {"conid": "265598", "period": "1w", "bar": "1d", "outsideRth": "true"}
            )
        ],
    )  # fmt: skip
    bars = as_json(live("-o", "json", "history", "AAPL", "--period", "1W", "--outside-rth"))
    assert bars[0] == {
        "time": "2025-05-14T09:30:00-04:00",
        "time_utc": "2025-05-14T13:30:00Z",
        "open": 212.43,
        "high": 213.94,
        "low": 210.58,
        "close": 212.33,
        "volume": 266616.18,
    }


def test_live_history_of_a_conid_on_an_unknown_exchange_is_utc(live):
    live.rsps.replace(
        "GET",
        f"{live.base}/trsrv/secdef",
        json={"secdef": [{"conid": 77, "ticker": "XYZ", "listingExchange": "MOON"}]},
        match=[matchers.query_param_matcher({"conids": "77"})],
    )
    live.rsps.add(
        "GET",
        f"{live.base}/iserver/marketdata/history",
        json={"data": [{"o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10, "t": 1747229400000}]},
    )
    r = live("-o", "json", "history", "77")
    bars = as_json(r)
    assert bars[0]["time"] == bars[0]["time_utc"] == "2025-05-14T13:30:00Z"
    assert "time zone of exchange MOON not known" in r.stderr


def test_live_history_malformed_answer_is_unavailable(live):
    search(live, "AAPL", 265598)
    live.rsps.add("GET", f"{live.base}/iserver/marketdata/history", json=["not", "bars"])
    r = live("-o", "json", "history", "AAPL")
    assert r.exit_code == 4
    assert json.loads(r.stderr)["error"]["reason"] == "malformed-response"


def test_live_a_derivative_conid_searches_its_underlying_first(live):
    live.rsps.replace(
        "GET",
        f"{live.base}/trsrv/secdef",
        json={"secdef": [
            {"conid": 667629330, "ticker": "SPY", "assetClass": "OPT", "undConid": 756733},
            {"conid": 8314, "ticker": "IBM", "assetClass": "STK", "undConid": 0,
             "listingExchange": "NYSE"},
        ]},
        match=[matchers.query_param_matcher({"conids": "667629330,8314"})],
    )  # fmt: skip
    search(live, "SPY", 756733, exchange="ARCA")
    snap(
        live,
        "667629330,8314",
        [
            {"conid": 667629330, "31": "2.45", "6509": "RpB"},
            {"conid": 8314, "31": "190", "6509": "R"},
        ],
    )
    rows = as_json(live("-o", "json", "quote", "667629330", "8314"))
    paths = [c.request.path_url.split("?")[0].rsplit("/", 1)[-1] for c in live.rsps.calls]
    assert paths.index("search") < paths.index("snapshot")
    assert paths.count("search") == 1  # only the derivative's underlying
    assert [(r["symbol"], r["exchange"]) for r in rows] == [("SPY", None), ("IBM", "NYSE")]
