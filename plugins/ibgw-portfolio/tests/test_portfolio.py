"""ibgw-portfolio: P&L, performance (with IBKR's 15-minute window) and allocation, on the
fake backend, pinned requests, the loopback fake gateway, and the fault scenarios."""

import json
import re

import ibgw_portfolio
import pytest
from responses import matchers

READS = {
    "pnl": ("portfolio", "pnl"),
    "performance": ("portfolio", "performance", "--period", "1M"),
    "allocation": ("portfolio", "allocation"),
}
ACCOUNTS = [
    {"id": "DU1234567", "accountId": "DU1234567"},
    {"id": "U7654321", "accountId": "U7654321"},
]
ISERVER_ACCOUNTS = {"accounts": ["DU1234567", "U7654321"], "selectedAccount": "DU1234567"}


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_portfolio)
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def records(state) -> list[dict]:
    return [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]


# -- fake backend -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(READS))
def test_each_read_answers_non_empty_json(cli, name):
    r = cli("-o", "json", *READS[name])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and rows and all(isinstance(x, dict) for x in rows)


def test_pnl_per_account_matches_the_account_fixtures(cli):
    rows = json.loads(cli("-o", "json", "portfolio", "pnl").stdout)
    assert rows == [
        {
            "account": "DU1234567",
            "segment": "Core",
            "daily_pnl": -1250.4,
            "unrealized_pnl": 110213.26,
            "net_liquidation": 1005165.5,
            "market_value": 1799955.27,
            "excess_liquidity": 850412.3,
        },
        {
            "account": "U7654321",
            "segment": "Core",
            "daily_pnl": 312.75,
            "unrealized_pnl": -5478.24,
            "net_liquidation": 48211.9,
            "market_value": 231529.81,
            "excess_liquidity": 21500.0,
        },
    ]
    # the same net liquidation as 'ibgw accounts summary'
    summary = json.loads(cli("-o", "json", "accounts", "summary", "--account", "U7654321").stdout)
    assert {"metric": "netliquidation", "amount": 48211.9} in [
        {"metric": s["metric"], "amount": s["amount"]} for s in summary
    ]


def test_pnl_is_the_default_read_and_filters_by_account(cli):
    r = cli("portfolio", "--account", "U7654321", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [x["account"] for x in json.loads(r.stdout)] == ["U7654321"]
    table = cli("portfolio", "pnl").stdout.splitlines()
    assert table[0].split() == [
        "account",
        "segment",
        "daily_pnl",
        "unrealized_pnl",
        "net_liquidation",
        "market_value",
        "excess_liquidity",
    ]


def test_performance_rows_and_summary_note(cli):
    r = cli("-o", "json", "portfolio", "performance", "--period", "1M")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [sorted(x) for x in rows[:1]] == [["currency", "date", "nav", "return_pct"]]
    dates = [x["date"] for x in rows]
    assert dates == sorted(dates) and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in dates)
    assert 19 <= len(rows) <= 23  # business days of a month
    assert rows[-1]["nav"] == 1005165.5 and rows[-1]["currency"] == "USD"
    assert re.search(
        r"1M \(TWR\) \S+ to \S+: [+-]\d+\.\d\d%, NAV [\d,.]+ -> 1,005,165.50 USD", r.stderr
    )


def test_performance_periods_follow_ibkr_vocabulary(cli):
    week = json.loads(cli("-o", "json", "portfolio", "performance", "--period", "7D").stdout)
    year = json.loads(cli("-o", "json", "portfolio", "performance", "--period", "1Y").stdout)
    twelve = json.loads(cli("-o", "json", "portfolio", "performance", "--period", "12M").stdout)
    assert 4 <= len(week) <= 6 and len(year) > 250
    assert year == twelve  # 1Y is IBKR's 12M
    bad = cli("portfolio", "performance", "--period", "2Y")
    assert bad.exit_code == 2 and one_line(bad.stderr)


def test_performance_repeat_within_15_minutes_is_served_from_cache(cli):
    first = cli("-o", "json", "portfolio", "performance", "--period", "3M")
    second = cli("-o", "json", "portfolio", "performance", "--period", "3M")
    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert "cached" not in first.stderr
    assert re.search(
        r"cached \d+ s ago: IBKR allows one performance report per 15 minutes", second.stderr
    )
    other = cli("-o", "json", "portfolio", "performance", "--period", "3M", "--account", "U7654321")
    assert other.exit_code == 0 and "cached" not in other.stderr
    assert json.loads(other.stdout)[-1]["nav"] == 48211.9


def test_performance_cache_never_holds_the_account_id(cli, ibgw_env):
    assert cli("portfolio", "performance", "--account", "U7654321").exit_code == 0
    cache = ibgw_env / "state" / "cache"
    for path in cache.iterdir():
        assert "U7654321" not in path.name and "U7654321" not in path.read_text()


def test_allocation_by_asset_class_from_the_positions(cli):
    r = cli("-o", "json", "portfolio", "allocation", "--by", "asset-class")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["name"], x["long"], x["short"], x["net"]) for x in rows] == [
        ("OPT", 1696078.17, -550024.53, 1146053.64),
        ("CASH", 971869.6, None, 971869.6),
        ("STK", 653901.63, None, 653901.63),
    ]
    assert round(sum(x["weight_pct"] for x in rows)) == 100
    allrows = json.loads(cli("-o", "json", "portfolio", "allocation").stdout)
    assert {x["breakdown"] for x in allrows} == {"asset-class", "sector", "group"}


def test_allocation_of_the_second_account(cli):
    rows = json.loads(
        cli(
            "-o", "json", "portfolio", "allocation", "--account", "U7654321", "--by", "sector"
        ).stdout
    )
    assert rows[0] == {
        "breakdown": "sector",
        "name": "Funds",
        "long": 205738.93,
        "short": None,
        "net": 205738.93,
        "weight_pct": 88.86,
    }


@pytest.mark.parametrize(
    "args",
    [
        ("portfolio", "pnl", "--account", "U0000000"),
        ("portfolio", "allocation", "--account", "DU1234567/../x"),
        ("portfolio", "allocation", "--by", "country"),
        ("portfolio", "performance", "--period", "2W"),
        ("portfolio", "performance", "--account", "U0000000"),
    ],
)
def test_bad_input_exits_2(cli, args):
    r = cli(*args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr


@pytest.mark.parametrize("name", sorted(READS))
@pytest.mark.parametrize(
    "scenario,code", [("expired-session", 3), ("gateway-down", 4), ("documented-only", 0)]
)
def test_scenarios(cli, name, scenario, code):
    r = cli("--scenario", scenario, "-o", "json", *READS[name])
    assert r.exit_code == code, r.stdout + r.stderr
    if code:
        assert r.stdout == "" or "error" in json.loads(r.stdout)
        assert "Traceback" not in r.stderr
    else:
        assert json.loads(r.stdout)


def test_category_is_registered_with_its_summary(cli, ibgw_pm):
    from ibgw.plugins import collect_reads

    registry = collect_reads(ibgw_pm)
    assert registry.summaries["portfolio"].startswith("Today's P&L")
    assert re.search(r"^  portfolio +\S", cli("--help").stdout, re.M)


# -- pinned requests (live transport) -----------------------------------------------------
def test_pnl_pinned_request_and_odd_shapes(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_portfolio)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/iserver/accounts", json=ISERVER_ACCOUNTS)
    ibgw_responses.get(
        f"{base}/iserver/account/pnl/partitioned",
        json={
            "upnl": {
                "U1234567.Core": {"rowType": 1, "dpl": "-12510.0", "nl": 1290000, "upl": None},
                "": {"dpl": 1},
                "junk": "not an object",
            }
        },
    )
    r = ibgw_cli("--backend", "live", "-o", "json", "portfolio", "pnl")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {
            "account": "U1234567",
            "segment": "Core",
            "daily_pnl": -12510.0,
            "unrealized_pnl": None,
            "net_liquidation": 1290000.0,
            "market_value": None,
            "excess_liquidity": None,
        }
    ]
    paths = [c.request.path_url for c in ibgw_responses.calls]
    # /iserver/accounts first: IBKR's prerequisite for /iserver/account/* calls
    assert paths[-2:] == ["/v1/api/iserver/accounts", "/v1/api/iserver/account/pnl/partitioned"]


def test_pnl_empty_first_answer_is_a_note(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_portfolio)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/iserver/accounts", json=ISERVER_ACCOUNTS)
    ibgw_responses.get(f"{base}/iserver/account/pnl/partitioned", json={"upnl": {}})
    r = ibgw_cli("--backend", "live", "portfolio", "pnl")
    assert r.exit_code == 0 and r.stdout == "(no rows)\n"
    assert "no P&L yet" in r.stderr


def test_pnl_malformed_answer_exits_4(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_portfolio)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/iserver/accounts", json=ISERVER_ACCOUNTS)
    ibgw_responses.get(f"{base}/iserver/account/pnl/partitioned", json=["nope"])
    r = ibgw_cli("--backend", "live", "portfolio", "pnl")
    assert r.exit_code == 4 and one_line(r.stderr)


def test_performance_pinned_body(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_portfolio)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/portfolio/accounts", json=ACCOUNTS)
    spec_example = {
        "cps": {
            "data": [{"baseCurrency": "USD", "id": "U7654321", "returns": [0, 0.0639]}],
            "dates": ["20230102", "20231213"],
            "freq": "D",
        },
        "nav": {
            "data": [
                {
                    "baseCurrency": "USD",
                    "id": "U7654321",
                    "navs": [202767332.1223, "215718598.8239"],
                    "startNAV": {"date": "20221230", "val": 202767761.3449},
                }
            ],
            "dates": ["20230102", "20231213"],
            "freq": "D",
        },
        "pm": "TWR",
    }
    ibgw_responses.post(
        f"{base}/pa/performance",
        match=[matchers.json_params_matcher({"acctIds": ["U7654321"], "period": "12M"})],
        json=spec_example,
    )
    r = ibgw_cli(
        "--backend", "live", "-o", "json", "portfolio", "performance", "--period", "1Y",
        "--account", "U7654321",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"date": "2023-01-02", "nav": 202767332.1223, "return_pct": 0.0, "currency": "USD"},
        {"date": "2023-12-13", "nav": 215718598.8239, "return_pct": 6.39, "currency": "USD"},
    ]
    assert "12M (TWR) 2023-01-02 to 2023-12-13: +6.39%" in r.stderr


def test_performance_window_closed_serves_the_stale_cache_or_exits_4(
    ibgw_pm, ibgw_cli, ibgw_responses, ibgw_env
):
    ibgw_pm.register(ibgw_portfolio)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/portfolio/accounts", json=ACCOUNTS)
    ibgw_responses.post(f"{base}/pa/performance", status=429, json={"error": "Too Many Requests"})
    none = ibgw_cli("--backend", "live", "portfolio", "performance")
    assert none.exit_code == 4 and one_line(none.stderr)
    assert "none is cached for 1M" in none.stderr


def test_allocation_pinned_path(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_portfolio)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/portfolio/accounts", json=ACCOUNTS)
    ibgw_responses.get(
        f"{base}/portfolio/DU1234567/allocation",
        json={"assetClass": {"long": {"STK": "750.5", "BOND": 250}, "short": {"STK": -0.5}}},
    )
    r = ibgw_cli("--backend", "live", "-o", "json", "portfolio", "allocation")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"breakdown": "asset-class", "name": "STK", "long": 750.5, "short": -0.5, "net": 750.0,
         "weight_pct": 75.0},
        {"breakdown": "asset-class", "name": "BOND", "long": 250.0, "short": None, "net": 250.0,
         "weight_pct": 25.0},
    ]  # fmt: skip


# -- the loopback fake gateway through the live backend ------------------------------------
@pytest.mark.parametrize("name", sorted(READS))
def test_live_against_fake_gateway_matches_the_fake_backend(
    cli, ibgw_fake_gateway, ibgw_env, tmp_path, name
):
    offline = cli("-o", "json", *READS[name], env={"IBGW_STATE_DIR": str(tmp_path / "offline")})
    assert offline.exit_code == 0, offline.stderr
    url = ibgw_fake_gateway.url
    live = cli("--backend", "live", "--gateway-url", url, "-o", "json", *READS[name])
    assert live.exit_code == 0, live.stderr
    assert json.loads(live.stdout) == json.loads(offline.stdout)
    assert ibgw_fake_gateway.stats["429"] == 0
    state = ibgw_env / "state"
    audit = [r for r in records(state) if r["command"] == " ".join(READS[name][:2])]
    assert [r["kind"] for r in audit] == ["intent", "outcome"] and audit[1]["outcome"] == "ok"
    # the published limit of the endpoint holds a reserved slot
    slots = json.loads((state / "pacing.json").read_text())["slots"]
    wanted = {"pnl": "pnl", "performance": "pa", "allocation": "global"}[name]
    assert slots.get(wanted)


def test_performance_after_the_window_a_refused_call_serves_the_stale_report(
    ibgw_pm, ibgw_cli, ibgw_responses, ibgw_env
):
    ibgw_pm.register(ibgw_portfolio)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/portfolio/accounts", json=ACCOUNTS)
    report = {
        "nav": {"dates": ["20260302"], "data": [{"id": "DU1234567", "navs": [1000.0]}]},
        "cps": {"dates": ["20260302"], "data": [{"id": "DU1234567", "returns": [0.01]}]},
    }
    ok = ibgw_responses.post(f"{base}/pa/performance", json=report)
    first = ibgw_cli("--backend", "live", "-o", "json", "portfolio", "performance")
    assert first.exit_code == 0, first.stderr
    # age the cached report past IBKR's 15-minute window
    for path in (ibgw_env / "state" / "cache").iterdir():
        entry = json.loads(path.read_text())
        entry["t"] -= 1000
        path.write_text(json.dumps(entry))
    ibgw_responses.remove(ok)
    ibgw_responses.post(f"{base}/pa/performance", status=429, json={"error": "Too Many Requests"})
    second = ibgw_cli("--backend", "live", "-o", "json", "portfolio", "performance")
    assert second.exit_code == 0, second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert "IBKR allows one performance report per 15 minutes: showing the report cached" in (
        second.stderr
    )
    assert sum(c.request.url.endswith("/pa/performance") for c in ibgw_responses.calls) == 2


def test_published_limits_apply_whatever_the_declared_class():
    from ibgw import Endpoint
    from ibgw.declarations import PACING_CLASSES, pacing_classes

    assert PACING_CLASSES["pnl"] == (1, 5.0)
    assert "pnl" in pacing_classes(Endpoint("GET", "/iserver/account/pnl/partitioned"))
    assert "pa" in pacing_classes(ibgw_portfolio.PA_PERFORMANCE)


@pytest.mark.parametrize("name", sorted(READS))
def test_installed_console_script_answers_json(ibgw_subprocess_env, name):
    import subprocess
    import sys
    from pathlib import Path

    ibgw = str(Path(sys.executable).with_name("ibgw"))
    run = subprocess.run(
        [ibgw, "--backend", "fake", "-o", "json", *READS[name]],
        capture_output=True,
        text=True,
        env=ibgw_subprocess_env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)
