"""ibgw-news: headlines through the undocumented variants (with fallback), FYI notifications.

Two kinds of tests: against the fake backend (the plugin's own fixtures and scenarios),
and against the live transport with every request pinned by ``responses``.
"""

import csv
import io
import json

import ibgw_news
import pytest
from ibgw_news import reads
from responses import matchers

BASE = "https://localhost:5000/v1/api"
NOT_FOUND = {
    "status": 404,
    "body": "<html><body><h1>Resource not found</h1></body></html>",
    "content_type": "text/html",
}
VARIANTS = (
    "GET /fundamentals/landing/{conid}",
    "GET /iserver/news/portfolio",
)
AAPL_SEARCH = [
    {
        "conid": "265598",
        "companyHeader": "APPLE INC - NASDAQ",
        "companyName": "APPLE INC",
        "symbol": "AAPL",
        "description": "NASDAQ",
        "sections": [{"secType": "STK"}],
    },
    {
        "conid": "38708077",
        "companyHeader": "APPLE INC - MEXI",
        "companyName": "APPLE INC",
        "symbol": "AAPL",
        "description": "MEXI",
        "sections": [{"secType": "STK"}],
    },
]


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_news)
    return ibgw_cli


def records(result, provenance=None) -> list[dict]:
    """The JSON records without the provenance the CLI adds to each record of a read
    whose endpoint varies (the same on every record; equal to ``provenance`` when given)."""
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    seen = {(r.pop("provenance"), r.pop("endpoint")) for r in rows}
    assert len(seen) <= 1, seen
    if provenance is not None and rows:
        assert seen == {provenance}
    return rows


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# -- fake backend: the plugin's fixtures and scenarios ------------------------------
def test_headlines_from_landing_widget(cli):
    r = cli("news", "AAPL")
    assert r.exit_code == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["time", "source", "provider", "headline", "id"]
    assert "Apple’s services revenue tops estimates" in r.stdout  # &#x2019; decoded
    assert "BRFG$1f2e3d02" not in r.stdout  # the repeated item (same time and headline) is dropped
    assert "supplier shares rise on iPhone demand" in r.stdout  # blank lines collapsed
    assert "undocumented endpoint (GET /fundamentals/landing/{conid})" in r.stderr


def test_headlines_json_newest_first_and_limited(cli):
    r = cli("news", "headlines", "SPY", "--limit", "2", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = records(r, ("undocumented", "GET /fundamentals/landing/{conid}"))
    assert [row["id"] for row in rows] == ["BRFG$2a2b2c01", "DJ-N$2a2b2c02"]
    assert set(rows[0]) == {"time", "source", "provider", "headline", "sentiment", "id"}
    assert rows[0]["time"] == "2026-04-02T13:00:00Z"
    assert rows[0]["headline"] == "S&P 500 ETF sees record inflows in March"


def test_fallback_to_portfolio_news_in_the_recorded_shape(cli):
    """Build 10.46.1l answers portfolio news without conid keys: items are matched by
    their tickers and timed by receiptTime (issue 17)."""
    r = cli("--scenario", "news-no-landing", "news", "AAPL", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = records(r, ("undocumented", "GET /iserver/news/portfolio"))
    assert rows == [
        {
            "time": "2026-04-02T10:00:00Z",
            "source": "Benzinga",
            "provider": "BZ",
            "headline": "Apple: analysts see steady margins into the next quarter",
            "sentiment": 0.25,
            "id": "BZ$7a7a0001",
        },
        {
            "time": "2026-04-02T07:00:00Z",
            "source": "Dow Jones",
            "provider": "DJ-N",
            "headline": "Megacaps lead the Nasdaq higher; Apple and Microsoft gain",
            "sentiment": 0.4,
            "id": "DJ-N$7a7a0004",
        },
    ]
    table = cli("--scenario", "news-no-landing", "news", "AAPL")
    assert table.exit_code == 0 and "(no rows)" not in table.stdout
    assert "2026-04-02T10:00:00Z" in table.stdout and "BZ$7a7a0001" in table.stdout


def test_a_server_error_of_one_variant_moves_on_to_the_next(cli):
    r = cli("--scenario", "news-landing-error", "--debug", "news", "SPY", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = records(r, ("undocumented", "GET /iserver/news/portfolio"))
    assert [row["id"] for row in rows] == ["DJ-N$7a7a0002"]
    assert rows[0]["headline"] == "SPDR S&P 500 ETF: assets under management climb"
    # --debug reports each variant's outcome
    assert "GET /fundamentals/landing/{conid}: gateway-error" in r.stderr
    assert "GET /iserver/news/portfolio: works (4 items, 1 headlines about SPY)" in r.stderr


def test_probe_reports_each_variants_outcome(cli):
    r = cli("--scenario", "news-landing-error", "-o", "json", "probe", "news")
    assert r.exit_code == 0, r.stderr
    (row,) = [row for row in json.loads(r.stdout) if row["read"] == "news headlines"]
    assert row["result"] == "fallback" and row["variant"] == "GET /iserver/news/portfolio"
    assert "GET /fundamentals/landing/{conid} (gateway-error)" in row["detail"]


def test_empty_landing_widget_ends_the_search(cli):
    r = cli("--scenario", "news-quiet", "news", "AAPL", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == []
    assert "/fundamentals/landing" in r.stderr


def test_fallback_to_portfolio_news_filtered_by_tickers(cli):
    r = cli("--scenario", "news-portfolio-only", "news", "AAPL", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = records(r, ("undocumented", "GET /iserver/news/portfolio"))
    assert [row["id"] for row in rows] == ["BZ$7a7a0001", "DJ-N$7a7a0004"]
    r = cli("--scenario", "news-portfolio-only", "news", "SPY", "-o", "json")
    assert [row["id"] for row in records(r)] == ["DJ-N$7a7a0002"]


def test_documented_only_exits_5_naming_every_variant(cli):
    r = cli("--scenario", "documented-only", "news", "AAPL")
    assert r.exit_code == 5
    assert one_line(r.stderr)
    for key in VARIANTS:
        assert key in r.stderr
    r = cli("--scenario", "documented-only", "-o", "json", "news", "AAPL")
    assert r.exit_code == 5
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "not-served"
    assert [t.split(" (")[0] for t in err["tried"]] == list(VARIANTS)


def test_allow_undocumented_off_by_env(cli):
    r = cli("news", "AAPL", env={"IBGW_ALLOW_UNDOCUMENTED": "0"})
    assert r.exit_code == 5
    assert one_line(r.stderr)
    assert "allow_undocumented is off" in r.stderr
    r = cli("-o", "json", "news", "AAPL", env={"IBGW_ALLOW_UNDOCUMENTED": "0"})
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "undocumented-disabled"
    assert all("disabled" in t for t in err["tried"]) and len(err["tried"]) == 2


def test_allow_undocumented_off_by_config_file(cli, ibgw_env):
    (ibgw_env / "config.toml").write_text("allow_undocumented = false\n")
    r = cli("news", "AAPL")
    assert r.exit_code == 5
    assert "allow_undocumented is off" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("news", "A/B"),
        ("news", "AAPL", "--limit", "0"),
        ("news", "AAPL", "--limit", "x"),
        ("news", "AAPL", "--limit", "101"),
        ("news", "fyi", "--limit", "11"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args):
    r = cli(*args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr


@pytest.mark.parametrize(
    "scenario,code",
    [("missing-session", 3), ("gateway-down", 4), ("rate-limited", 4), ("malformed-response", 4)],
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    r = cli("--scenario", scenario, "news", "AAPL")
    assert r.exit_code == code
    assert one_line(r.stderr)


def test_fyi_notifications(cli):
    r = cli("news", "fyi", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["id"] for row in rows] == [
        "2026040290532101",
        "2026040190532092",
        "2026033147509444",
        "2026033037589663",
    ]
    first = rows[0]
    assert first["time"] == "2026-04-02T13:50:00Z"
    assert first["category"] == "PD" and first["read"] is False
    assert "<" not in first["body"] and first["body"].startswith("A dividend is scheduled")
    assert len(rows[2]["body"]) <= reads.BODY_CHARS and rows[2]["body"].endswith("…")
    assert rows[2]["read"] is True


def test_fyi_table(cli):
    r = cli("news", "fyi", "--limit", "2")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == [
        "time",
        "category",
        "headline",
        "body",
        "id",
        "read",
    ]


def test_fyi_unread_with_cached_count(cli):
    r = cli("news", "fyi", "--unread", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [row["read"] for row in json.loads(r.stdout)] == [False, False]
    assert "IBKR reports 2 unread notifications (just now)" in r.stderr
    r = cli("news", "fyi", "--unread", "-o", "json")
    assert "IBKR reports 2 unread notifications (checked" in r.stderr


def test_fyi_unread_count_refused_with_423(cli):
    r = cli("--scenario", "fyi-too-soon", "news", "fyi", "--unread")
    assert r.exit_code == 0, r.stderr
    assert "unread count is not available" in r.stderr


# -- live transport, every request pinned ---------------------------------------------
def pin_search(rsps, symbol="AAPL", body=None, sec_type="STK"):
    rsps.add(
        "GET",
        f"{BASE}/iserver/secdef/search",
        json=AAPL_SEARCH if body is None else body,
        match=[matchers.query_param_matcher({"symbol": symbol, "secType": sec_type})],
    )


def pin_landing(rsps, **answer):
    return rsps.add(
        "GET",
        f"{BASE}/fundamentals/landing/265598",
        match=[matchers.query_param_matcher({"widgets": "news", "lang": "en"})],
        **answer,
    )


def pin_portfolio(rsps, **answer):
    return rsps.add(
        "GET", f"{BASE}/iserver/news/portfolio", match=[matchers.query_param_matcher({})], **answer
    )


def live(cli, *args):
    return cli("--backend", "live", *args)


LANDING_ANSWER = {
    "news": {
        "title": "News",
        "content": [
            {
                "newsId": "SS$0c7d5080",
                "headlineContent": "AAPL Positive - \n \n&#x2018;high of the year&#x2019;",
                "source": "SS",
                "conid": 265598,
                "time": 1583462153000,
                "displayTime": "2020-03-06 02:35:53.0",
                "sentiment": "1.00",
                "hot": False,
                "external": True,
            },
            {
                "newsId": "SS$0c7d3611",
                "headlineContent": "AAPL Negative - simmered down",
                "source": "SS",
                "conid": "265598",
                "time": "1583459408000",
            },  # conid and time as strings
            {"newsId": 123, "headlineContent": "no source, seconds epoch", "time": 1583400000},
            {"newsId": "x", "headlineContent": ""},  # no headline: dropped
            "not an object",
        ],
    }
}


def test_live_landing_request_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    landing = pin_landing(ibgw_responses, json=LANDING_ANSWER)
    r = live(cli, "-o", "json", "news", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert landing.call_count == 1
    rows = records(r, ("undocumented", "GET /fundamentals/landing/{conid}"))
    assert rows == [
        {
            "time": "2020-03-06T02:35:53Z",
            "source": "SS",
            "provider": None,
            "headline": "AAPL Positive - ‘high of the year’",
            "sentiment": 1.0,
            "id": "SS$0c7d5080",
        },
        {
            "time": "2020-03-06T01:50:08Z",
            "source": "SS",
            "provider": None,
            "headline": "AAPL Negative - simmered down",
            "sentiment": None,
            "id": "SS$0c7d3611",
        },
        {
            "time": "2020-03-05T09:20:00Z",
            "source": None,
            "provider": None,
            "headline": "no source, seconds epoch",
            "sentiment": None,
            "id": "123",
        },
    ]
    r = live(cli, "-o", "csv", "news", "AAPL", "--limit", "1")
    assert list(csv.reader(io.StringIO(r.stdout))) == [
        ["time", "source", "provider", "headline", "sentiment", "id"],
        [
            "2020-03-06T02:35:53Z",
            "SS",
            "",
            "AAPL Positive - ‘high of the year’",
            "1.0",
            "SS$0c7d5080",
        ],
    ]
    r = live(cli, "news", "AAPL")
    assert r.exit_code == 0
    assert "AAPL Negative - simmered down" in r.stdout


RECORDED_PORTFOLIO = [  # the item keys a live probe of build 10.46.1l saw (issue 17)
    {
        "id": "BZ$1",
        "headline": "Apple &amp; suppliers: a recorded-shape headline",
        "source": "Benzinga",
        "provider": "BZ",
        "sentiment": "0.35",
        "receiptTime": 1775124000000,
        "tickers": ["AAPL", "MSFT"],
    },
    {
        "id": "DJ$2",
        "headline": "receiptTime as a string, tickers as one string",
        "source": "Dow Jones",
        "provider": "DJ-N",
        "sentiment": 0,
        "receiptTime": "2026-04-02 09:30:00",
        "tickers": "aapl,QQQ",
    },
    {
        "id": "DJ$3",
        "headline": "about IBM only",
        "source": "Dow Jones",
        "provider": "DJ-N",
        "receiptTime": 1775124000000,
        "tickers": ["IBM"],
    },
]


def test_live_portfolio_in_the_recorded_shape(ibgw_responses, cli):
    pin_search(ibgw_responses)
    landing = pin_landing(ibgw_responses, **NOT_FOUND)
    portfolio = pin_portfolio(ibgw_responses, json=RECORDED_PORTFOLIO)
    r = live(cli, "-o", "json", "news", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert (landing.call_count, portfolio.call_count) == (1, 1)
    assert records(r, ("undocumented", "GET /iserver/news/portfolio")) == [
        {
            "time": "2026-04-02T10:00:00Z",
            "source": "Benzinga",
            "provider": "BZ",
            "headline": "Apple & suppliers: a recorded-shape headline",
            "sentiment": 0.35,
            "id": "BZ$1",
        },
        {
            "time": "2026-04-02T09:30:00Z",
            "source": "Dow Jones",
            "provider": "DJ-N",
            "headline": "receiptTime as a string, tickers as one string",
            "sentiment": 0.0,
            "id": "DJ$2",
        },
    ]


def test_live_landing_empty_is_no_rows_and_ends_the_search(ibgw_responses, cli):
    pin_search(ibgw_responses)
    landing = pin_landing(ibgw_responses, json={"news": {"title": "News", "content": []}})
    portfolio = pin_portfolio(ibgw_responses, json=[])
    r = live(cli, "news", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "(no rows)\n"
    assert landing.call_count == 1 and portfolio.call_count == 0
    assert "0 items and no headlines for AAPL" in r.stderr


@pytest.mark.parametrize("status", [500, 502, 503])
def test_live_server_error_falls_through_to_the_next_variant(ibgw_responses, cli, status):
    pin_search(ibgw_responses)
    landing = pin_landing(ibgw_responses, status=status, json={"error": "down"})
    portfolio = pin_portfolio(ibgw_responses, json=RECORDED_PORTFOLIO)
    r = live(cli, "-o", "json", "news", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert (landing.call_count, portfolio.call_count) == (1, 1)
    assert [row["id"] for row in records(r)] == ["BZ$1", "DJ$2"]


def test_live_server_error_everywhere_is_unavailable(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, status=503, json={"error": "down"})
    pin_portfolio(ibgw_responses, status=500, json={"error": "down"})
    r = live(cli, "-o", "json", "news", "AAPL")
    assert r.exit_code == 4, r.stderr
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "gateway-error"
    assert all(key in err["message"] for key in VARIANTS)


def test_live_portfolio_variant_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, **NOT_FOUND)
    portfolio = pin_portfolio(
        ibgw_responses,
        json={
            "news": {
                "title": "News",
                "content": [
                    {
                        "newsId": "A",
                        "headlineContent": "about AAPL",
                        "conids": ["265598", "8314"],
                        "time": 1775124000000,
                    },
                    {
                        "newsId": "B",
                        "headlineContent": "about IBM",
                        "conid": 8314,
                        "time": 1775124000000,
                    },
                    {"newsId": "C", "headlineContent": "untagged", "time": 1775124000000},
                ],
            }
        },
    )
    r = live(cli, "-o", "json", "news", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert portfolio.call_count == 1
    assert [row["id"] for row in records(r)] == ["A"]


def test_live_portfolio_with_nothing_about_the_symbol(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, **NOT_FOUND)
    pin_portfolio(
        ibgw_responses,
        json=[
            {"newsId": "B", "headlineContent": "about IBM", "conid": 8314},
            {"id": "C", "headline": "about IBM too", "tickers": ["IBM"]},
        ],
    )
    r = live(cli, "news", "AAPL")
    assert r.exit_code == 0
    assert r.stdout == "(no rows)\n"
    # an empty result after filtering says how many items the gateway returned
    assert "only serves news about held positions: it returned 2 items, none about AAPL" in r.stderr


def test_live_unknown_shape_and_400_fall_through(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, status=400, json={"error": "Bad Request", "statusCode": 400})
    pin_portfolio(
        ibgw_responses, json=[{"newsId": "A", "headlineContent": "about AAPL", "conid": 265598}]
    )
    r = live(cli, "-o", "json", "news", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert [row["id"] for row in records(r)] == ["A"]


def test_live_none_served_exit_5(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, **NOT_FOUND)
    pin_portfolio(ibgw_responses, **NOT_FOUND)
    r = live(cli, "-o", "json", "news", "AAPL")
    assert r.exit_code == 5
    err = json.loads(r.stderr)["error"]
    assert [t.split(" (")[0] for t in err["tried"]] == list(VARIANTS)
    assert all(key in err["message"] for key in VARIANTS)


def test_live_unknown_symbol_exits_2(ibgw_responses, cli):
    pin_search(ibgw_responses, symbol="ZZZZ", body=[])
    pin_search(ibgw_responses, symbol="ZZZZ", body=[], sec_type="IND")
    r = live(cli, "news", "zzzz")
    assert r.exit_code == 2
    assert one_line(r.stderr) and "unknown symbol ZZZZ" in r.stderr


def test_live_allow_undocumented_off_sends_nothing(ibgw_responses, cli):
    r = cli("--backend", "live", "news", "AAPL", env={"IBGW_ALLOW_UNDOCUMENTED": "0"})
    assert r.exit_code == 5
    assert len(ibgw_responses.calls) == 0


def test_live_fyi_pinned(ibgw_responses, cli):
    fyi = ibgw_responses.add(
        "GET",
        f"{BASE}/fyi/notifications",
        match=[matchers.query_param_matcher({"max": "3"})],
        json=[
            {
                "R": 1,
                "D": "1775041875.0",
                "MS": "IBKR FYI: Mutual Fund/ETF Advisory",
                "MD": "There may be ETFs &amp; funds",
                "ID": "2026040190532092",
                "HT": 0,
                "FC": "MF",
            },
            {"R": "0", "D": 1775137800, "MS": None, "ID": 2026040290532101},
            {"unexpected": True},
        ],
    )
    r = live(cli, "-o", "json", "news", "fyi", "--limit", "3")
    assert r.exit_code == 0, r.stderr
    assert fyi.call_count == 1
    assert json.loads(r.stdout) == [
        {
            "time": "2026-04-02T13:50:00Z",
            "category": None,
            "headline": None,
            "body": None,
            "id": "2026040290532101",
            "read": False,
        },
        {
            "time": "2026-04-01T11:11:15Z",
            "category": "MF",
            "headline": "IBKR FYI: Mutual Fund/ETF Advisory",
            "body": "There may be ETFs & funds",
            "id": "2026040190532092",
            "read": True,
        },
        {"time": None, "category": None, "headline": None, "body": None, "id": None, "read": None},
    ]


def test_live_fyi_unread_pinned_and_cached(ibgw_responses, cli):
    ibgw_responses.add(
        "GET",
        f"{BASE}/fyi/notifications",
        match=[matchers.query_param_matcher({"max": "10"})],
        json=[
            {"R": 0, "D": "1775041875.0", "MS": "a", "ID": "1", "FC": "MF"},
            {"R": 1, "D": "1775041876.0", "MS": "b", "ID": "2", "FC": "MF"},
        ],
    )
    unread = ibgw_responses.add(
        "GET", f"{BASE}/fyi/unreadnumber", match=[matchers.query_param_matcher({})], json={"BN": 1}
    )
    r = live(cli, "-o", "json", "news", "fyi", "--unread")
    assert r.exit_code == 0, r.stderr
    assert [row["id"] for row in json.loads(r.stdout)] == ["1"]
    assert "IBKR reports 1 unread notification (just now)" in r.stderr
    r = live(cli, "news", "fyi", "--unread")
    # within 5 minutes: from the cache, no second call (IBKR would answer 423)
    assert unread.call_count == 1
    assert "checked" in r.stderr


def test_live_fyi_unread_423(ibgw_responses, cli):
    ibgw_responses.add("GET", f"{BASE}/fyi/notifications", json=[])
    ibgw_responses.add("GET", f"{BASE}/fyi/unreadnumber", status=423, body="")
    r = live(cli, "news", "fyi", "--unread")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "(no rows)\n"
    assert "unread count is not available" in r.stderr


# -- parsers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value,expected",
    [
        (1583462153000, "2020-03-06T02:35:53Z"),
        ("1583462153000", "2020-03-06T02:35:53Z"),
        ("1775041875.0", "2026-04-01T11:11:15Z"),
        (1775041875, "2026-04-01T11:11:15Z"),
        ("2020-03-06 02:35:53.0", "2020-03-06T02:35:53Z"),
        ("2020-03-05T16:28:46.65", "2020-03-05T16:28:46Z"),
        ("2026-04-02T14:31:05Z", "2026-04-02T14:31:05Z"),
        ("2026-04-02T16:31:05+02:00", "2026-04-02T14:31:05Z"),
        ("soon", None),
        (None, None),
        (True, None),
        ("", None),
        (float("nan"), None),
        (10**30, None),
    ],
)
def test_iso_time(value, expected):
    assert reads.iso_time(value) == expected


@pytest.mark.parametrize(
    "data,expected",
    [
        ([], []),
        ({"news": {"title": "News", "content": []}}, []),
        ({"news": {"title": "News"}}, []),
        ({"articles": [{"title": "t"}]}, [{"title": "t"}]),
        ({"news": [1]}, [1]),
        ({"error": "x"}, None),
        ({}, None),
        ("text", None),
        (None, None),
        ({"news": {"error": "x"}}, None),
    ],
)
def test_headline_items_shapes(data, expected):
    assert reads.headline_items(data) == expected


def test_read_declarations():
    found = {}
    ibgw_news.ibgw_register_reads(
        lambda read: found.setdefault(getattr(read, "key", read.name), read)
    )
    headlines = found["news headlines"]
    assert headlines.default and headlines.probe == {"symbol": "AAPL", "limit": 1}
    assert [e.provenance for e in headlines.endpoints] == ["undocumented"] * 2
    assert "/iserver/marketdata/news" not in [e.path for e in headlines.endpoints]
    assert all("[S1" in e.evidence for e in headlines.endpoints)
    fyi = found["news fyi"]
    assert {e.provenance for e in fyi.endpoints} == {"documented"}


def test_live_backend_against_the_fake_gateway_server(ibgw_pm, ibgw_fake_gateway, cli):
    """The acceptance path: the real live transport over a socket to the fake gateway
    (as 'ibgw fake-gateway serve'), serving the recorded-shape portfolio news."""
    ibgw_fake_gateway.scenario = "news-no-landing"
    r = cli("--backend", "live", "--gateway-url", ibgw_fake_gateway.url, "news", "AAPL")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "(no rows)" not in r.stdout
    assert "2026-04-02T10:00:00Z" in r.stdout
    assert "Apple: analysts see steady margins" in r.stdout
    assert any(req[1].endswith("/iserver/news/portfolio") for req in ibgw_fake_gateway.requests)


@pytest.mark.parametrize(
    "item,symbol,about",
    [
        ({"tickers": ["AAPL"]}, "AAPL", True),
        ({"tickers": ["aapl"]}, "AAPL", True),
        ({"tickers": "MSFT, AAPL"}, "AAPL", True),
        ({"tickers": "MSFT;AAPL"}, "AAPL", True),
        ({"tickers": [{"symbol": "AAPL"}]}, "AAPL", True),
        ({"tickers": ["AAPLX"]}, "AAPL", False),
        ({"tickers": []}, "AAPL", False),
        ({"tickers": None}, "AAPL", False),
        ({"conid": 265598}, "AAPL", True),
        ({"conids": "1,265598"}, "AAPL", True),
        ({}, "AAPL", False),
        ("not an item", "AAPL", False),
    ],
)
def test_portfolio_items_matched_by_tickers_or_conid(item, symbol, about):
    assert reads._about(item, 265598, symbol) is about
