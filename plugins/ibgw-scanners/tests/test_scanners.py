"""ibgw-scanners: parameter tree (cached, paced), locations, filters and scanner runs.

Two kinds of tests: against the fake backend (the plugin's own fixtures), and against
the live transport with every request pinned by ``responses``.
"""

import csv
import io
import json
import time

import ibgw_scanners
import pytest
from ibgw_scanners import reads
from responses import matchers

from ibgw.pacing import Pacer

BASE = "https://localhost:5000/v1/api"
REAL_ACQUIRE = Pacer.acquire  # taken before ibgw_responses frees every pacing slot


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_scanners)
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def table_header(stdout: str) -> list[str]:
    return stdout.splitlines()[0].split()


# -- fake backend -------------------------------------------------------------------
def test_params_lists_scan_types_and_caches_the_tree(cli):
    r = cli("scanners", "params", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    codes = [row["code"] for row in rows]
    assert len(codes) == 12
    assert {"TOP_PERC_GAIN", "MOST_ACTIVE", "HOT_BY_VOLUME"} <= set(codes)
    top = rows[codes.index("TOP_PERC_GAIN")]
    assert top == {
        "code": "TOP_PERC_GAIN",
        "name": "Top % Gainers",
        "instruments": ["STK", "ETF.EQ.US", "FUT.US"],
    }
    assert "cached" not in r.stderr  # fetched now
    r = cli("scanners", "params", "-o", "json")
    assert r.exit_code == 0
    assert "note: scanner parameters cached" in r.stderr and "ago" in r.stderr


def test_params_is_the_default_read_and_filters(cli):
    r = cli("scanners", "--instrument", "etf.eq.us", "-o", "json")
    assert r.exit_code == 0, r.stderr
    codes = {row["code"] for row in json.loads(r.stdout)}
    assert "HALTED" not in codes and "HIGH_DIVIDEND_YIELD_IB" not in codes
    assert "MOST_ACTIVE" in codes and len(codes) == 9
    r = cli("scanners", "params", "--search", "GAIN")
    assert r.exit_code == 0
    assert table_header(r.stdout) == ["code", "name", "instruments"]
    assert [line.split()[0] for line in r.stdout.splitlines()[2:]] == [
        "TOP_PERC_GAIN",
        "TOP_OPEN_PERC_GAIN",
    ]
    r = cli("scanners", "params", "--search", "hot contracts", "--instrument", "STK", "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["code"] for row in rows] == ["HOT_BY_VOLUME", "HOT_BY_PRICE"]
    assert json.loads(rows[0]["instruments"]) == ["STK", "ETF.EQ.US"]


def test_locations_and_filters(cli):
    r = cli("scanners", "locations", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"location": "STK.US.MAJOR", "name": "Listed/NASDAQ", "group": "STK"},
        {"location": "STK.US", "name": "US Stocks (all)", "group": "STK"},
        {"location": "ETF.EQ.US.MAJOR", "name": "US Equity ETFs (listed)", "group": "ETF.EQ.US"},
    ]
    r = cli("scanners", "locations", "--instrument", "ETF.EQ.US", "-o", "json")
    assert [row["location"] for row in json.loads(r.stdout)] == ["ETF.EQ.US.MAJOR"]
    r = cli("scanners", "filters", "-o", "json")
    rows = json.loads(r.stdout)
    assert [row["code"] for row in rows] == [
        "priceAbove",
        "priceBelow",
        "volumeAbove",
        "marketCapAbove1e6",
        "stkTypes",
    ]
    assert rows[-1]["kind"] == "combo" and rows[0]["kind"] == "non-range"
    r = cli("scanners", "filters", "--instrument", "ETF.EQ.US")
    assert table_header(r.stdout) == ["code", "name", "group", "kind"]
    assert "marketCapAbove1e6" not in r.stdout and "priceBelow" in r.stdout


def test_run_table_json_csv(cli):
    args = (
        "scanners",
        "run",
        "--type",
        "top_perc_gain",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
        "--filter",
        "priceAbove=5",
    )
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    assert table_header(r.stdout) == [
        "rank",
        "symbol",
        "conid",
        "company",
        "exchange",
        "sec_type",
        "scan_value",
    ]
    assert "note: scan_value is Chg%" in r.stderr
    r = cli(*args, "-o", "json")
    rows = json.loads(r.stdout)
    assert rows[0] == {
        "rank": 1,
        "symbol": "GV",
        "conid": 706149062,
        "company": "VISIONARY HOLDINGS INC",
        "exchange": "NASDAQ.SCM",
        "sec_type": "STK",
        "scan_value": "41.20%",
        "scan_column": "Chg%",
    }
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]
    r = cli(*args, "-o", "csv")
    parsed = list(csv.reader(io.StringIO(r.stdout)))
    assert parsed[0] == [
        "rank",
        "symbol",
        "conid",
        "company",
        "exchange",
        "sec_type",
        "scan_value",
        "scan_column",
    ]
    assert parsed[1] == [
        "1",
        "GV",
        "706149062",
        "VISIONARY HOLDINGS INC",
        "NASDAQ.SCM",
        "STK",
        "41.20%",
        "Chg%",
    ]


def test_run_results_differ_per_type(cli):
    def symbols(scan, instrument="STK", location="STK.US.MAJOR"):
        r = cli(
            "scanners",
            "run",
            "--type",
            scan,
            "--instrument",
            instrument,
            "--location",
            location,
            "-o",
            "json",
        )
        assert r.exit_code == 0, r.stderr
        return [row["symbol"] for row in json.loads(r.stdout)]

    assert symbols("MOST_ACTIVE") == ["SPY", "TSLA", "NVDA", "AAPL", "QQQ"]
    assert symbols("HOT_BY_VOLUME") == ["NVDA", "TSLA", "AMD", "AAPL"]
    assert symbols("MOST_ACTIVE", "ETF.EQ.US", "ETF.EQ.US.MAJOR") == ["SPY", "QQQ", "IWM"]
    r = cli("scanners", "run", "--type", "HALTED", "--instrument", "STK", "--location", "STK.US")
    assert r.exit_code == 0 and "(no rows)" in r.stdout
    assert "the scanner returned no contracts" in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--type", "NOT_A_SCAN"), "unknown scan type NOT_A_SCAN"),
        (("--type", "HALTED", "--instrument", "ETF.EQ.US"), "not available for ETF.EQ.US"),
        (("--filter", "priceAbove:5"), "expected CODE=VALUE"),
        (("--filter", "priceAbove="), "expected CODE=VALUE"),
        (("--filter", "price Above=5"), "expected CODE=VALUE"),
        (("--filter", "notAFilter=5"), "unknown filter code notAFilter"),
        (("--location", "MARS.COLONY"), "unknown scanner location"),
        (("--instrument", "BOND.XX"), "unknown instrument type BOND.XX"),
        (("--type", "TOP;rm"), "invalid value"),
        (("--location", "STK/../x"), "invalid value"),
    ],
)
def test_run_bad_input_exits_2_with_one_line(cli, args, needle):
    base = {"--type": "MOST_ACTIVE", "--instrument": "STK", "--location": "STK.US.MAJOR"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = []
    for key, value in {**base, **given}.items():
        if key != "--filter":
            argv += [key, value]
    if "--filter" in given:
        argv += ["--filter", given["--filter"]]
    r = cli("scanners", "run", *argv)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr
    assert needle in r.stderr


def test_run_missing_required_option_exits_2(cli):
    r = cli("scanners", "run", "--type", "MOST_ACTIVE")
    assert r.exit_code == 2
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "scenario,code",
    [
        ("missing-session", 3),
        ("no-bridge", 3),
        ("gateway-down", 4),
        ("rate-limited", 4),
        ("malformed-response", 4),
        ("login-page", 3),
        ("server-error", 4),
    ],
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    r = cli("--scenario", scenario, "scanners", "params")
    assert r.exit_code == code, r.stderr
    assert one_line(r.stderr)


def test_documented_only_serves_everything(cli):
    r = cli(
        "--scenario",
        "documented-only",
        "scanners",
        "run",
        "--type",
        "MOST_ACTIVE",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
    )
    assert r.exit_code == 0, r.stderr
    assert "undocumented" not in r.stderr


def test_parse_filter_values():
    assert reads.parse_filter("priceAbove=5") == ("priceAbove", 5)
    assert reads.parse_filter("priceBelow=12.5") == ("priceBelow", 12.5)
    assert reads.parse_filter("marketCapAbove1e6=1e3") == ("marketCapAbove1e6", 1000)
    assert reads.parse_filter("changePercAbove=-2") == ("changePercAbove", -2)
    assert reads.parse_filter("stkTypes=inc:CORP") == ("stkTypes", "inc:CORP")
    assert reads.parse_filter("hasOptionsIs=true") == ("hasOptionsIs", True)
    value = reads.parse_filter("priceAbove=5")[1]
    assert isinstance(value, int) and not isinstance(value, bool)


# -- live transport, every request pinned -------------------------------------------
PARAMS_ANSWER = {  # the S3 recording's shape (STK.US location group), trimmed
    "scan_type_list": [
        {
            "display_name": "Top % Gainers",
            "code": "TOP_PERC_GAIN",
            "instruments": ["STK", "ETF.EQ.US", "FUT.US"],
        },
        {"display_name": "Most Active", "code": "MOST_ACTIVE", "instruments": ["STK"]},
        {"display_name": "no code"},
        "not an object",
    ],
    "instrument_list": [
        {"display_name": "US Stocks", "type": "STK", "filters": ["priceAbove", "marketCapAbove1e6"]}
    ],
    "filter_list": [
        {
            "group": "priceAbove",
            "display_name": "Price Above",
            "code": "priceAbove",
            "type": "non-range",
        },
        {
            "group": "marketCapAbove1e6",
            "display_name": "Market Cap Above",
            "code": "marketCapAbove1e6",
            "type": "non-range",
        },
    ],
    "location_tree": [
        {
            "display_name": "US Stocks",
            "type": "STK.US",
            "locations": [{"display_name": "US Major", "type": "STK.US.MAJOR"}],
        }
    ],
}
RUN_ANSWER = {  # the S3 recording (no scan_data), plus the spec example's scan_data
    "contracts": [
        {
            "server_id": "0",
            "column_name": "Chg%",
            "symbol": "GV",
            "conidex": "706149062",
            "con_id": 706149062,
            "available_chart_periods": "#R|1",
            "company_name": "VISIONARY HOLDINGS INC",
            "contract_description_1": "GV",
            "listing_exchange": "NASDAQ.SCM",
            "sec_type": "STK",
            "scan_data": "41.2%",
        },
        {
            "server_id": "1",
            "symbol": "SKYQ",
            "conidex": "863831941",
            "con_id": 863831941,
            "available_chart_periods": "#R|1",
            "company_name": "SKY QUARRY INC",
            "contract_description_1": "SKYQ",
            "listing_exchange": "NASDAQ.SCM",
            "sec_type": "STK",
        },
        {"conidex": "4391", "contract_description_1": "AMD", "sec_type": "STK"},
    ],
    "scan_data_column_name": "Chg%",
}
RUN_BODY = {
    "instrument": "STK",
    "location": "STK.US.MAJOR",
    "type": "TOP_PERC_GAIN",
    "filter": [{"code": "priceAbove", "value": 5}, {"code": "marketCapAbove1e6", "value": 1000}],
}


def live(cli, *args):
    return cli("--backend", "live", *args)


def pin_params(rsps, **answer):
    answer = answer or {"json": PARAMS_ANSWER}
    return rsps.add(
        "GET", f"{BASE}/iserver/scanner/params", match=[matchers.query_param_matcher({})], **answer
    )


def pin_run(rsps, body=RUN_BODY, **answer):
    answer = answer or {"json": RUN_ANSWER}
    return rsps.add(
        "POST",
        f"{BASE}/iserver/scanner/run",
        match=[matchers.json_params_matcher(body, strict_match=True)],
        **answer,
    )


def test_live_params_pinned_cached_and_rendered(ibgw_responses, cli):
    params = pin_params(ibgw_responses)
    r = live(cli, "scanners", "params", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {
            "code": "TOP_PERC_GAIN",
            "name": "Top % Gainers",
            "instruments": ["STK", "ETF.EQ.US", "FUT.US"],
        },
        {"code": "MOST_ACTIVE", "name": "Most Active", "instruments": ["STK"]},
    ]
    r = live(cli, "scanners", "params", "--instrument", "ETF.EQ.US")
    assert r.exit_code == 0, r.stderr
    assert table_header(r.stdout) == ["code", "name", "instruments"]
    assert "TOP_PERC_GAIN" in r.stdout and "MOST_ACTIVE" not in r.stdout
    assert "scanner parameters cached" in r.stderr
    r = live(cli, "scanners", "locations", "-o", "csv")
    assert list(csv.reader(io.StringIO(r.stdout))) == [
        ["location", "name", "group"],
        ["STK.US.MAJOR", "US Major", "STK.US"],
    ]
    assert params.call_count == 1  # one paced fetch, then the disk copy


@pytest.fixture
def scanner_params_paced(ibgw_responses, monkeypatch):
    """IBKR's real 1-per-15-min window for the scanner parameters (other slots stay free)."""

    def acquire(self, classes, deadline):
        if "scanner-params" in classes:
            return REAL_ACQUIRE(self, classes, deadline)
        return time.time()

    monkeypatch.setattr(Pacer, "acquire", acquire)


def test_live_refresh_is_paced_and_falls_back_to_the_cache(
    ibgw_responses, scanner_params_paced, cli
):
    params = pin_params(ibgw_responses)
    assert live(cli, "scanners", "params").exit_code == 0
    r = live(cli, "scanners", "params", "--refresh", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)) == 2
    assert "not refreshed: IBKR allows one fetch per 15 min" in r.stderr
    assert params.call_count == 1


def test_live_paced_without_a_cache_is_unavailable(
    ibgw_responses, scanner_params_paced, cli, ibgw_env
):
    import shutil

    params = pin_params(ibgw_responses)
    assert live(cli, "scanners", "params").exit_code == 0
    shutil.rmtree(ibgw_env / "state" / "cache")
    r = live(cli, "-o", "json", "scanners", "params")
    assert r.exit_code == 4, r.stderr
    assert json.loads(r.stderr)["error"]["reason"] == "paced"
    assert params.call_count == 1


def test_live_stale_cache_is_refetched(ibgw_responses, cli, monkeypatch):
    params = pin_params(ibgw_responses)
    assert live(cli, "scanners", "params").exit_code == 0
    monkeypatch.setattr(reads, "MAX_AGE", -1)  # any copy is now older than a day
    r = live(cli, "scanners", "params")
    assert r.exit_code == 0, r.stderr
    assert params.call_count == 2
    assert "cached" not in r.stderr


def test_live_run_fetches_params_first_then_posts_the_pinned_body(ibgw_responses, cli):
    params = pin_params(ibgw_responses)
    run = pin_run(ibgw_responses)
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "TOP_PERC_GAIN",
        "--instrument",
        "stk",
        "--location",
        "stk.us.major",
        "--filter",
        "priceAbove=5",
        "--filter",
        "marketcapabove1e6=1e3",
        "-o",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    assert params.call_count == 1 and run.call_count == 1
    urls = [c.request.url.split("/v1/api")[1] for c in ibgw_responses.calls]
    assert urls == ["/iserver/scanner/params", "/iserver/scanner/run"]
    assert ibgw_responses.calls[1].request.headers["Content-Type"].startswith("application/json")
    assert json.loads(r.stdout) == [
        {
            "rank": 1,
            "symbol": "GV",
            "conid": 706149062,
            "company": "VISIONARY HOLDINGS INC",
            "exchange": "NASDAQ.SCM",
            "sec_type": "STK",
            "scan_value": "41.2%",
            "scan_column": "Chg%",
        },
        {
            "rank": 2,
            "symbol": "SKYQ",
            "conid": 863831941,
            "company": "SKY QUARRY INC",
            "exchange": "NASDAQ.SCM",
            "sec_type": "STK",
            "scan_value": None,
            "scan_column": None,
        },
        {
            "rank": 3,
            "symbol": "AMD",
            "conid": 4391,
            "company": None,
            "exchange": None,
            "sec_type": "STK",
            "scan_value": None,
            "scan_column": None,
        },
    ]
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "TOP_PERC_GAIN",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
        "--filter",
        "priceAbove=5",
        "--filter",
        "marketCapAbove1e6=1000",
        "-o",
        "csv",
    )
    assert r.exit_code == 0, r.stderr
    assert list(csv.reader(io.StringIO(r.stdout)))[1] == [
        "1",
        "GV",
        "706149062",
        "VISIONARY HOLDINGS INC",
        "NASDAQ.SCM",
        "STK",
        "41.2%",
        "Chg%",
    ]
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "TOP_PERC_GAIN",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
        "--filter",
        "priceAbove=5",
        "--filter",
        "marketCapAbove1e6=1000",
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[2].split()[:3] == ["1", "GV", "706149062"]
    assert params.call_count == 1 and run.call_count == 3


def test_live_run_without_filters_sends_an_empty_list(ibgw_responses, cli):
    pin_params(ibgw_responses)
    run = pin_run(
        ibgw_responses,
        body={"instrument": "STK", "location": "STK.US.MAJOR", "type": "MOST_ACTIVE", "filter": []},
        json={"contracts": []},
    )
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "MOST_ACTIVE",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
    )
    assert r.exit_code == 0, r.stderr
    assert run.call_count == 1
    assert "(no rows)" in r.stdout and "the scanner returned no contracts" in r.stderr


def test_live_run_caps_results_at_50(ibgw_responses, cli):
    pin_params(ibgw_responses)
    many = [{"server_id": str(i), "symbol": f"S{i}", "con_id": 1000 + i} for i in range(60)]
    pin_run(
        ibgw_responses,
        body={"instrument": "STK", "location": "STK.US.MAJOR", "type": "MOST_ACTIVE", "filter": []},
        json={"contracts": many},
    )
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "MOST_ACTIVE",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
        "-o",
        "json",
    )
    rows = json.loads(r.stdout)
    assert len(rows) == 50 and rows[-1] == {
        "rank": 50,
        "symbol": "S49",
        "conid": 1049,
        "company": None,
        "exchange": None,
        "sec_type": None,
        "scan_value": None,
        "scan_column": None,
    }


def test_live_bad_input_sends_nothing(ibgw_responses, cli):
    params = pin_params(ibgw_responses)
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "MOST_ACTIVE",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
        "--filter",
        "priceAbove",
    )
    assert r.exit_code == 2 and one_line(r.stderr)
    assert params.call_count == 0 and len(ibgw_responses.calls) == 0
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "NOPE",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
    )
    assert r.exit_code == 2 and one_line(r.stderr)
    assert [c.request.method for c in ibgw_responses.calls] == ["GET"]  # params only, no run


def test_live_run_rejected_by_the_gateway_is_exit_2(ibgw_responses, cli):
    pin_params(ibgw_responses)
    pin_run(
        ibgw_responses,
        body={"instrument": "STK", "location": "STK.US.MAJOR", "type": "MOST_ACTIVE", "filter": []},
        status=400,
        json={"error": "Bad Request", "statusCode": 400},
    )
    r = live(
        cli,
        "scanners",
        "run",
        "--type",
        "MOST_ACTIVE",
        "--instrument",
        "STK",
        "--location",
        "STK.US.MAJOR",
    )
    assert r.exit_code == 2 and one_line(r.stderr)


def test_live_params_malformed_is_unavailable_and_not_cached(
    ibgw_responses, scanner_params_paced, cli
):
    params = pin_params(ibgw_responses, json={"scan_type_list": []})
    r = live(cli, "scanners", "params")
    assert r.exit_code == 4 and one_line(r.stderr)
    # nothing was cached: the next read needs the gateway again (and is paced)
    r = live(cli, "-o", "json", "scanners", "params")
    assert r.exit_code == 4
    assert json.loads(r.stderr)["error"]["reason"] == "paced"
    assert params.call_count == 1
