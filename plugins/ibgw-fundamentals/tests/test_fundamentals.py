"""ibgw-fundamentals: every section, every variant, the documented snapshot fallback.

Fake-backend tests use the plugin's fixtures plus ``ibgw_fake.market`` (the
documented snapshot, with its stateful pre-flight); live tests pin every request
with ``responses``.
"""

import csv
import io
import json

import ibgw_fundamentals
import pytest
from ibgw_fundamentals import reads
from responses import matchers

BASE = "https://localhost:5000/v1/api"
NOT_FOUND = {
    "status": 404,
    "body": "<html><body><h1>Resource not found</h1></body></html>",
    "content_type": "text/html",
}
SEARCH = [
    {
        "conid": "265598",
        "companyHeader": "APPLE INC - NASDAQ",
        "companyName": "APPLE INC",
        "symbol": "AAPL",
        "description": "NASDAQ",
        "sections": [{"secType": "STK"}],
    }
]
LANDING_KEY = "GET /fundamentals/landing/{conid}"
SNAPSHOT_KEY = "GET /iserver/marketdata/snapshot"
SUMMARY_FIELDS = "7051,7280,7281,31,7293,7294,7671,7672,7674,7675,7676,7677,7283,7087,6509"


@pytest.fixture
def cli(ibgw_pm, ibgw_cli, monkeypatch):
    try:
        import ibgw_fake.market
    except ImportError:  # pragma: no cover - the fake market is another engineer's module
        pytest.skip("ibgw_fake.market is not available")
    ibgw_pm.register(ibgw_fake.market)
    ibgw_pm.register(ibgw_fundamentals)
    monkeypatch.setattr(reads, "POLL_INTERVAL", 0.0)
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def rows_of(result, provenance=None) -> list[dict]:
    """The JSON records without the provenance the CLI adds to each record of a read
    whose endpoint varies (checked to be the same on every record, and equal to
    ``provenance`` = (provenance, endpoint) when given)."""
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    seen = {(r.pop("provenance"), r.pop("endpoint")) for r in rows}
    assert len(seen) <= 1, seen
    if provenance is not None and rows:
        assert seen == {provenance}
    return rows


def fields(rows) -> dict:
    return {r["field"]: r["value"] for r in rows}


# -- fake backend -----------------------------------------------------------------------
def test_summary_from_landing(cli):
    r = cli("fundamentals", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["field", "value", "period", "source"]
    assert "undocumented endpoint (GET /fundamentals/landing/{conid})" in r.stderr
    rows = rows_of(cli("fundamentals", "AAPL", "-o", "json"), ("undocumented", LANDING_KEY))
    got = fields(rows)
    assert got["analyst consensus"] == "Buy"
    assert got["price target (average)"] == "214.35"
    assert got["description"].startswith("Apple Inc. designs")
    assert len(got["description"]) <= reads.TEXT_CHARS
    assert {r["section"] for r in rows} == {"summary"}
    assert {r["source"] for r in rows} == {"landing:about", "landing:ratings"}
    target = next(r for r in rows if r["field"] == "analysts: buy")
    assert target["number"] == 28.0


def test_summary_falls_back_to_iserver_summary(cli):
    rows = rows_of(
        cli("--scenario", "fundamentals-no-landing", "-o", "json", "fundamentals", "AAPL")
    )
    got = fields(rows)
    assert got["company name"] == "Apple Inc"
    assert got["market cap"] == "2.85T"
    assert got["industry"] == "Technology"
    assert "conid" not in got
    assert all(r["source"].startswith("summary:") for r in rows)


@pytest.mark.parametrize("scenario", ["documented-only", "allow-undocumented-off"])
def test_summary_falls_back_to_documented_snapshot(cli, scenario, ibgw_env):
    args = ("--scenario", "documented-only") if scenario == "documented-only" else ()
    env = {"IBGW_ALLOW_UNDOCUMENTED": "0"} if scenario != "documented-only" else {}
    r = cli(*args, "-o", "json", "fundamentals", "AAPL", env=env)
    rows = rows_of(r, ("documented", SNAPSHOT_KEY))
    got = fields(rows)
    assert got["company name"] == "APPLE INC"
    assert got["industry"] == "Technology" and got["category"] == "Computers"
    assert got["EMA 200"] == "181.40" and got["dividends (forward)"] == "1.00"
    assert got["option implied vol (30 days)"] == "24.9%"
    assert next(r for r in rows if r["field"] == "last price")["number"] == 189.63
    assert next(r for r in rows if r["field"] == "industry")["number"] is None
    assert all(r["source"].startswith("snapshot:") for r in rows)
    assert "documented market-data snapshot" in r.stderr
    r = cli(*args, "fundamentals", "AAPL", env=env)
    assert r.exit_code == 0
    assert "undocumented" not in r.stderr


def test_snapshot_fallback_provenance_is_documented(ibgw_pm, ibgw_env, monkeypatch):
    import ibgw_fake.market

    from ibgw.app import App
    from ibgw.runner import run_read

    ibgw_pm.register(ibgw_fake.market)
    ibgw_pm.register(ibgw_fundamentals)
    monkeypatch.setattr(reads, "POLL_INTERVAL", 0.0)
    app = App(ibgw_pm, {"backend": "fake", "scenario": "documented-only"})
    read = app.reads.get("fundamentals", "show")
    outcome = run_read(app, read, {"symbol": "SPY", "section": "dividends"})
    assert (outcome.provenance, outcome.variant) == ("documented", SNAPSHOT_KEY)
    assert fields(outcome.records) == {
        "dividends (forward)": "6.88",
        "dividends (trailing 12 months)": "6.71",
        "last price": "501.42",
    }
    app = App(ibgw_pm, {"backend": "fake"})
    outcome = run_read(app, read, {"symbol": "SPY", "section": "dividends"})
    assert (outcome.provenance, outcome.variant) == (
        "undocumented",
        "GET /fundamentals/dividends/{conid}",
    )


def test_financials_from_statement_and_landing(cli):
    r = cli("-o", "json", "fundamentals", "AAPL", "--section", "financials")
    rows = rows_of(r)
    revenue = next(r for r in rows if r["field"] == "Total Revenue")
    assert revenue == {
        "section": "financials",
        "field": "Total Revenue",
        "value": "416.16K",
        "number": 416160.0,
        "period": "Sep 27, 25",
        "source": "financials:income",
    }
    assert "IN MILLIONS OF USD (except per share item)" in r.stderr
    rows = rows_of(
        cli(
            "--scenario",
            "fundamentals-landing-only",
            "-o",
            "json",
            "fundamentals",
            "AAPL",
            "--section",
            "financials",
        )
    )
    revenue = next(r for r in rows if r["field"] == "Total Revenue")
    assert (revenue["value"], revenue["period"], revenue["number"]) == ("420.45B", "TTM", 420.45e9)


def test_financials_of_an_etf_is_works_no_rows(cli):
    r = cli("fundamentals", "SPY", "--section", "financials")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "(no rows)\n"
    assert "no financials for SPY" in r.stderr


@pytest.mark.parametrize("section", ["financials", "ratios"])
def test_sections_without_documented_fallback_exit_5(cli, section):
    r = cli("--scenario", "documented-only", "fundamentals", "AAPL", "--section", section)
    assert r.exit_code == 5
    assert one_line(r.stderr)
    assert "fall back to the documented snapshot" in r.stderr
    r = cli(
        "--scenario", "documented-only", "-o", "json", "fundamentals", "AAPL", "--section", section
    )
    err = json.loads(r.stderr)["error"]
    expected = {
        "financials": ["GET /fundamentals/financials/{conid}", LANDING_KEY],
        "ratios": [LANDING_KEY, "GET /fundamentals/ratio_details/{conid}"],
    }[section]
    assert [t.split(" (")[0] for t in err["tried"]] == expected
    assert all(key in err["message"] for key in expected)


def test_allow_undocumented_off_financials_exit_5(cli):
    r = cli(
        "-o",
        "json",
        "fundamentals",
        "AAPL",
        "--section",
        "financials",
        env={"IBGW_ALLOW_UNDOCUMENTED": "0"},
    )
    assert r.exit_code == 5
    err = json.loads(r.stderr)["error"]
    assert all("undocumented, disabled" in t for t in err["tried"])


def test_ratios_from_landing_then_ratio_details(cli):
    rows = rows_of(cli("-o", "json", "fundamentals", "AAPL", "--section", "ratios"))
    got = fields(rows)
    assert got["P/E Excl. Ex. Items"] == "25.42"
    assert got["P/E Excl. Ex. Items (industry average)"] == "21.10"
    rows = rows_of(
        cli(
            "--scenario",
            "fundamentals-no-landing",
            "-o",
            "json",
            "fundamentals",
            "AAPL",
            "--section",
            "ratios",
        )
    )
    assert [r["source"] for r in rows] == [
        "ratio_details:PENORM",
        "ratio_details:PENORM",
        "ratio_details:GROSMGN",
        "ratio_details:GROSMGN",
        "ratio_details:PR2TANBK",
        "ratio_details:PR2TANBK",
    ]
    assert fields(rows)["Price to Tangible Book (5Y AVG)"] == "31.75"
    # SPY: only the first search id is answered; the others are skipped
    rows = rows_of(
        cli(
            "--scenario",
            "fundamentals-no-landing",
            "-o",
            "json",
            "fundamentals",
            "SPY",
            "--section",
            "ratios",
        )
    )
    assert fields(rows) == {"P/E (normalized)": "24.12", "P/E (normalized) (5Y AVG)": "22.80"}


def test_dividends_every_variant(cli):
    rows = rows_of(cli("-o", "json", "fundamentals", "AAPL", "--section", "dividends"))
    got = fields(rows)
    assert got["dividend yield"] == "0.52%"
    assert got["next ex-dividend date"] == "2026-05-11"
    paid = [(r["period"], r["number"]) for r in rows if r["field"] == "dividend paid"]
    assert paid == [
        ("2026-02-09", 0.25),
        ("2025-11-10", 0.25),
        ("2025-08-11", 0.24),
        ("2025-05-12", 0.24),
    ]
    rows = rows_of(
        cli(
            "--scenario",
            "fundamentals-landing-only",
            "-o",
            "json",
            "fundamentals",
            "AAPL",
            "--section",
            "dividends",
        )
    )
    got = fields(rows)
    assert (got["annual dividend"], got["next ex-dividend date"]) == ("$0.98", "2026-05-11")
    rows = rows_of(
        cli(
            "--scenario",
            "documented-only",
            "-o",
            "json",
            "fundamentals",
            "AAPL",
            "--section",
            "dividends",
        )
    )
    assert fields(rows) == {
        "dividends (forward)": "1.00",
        "dividends (trailing 12 months)": "0.98",
        "last price": "189.63",
    }


def test_csv_output(cli):
    r = cli("-o", "csv", "fundamentals", "SPY", "--section", "dividends")
    assert r.exit_code == 0, r.stderr
    table = list(csv.reader(io.StringIO(r.stdout)))
    assert table[0] == ["section", "field", "value", "number", "period", "source"]
    assert table[1] == [
        "dividends",
        "dividend yield",
        "1.34%",
        "1.34",
        "TTM",
        "dividends:industry_comparison",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("fundamentals", "AAPL", "--section", "esg"),
        ("fundamentals", "A/B"),
        ("fundamentals", "show", "AAPL", "--section", ""),
    ],
)
def test_bad_input_exits_2(cli, args):
    r = cli(*args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "scenario,code", [("missing-session", 3), ("gateway-down", 4), ("server-error", 4)]
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    r = cli("--scenario", scenario, "fundamentals", "AAPL")
    assert r.exit_code == code
    assert one_line(r.stderr)


# -- live transport, every request pinned ---------------------------------------------------
def live(cli, *args, **kw):
    return cli("--backend", "live", *args, **kw)


def pin_search(rsps):
    rsps.add(
        "GET",
        f"{BASE}/iserver/secdef/search",
        json=SEARCH,
        match=[matchers.query_param_matcher({"symbol": "AAPL", "secType": "STK"})],
    )


def pin_landing(rsps, widgets, **answer):
    return rsps.add(
        "GET",
        f"{BASE}/fundamentals/landing/265598",
        match=[matchers.query_param_matcher({"widgets": widgets, "lang": "en"})],
        **answer,
    )


def pin(rsps, path, query=None, **answer):
    return rsps.add(
        "GET", f"{BASE}{path}", match=[matchers.query_param_matcher(query or {})], **answer
    )


def test_live_summary_landing_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    call = pin_landing(
        ibgw_responses,
        "profile,ratings",
        json={
            "about": {"title": "About", "content": "<b>Apple</b> &amp; co."},
            "ratings": {
                "title": "Analyst Ratings",
                "content": {"summary": {"consensus": "Hold", "buy": "3"}},
            },
        },
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL")
    assert call.call_count == 1
    assert rows_of(r) == [
        {
            "section": "summary",
            "field": "description",
            "value": "Apple & co.",
            "number": None,
            "period": None,
            "source": "landing:about",
        },
        {
            "section": "summary",
            "field": "analyst consensus",
            "value": "Hold",
            "number": None,
            "period": None,
            "source": "landing:ratings",
        },
        {
            "section": "summary",
            "field": "analysts: buy",
            "value": "3",
            "number": 3.0,
            "period": None,
            "source": "landing:ratings",
        },
    ]


def test_live_summary_iserver_summary_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(
        ibgw_responses, "profile,ratings", json={"error": "widgets unavailable"}
    )  # unknown shape
    call = pin(
        ibgw_responses,
        "/iserver/fundamentals/265598/summary",
        json={
            "conid": "265598",
            "companyName": "Apple Inc",
            "employees": 164000,
            "nested": {"x": 1},
            "about": {"title": "About", "content": "Designs phones."},
        },
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL")
    assert call.call_count == 1
    assert fields(rows_of(r)) == {
        "description": "Designs phones.",
        "company name": "Apple Inc",
        "employees": "164000",
    }


def test_live_summary_snapshot_pinned_with_preflight(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, "profile,ratings", **NOT_FOUND)
    pin(
        ibgw_responses,
        "/iserver/fundamentals/265598/summary",
        status=400,
        json={"error": "Bad Request", "statusCode": 400},
    )
    accounts = pin(ibgw_responses, "/iserver/accounts", json={"accounts": ["DU1234567"]})
    query = {"conids": "265598", "fields": SUMMARY_FIELDS}
    first = pin(
        ibgw_responses,
        "/iserver/marketdata/snapshot",
        query,
        json=[{"conid": 265598, "conidEx": "265598"}],
    )
    r = None
    # responses answers registrations of the same request in order (the last one repeats)
    second = pin(
        ibgw_responses,
        "/iserver/marketdata/snapshot",
        query,
        json=[
            {
                "conid": "265598",
                "conidEx": "265598",
                "_updated": 1775169600000,
                "6509": "RpB",
                "7051": "APPLE INC",
                "7280": "Technology",
                "31": "C189.63",
                "7674": "181.40",
                "7283": "24.9%",
            }
        ],
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL")
    rows = rows_of(r)
    assert accounts.call_count == 1 and first.call_count == 1 and second.call_count == 1
    assert fields(rows) == {
        "company name": "APPLE INC",
        "industry": "Technology",
        "last price": "C189.63",
        "EMA 200": "181.40",
        "option implied vol (30 days)": "24.9%",
    }
    assert next(x for x in rows if x["field"] == "last price")["number"] == 189.63
    r = live(cli, "-o", "csv", "fundamentals", "AAPL")
    assert list(csv.reader(io.StringIO(r.stdout)))[1] == [
        "summary",
        "company name",
        "APPLE INC",
        "",
        "",
        "snapshot:7051",
    ]


def test_live_snapshot_never_fills_is_bounded(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin(ibgw_responses, "/iserver/accounts", json={"accounts": ["DU1234567"]})
    snap = pin(
        ibgw_responses,
        "/iserver/marketdata/snapshot",
        {"conids": "265598", "fields": SUMMARY_FIELDS},
        json=[{"conid": 265598, "conidEx": "265598"}],
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", env={"IBGW_ALLOW_UNDOCUMENTED": "0"})
    assert r.exit_code == 5
    assert snap.call_count == reads.SNAPSHOT_POLLS == 6  # the pre-flight plus 5 re-polls
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "not-served"
    assert err["tried"][-1] == f"{SNAPSHOT_KEY} (no-data)"
    assert [t.split(" (")[0] for t in err["tried"]] == [
        LANDING_KEY,
        "GET /iserver/fundamentals/{conid}/summary",
        SNAPSHOT_KEY,
    ]


def test_live_snapshot_not_subscribed_is_not_entitled(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin(ibgw_responses, "/iserver/accounts", json={"accounts": ["DU1234567"]})
    snap = pin(
        ibgw_responses,
        "/iserver/marketdata/snapshot",
        {"conids": "265598", "fields": SUMMARY_FIELDS},
        json=[{"conid": 265598, "conidEx": "265598", "6509": "N"}],
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", env={"IBGW_ALLOW_UNDOCUMENTED": "0"})
    assert r.exit_code == 5
    assert snap.call_count == 1
    assert json.loads(r.stderr)["error"]["reason"] == "not-entitled"


def test_live_allow_undocumented_off_calls_no_undocumented_path(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin(ibgw_responses, "/iserver/accounts", json={"accounts": ["DU1234567"]})
    pin(
        ibgw_responses,
        "/iserver/marketdata/snapshot",
        {"conids": "265598", "fields": "7671,7672,31,6509"},
        json=[{"conid": 265598, "7671": "1.00", "7672": "0.98", "31": "189.63"}],
    )
    r = live(
        cli,
        "-o",
        "json",
        "fundamentals",
        "AAPL",
        "--section",
        "dividends",
        env={"IBGW_ALLOW_UNDOCUMENTED": "0"},
    )
    assert fields(rows_of(r)) == {
        "dividends (forward)": "1.00",
        "dividends (trailing 12 months)": "0.98",
        "last price": "189.63",
    }
    paths = [c.request.path_url.split("?")[0] for c in ibgw_responses.calls]
    assert paths == [
        "/v1/api/iserver/secdef/search",
        "/v1/api/iserver/accounts",
        "/v1/api/iserver/marketdata/snapshot",
    ]


def test_live_financials_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    call = pin(
        ibgw_responses,
        "/fundamentals/financials/265598",
        {"annual": "true", "type": "income"},
        json={
            "generalInfo": [{"name": "Total Revenue", "value": "416.16B", "date": "20250927"}],
            "table": {"columns": [], "rows": []},
        },
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", "--section", "financials")
    assert call.call_count == 1
    assert rows_of(r) == [
        {
            "section": "financials",
            "field": "Total Revenue",
            "value": "416.16B",
            "number": 416.16e9,
            "period": "2025-09-27",
            "source": "financials:income:generalInfo",
        }
    ]


def test_live_financials_landing_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin(
        ibgw_responses,
        "/fundamentals/financials/265598",
        {"annual": "true", "type": "income"},
        **NOT_FOUND,
    )
    call = pin_landing(
        ibgw_responses,
        "financials",
        json={
            "financial": {
                "title": "Financials",
                "content": {
                    "data": [
                        {
                            "name": "Total Revenue",
                            "current": "420.45B",
                            "trend": [{"value": 4.2045e11, "year": "TTM"}],
                        },
                        {"name": "No value"},
                    ]
                },
            }
        },
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", "--section", "financials")
    assert call.call_count == 1
    assert rows_of(r) == [
        {
            "section": "financials",
            "field": "Total Revenue",
            "value": "420.45B",
            "number": 4.2045e11,
            "period": "TTM",
            "source": "landing:financial",
        }
    ]


def test_live_ratios_landing_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    call = pin_landing(
        ibgw_responses,
        "key_ratios",
        json={
            "key_ratios": {
                "content": {"data": [{"name": "Current Ratio", "value": "0.87", "indAvg": None}]}
            }
        },
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", "--section", "ratios")
    assert call.call_count == 1
    assert fields(rows_of(r)) == {"Current Ratio": "0.87"}


def test_live_ratio_details_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, "key_ratios", **NOT_FOUND)
    calls = []
    for search_id, _label in reads.RATIO_SEARCH_IDS:
        answer = {
            "meta": {"ttm": "TTM", "average": "5Y AVG"},
            "data": [
                {"symbol": "X", "ttm": "1"},
                {"isRequestedTicker": True, "ttm": "2.5", "ttmValue": 2.5, "average": "-"},
            ],
        }
        if search_id.startswith("C|PR2TANBK"):
            calls.append(
                pin(
                    ibgw_responses,
                    "/fundamentals/ratio_details/265598",
                    {"search_id": search_id},
                    **NOT_FOUND,
                )
            )
        else:
            calls.append(
                pin(
                    ibgw_responses,
                    "/fundamentals/ratio_details/265598",
                    {"search_id": search_id},
                    json=answer,
                )
            )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", "--section", "ratios")
    assert [c.call_count for c in calls] == [1, 1, 1]
    # no 'trend' name in meta: the label ibgw keeps for the search id
    assert fields(rows_of(r)) == {
        "P/E (normalised)": "2.5",
        "P/E (normalised) (5Y AVG)": "-",
        "Gross margin": "2.5",
        "Gross margin (5Y AVG)": "-",
    }
    sent = [c.request.url for c in ibgw_responses.calls if "ratio_details" in c.request.url]
    assert sent[2].endswith(
        "search_id=C%7CPR2TANBK%2CLAST_DAY%2C0%2C%28%28C%7CTANBVPS%2CLFI%2C0%29%29"
    )


def test_live_ratio_details_first_missing_means_not_served(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(ibgw_responses, "key_ratios", **NOT_FOUND)
    first = pin(
        ibgw_responses,
        "/fundamentals/ratio_details/265598",
        {"search_id": "C|PENORM,LAST_DAY,0"},
        **NOT_FOUND,
    )
    r = live(cli, "fundamentals", "AAPL", "--section", "ratios")
    assert r.exit_code == 5
    assert (
        first.call_count == 1 and len(ibgw_responses.calls) == 3
    )  # search, landing, first ratio only


def test_live_dividends_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    call = pin(
        ibgw_responses,
        "/fundamentals/dividends/265598",
        json={
            "next_dividend": {
                "content": {
                    "dividend_amount": "0.25",
                    "formatted_dividend_amount": "$0.25",
                    "ex_dividend_date": {"d": "11", "m": "may", "y": 2026},
                    "payment_date": "20260514",
                }
            },
            "history": {
                "series": [
                    {"name": "price", "plotData": [{"x": 1, "y": 189.0}]},
                    {
                        "name": "dividends",
                        "plotData": [
                            {
                                "x": 1770595200000,
                                "amount": 0.25,
                                "type": "ACTUAL",
                                "ex_dividend_date": {"d": 9, "m": "FEB", "y": 2026},
                            },
                            {"x": 1778457600000, "amount": 0.25, "type": "ESTIMATE"},
                        ],
                    },
                ]
            },
        },
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", "--section", "dividends")
    assert call.call_count == 1
    rows = rows_of(r)
    assert [(x["field"], x["value"], x["period"]) for x in rows] == [
        ("next dividend", "$0.25", None),
        ("next ex-dividend date", "2026-05-11", None),
        ("next payment date", "2026-05-14", None),
        ("dividend paid", "0.25", "2026-02-09"),
    ]


def test_live_dividends_landing_pinned(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin(
        ibgw_responses,
        "/fundamentals/dividends/265598",
        status=400,
        json={"error": "x", "statusCode": 400},
    )
    call = pin_landing(
        ibgw_responses,
        "dividends",
        json={
            "dividends": {
                "content": {
                    "formatted_yield_ttm": "0.52%",
                    "yield_ttm": 0.0052,
                    "dividend_data": {"ex_dividend_date": {"d": 1}},
                }
            }
        },
    )
    r = live(cli, "-o", "json", "fundamentals", "AAPL", "--section", "dividends")
    assert call.call_count == 1
    assert rows_of(r) == [
        {
            "section": "dividends",
            "field": "dividend yield",
            "value": "0.52%",
            "number": 0.52,
            "period": "TTM",
            "source": "landing:dividends",
        }
    ]


def test_live_table_output(ibgw_responses, cli):
    pin_search(ibgw_responses)
    pin_landing(
        ibgw_responses,
        "dividends",
        json={"dividends": {"content": {"formatted_yield_ttm": "0.52%"}}},
    )
    pin(ibgw_responses, "/fundamentals/dividends/265598", **NOT_FOUND)
    r = live(cli, "fundamentals", "AAPL", "--section", "dividends")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[2].split() == [
        "dividend",
        "yield",
        "0.52%",
        "TTM",
        "landing:dividends",
    ]


# -- parsers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value,expected",
    [
        ({"d": 7, "m": "FEB", "y": 2020}, "2020-02-07"),
        ({"d": "7", "m": "feb", "y": "2020"}, "2020-02-07"),
        ("20200207", "2020-02-07"),
        ({"d": 7, "m": "XYZ", "y": 2020}, None),
        ({}, None),
        (None, None),
        ("2020", None),
    ],
)
def test_ymd(value, expected):
    assert reads.ymd(value) == expected


@pytest.mark.parametrize("data", [None, [], "x", {}, {"error": "no"}, {"unknown": {"a": 1}}])
def test_unknown_shapes_are_unrecognised(data):
    for parse in (
        lambda d: reads.parse_widgets("summary", d, "landing"),
        lambda d: reads.parse_summary("summary", d),
        lambda d: reads.parse_financials("financials", d, "income"),
        lambda d: reads.parse_ratio("ratios", d, "C|PENORM,LAST_DAY,0", "P/E"),
        lambda d: reads.parse_dividends("dividends", d),
    ):
        with pytest.raises(reads.Unrecognised):
            parse(data)


def test_read_declaration():
    found = {}
    ibgw_fundamentals.ibgw_register_reads(
        lambda read: found.setdefault(getattr(read, "key", read.name), read)
    )
    read = found["fundamentals show"]
    assert read.default and read.probe == {"symbol": "AAPL", "section": "summary"}
    for section, variants in ibgw_fundamentals.SECTION_VARIANTS.items():
        assert set(variants) <= set(read.endpoints), section
    documented = {e.key for e in read.endpoints if e.provenance == "documented"}
    assert documented == {SNAPSHOT_KEY}
    assert all("[S11]" in e.evidence for e in read.endpoints if e.provenance == "undocumented")
