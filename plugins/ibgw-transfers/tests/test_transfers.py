"""ibgw-transfers: POST /pa/transactions, its 15-minute cache, and what the gateway cannot give."""

import csv
import io
import json
import os
import re

import ibgw_transfers
import pytest
from ibgw_transfers import reads
from responses import matchers

from ibgw.errors import Unavailable

BASE = "https://localhost:5000/v1/api"
COLUMNS = ["date", "type", "description", "quantity", "price", "amount", "currency", "fx_rate"]
ACCOUNTS = [
    {"id": "DU1234567", "accountId": "DU1234567"},
    {"id": "U7654321", "accountId": "U7654321"},
]
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
REPORT = {
    "nd": 31,
    "rpnl": {"data": [], "amt": "0.0"},
    "currency": "USD",
    "from": 1772496000000,
    "id": "getTransactions",
    "to": 1775088000000,
    "transactions": [
        {
            "cur": "USD",
            "date": "Tue Mar 31 00:00:00 EDT 2026",
            "rawDate": "20260331",
            "fxRate": 1.0,
            "pr": 645.155,
            "qty": 4.0,
            "acctid": "DU1234567",
            "amt": -2580.62,
            "conid": 756733,
            "type": "Buy",
            "desc": "SPDR S&P 500 ETF TRUST",
        },
        # the official example's shape: no rawDate, numbers as in the spec
        {
            "acctid": "DU1234567",
            "amt": 961.3,
            "conid": 265598,
            "cur": "USD",
            "date": "Mon Dec 11 00:00:00 EST 2023",
            "desc": "Apple Inc",
            "fxRate": 1,
            "pr": 192.26,
            "qty": -5,
            "type": "Sell",
        },
        # strings, missing fields, nonsense
        {"rawDate": 20260102, "type": "Dividend", "amt": "7.50", "qty": "0", "cur": "USD"},
        {"date": "yesterday", "type": "Deposit", "amt": None},
        "not an object",
    ],
}


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_transfers)
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# -- fake backend -----------------------------------------------------------------------
def test_aapl_transactions_table(cli):
    r = cli("transfers", "AAPL")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == COLUMNS
    assert [line.split()[1] for line in lines[2:]] == ["Buy", "Sell", "Dividend", "Transfer", "Buy"]
    assert "realized P&L over the period: 57.25 USD" in r.stderr


def test_spy_by_conid_json(cli):
    r = cli("transfers", "--conid", "756733", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["date"], x["type"]) for x in rows] == [
        ("2026-03-31", "Buy"),
        ("2026-03-05", "Sell"),
        ("2026-01-30", "Dividend"),
        ("2026-01-08", "Transfer"),
    ]
    assert rows[0] == {
        "date": "2026-03-31",
        "type": "Buy",
        "description": "SPDR S&P 500 ETF TRUST",
        "quantity": 4.0,
        "price": 499.8,
        "amount": -1999.2,
        "currency": "USD",
        "fx_rate": 1.0,
    }


def test_date_from_java_date_when_no_raw_date(cli):
    rows = json.loads(cli("transfers", "AAPL", "-o", "json").stdout)
    assert next(x for x in rows if x["type"] == "Transfer")["date"] == "2026-01-20"


def test_second_call_within_15_minutes_is_served_from_cache(cli):
    first = cli("transfers", "AAPL", "-o", "json")
    second = cli("transfers", "AAPL", "-o", "json")
    assert second.exit_code == 0
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert "cached" not in first.stderr
    assert re.search(
        r"cached \d+ s ago: IBKR allows one transactions report per 15 minutes", second.stderr
    )
    other = cli("transfers", "AAPL", "--days", "30")  # another report: not from the cache
    assert "cached" not in other.stderr


def test_cache_never_holds_the_account_id(cli, ibgw_env):
    r = cli("transfers", "AAPL", "--account", "U7654321")
    assert r.exit_code == 0, r.stderr
    assert "U7654321" not in r.stdout + r.stderr and "DU1234567" not in r.stdout + r.stderr
    cache_dir = ibgw_env / "state" / "cache"
    names = os.listdir(cache_dir)
    assert names and all("U7654321" not in n for n in names)
    for name in names:
        text = (cache_dir / name).read_text()
        assert "U7654321" not in text and "DU1234567" not in text


def test_unknown_contract_has_no_rows(cli):
    r = cli("transfers", "--conid", "8314")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "(no rows)\n"
    assert "no transactions for conid 8314 in the last 90 days" in r.stderr


def test_penalty_box_without_cache_exits_4(cli):
    r = cli("--scenario", "transactions-penalty-box", "transfers", "AAPL")
    assert r.exit_code == 4
    assert one_line(r.stderr)
    assert "none is cached for AAPL" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("transfers",),
        ("transfers", "AAPL", "--conid", "265598"),
        ("transfers", "AAPL", "--days", "0"),
        ("transfers", "AAPL", "--days", "x"),
        ("transfers", "--conid", "12ab"),
        ("transfers", "AAPL", "--currency", "usd"),
        ("transfers", "AAPL", "--account", "U0000000"),
        ("transfers", "AAPL", "--account", "DU1234567/../x"),
        ("transfers", "A/B"),
    ],
)
def test_bad_input_exits_2(cli, args):
    r = cli(*args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr


@pytest.mark.parametrize("args", [("transfers", "--help"), ("transfers", "transactions", "--help")])
def test_help_says_what_the_gateway_cannot_give(cli, args):
    r = cli(*args)
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "Cash deposits and withdrawals are not available through the gateway" in text
    assert "Flex Web Service" in text


def test_full_help_names_the_account_management_api(cli):
    text = " ".join(cli("transfers", "transactions", "--help").stdout.split())
    assert "/gw/api/v1/external-cash-transfers" in text
    assert "does not proxy" in text and "refuses" in text


@pytest.mark.parametrize(
    "scenario,code", [("missing-session", 3), ("gateway-down", 4), ("login-page", 3)]
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    r = cli("--scenario", scenario, "transfers", "AAPL")
    assert r.exit_code == code
    assert one_line(r.stderr)


# -- live transport, every request pinned --------------------------------------------------
def pin_accounts(rsps):
    return rsps.add(
        "GET", f"{BASE}/portfolio/accounts", json=ACCOUNTS, match=[matchers.query_param_matcher({})]
    )


def pin_search(rsps):
    return rsps.add(
        "GET",
        f"{BASE}/iserver/secdef/search",
        json=SEARCH,
        match=[matchers.query_param_matcher({"symbol": "AAPL", "secType": "STK"})],
    )


def pin_report(rsps, acct="DU1234567", conid=265598, days=90, currency="USD", **answer):
    body = {"acctIds": [acct], "conids": [conid], "currency": currency, "days": days}
    return rsps.add(
        "POST",
        f"{BASE}/pa/transactions",
        match=[matchers.json_params_matcher(body, strict_match=True)],
        **(answer or {"json": REPORT}),
    )


def live(cli, *args):
    return cli("--backend", "live", *args)


def test_live_request_pinned_and_parsed(ibgw_responses, cli):
    pin_accounts(ibgw_responses)
    pin_search(ibgw_responses)
    report = pin_report(ibgw_responses)
    r = live(cli, "-o", "json", "transfers", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert report.call_count == 1
    sent = next(c.request for c in ibgw_responses.calls if c.request.method == "POST")
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == {
        "acctIds": ["DU1234567"],
        "conids": [265598],
        "currency": "USD",
        "days": 90,
    }
    assert json.loads(r.stdout) == [
        {
            "date": "2026-03-31",
            "type": "Buy",
            "description": "SPDR S&P 500 ETF TRUST",
            "quantity": 4.0,
            "price": 645.155,
            "amount": -2580.62,
            "currency": "USD",
            "fx_rate": 1.0,
        },
        {
            "date": "2026-01-02",
            "type": "Dividend",
            "description": None,
            "quantity": 0.0,
            "price": None,
            "amount": 7.5,
            "currency": "USD",
            "fx_rate": None,
        },
        {
            "date": "2023-12-11",
            "type": "Sell",
            "description": "Apple Inc",
            "quantity": -5.0,
            "price": 192.26,
            "amount": 961.3,
            "currency": "USD",
            "fx_rate": 1.0,
        },
        {
            "date": None,
            "type": "Deposit",
            "description": None,
            "quantity": None,
            "price": None,
            "amount": None,
            "currency": None,
            "fx_rate": None,
        },
    ]
    assert "realized P&L" not in r.stderr  # 0.0


def test_live_conid_days_currency_account(ibgw_responses, cli):
    pin_accounts(ibgw_responses)
    report = pin_report(
        ibgw_responses,
        acct="U7654321",
        conid=756733,
        days=30,
        currency="EUR",
        json={"transactions": [], "rpnl": {"amt": "-3.5"}, "currency": "EUR"},
    )
    r = live(
        cli,
        "transfers",
        "--conid",
        "756733",
        "--days",
        "30",
        "--currency",
        "EUR",
        "--account",
        "U7654321",
    )
    assert r.exit_code == 0, r.stderr
    assert report.call_count == 1
    assert r.stdout == "(no rows)\n"
    assert "realized P&L over the period: -3.50 EUR" in r.stderr
    assert "U7654321" not in r.stdout + r.stderr
    # the global --account option works too
    r = live(
        cli,
        "--account",
        "U7654321",
        "transfers",
        "--conid",
        "756733",
        "--days",
        "30",
        "--currency",
        "EUR",
    )
    assert r.exit_code == 0 and report.call_count == 1  # and it is the same report: cached


def test_live_csv_and_table(ibgw_responses, cli):
    pin_accounts(ibgw_responses)
    pin_search(ibgw_responses)
    pin_report(ibgw_responses)
    r = live(cli, "-o", "csv", "transfers", "AAPL")
    table = list(csv.reader(io.StringIO(r.stdout)))
    assert table[0] == COLUMNS
    assert table[1] == [
        "2026-03-31",
        "Buy",
        "SPDR S&P 500 ETF TRUST",
        "4.0",
        "645.155",
        "-2580.62",
        "USD",
        "1.0",
    ]
    r = live(cli, "transfers", "AAPL")
    assert r.stdout.splitlines()[0].split() == COLUMNS
    assert "-2,580.62" in r.stdout


def test_live_second_call_makes_no_request(ibgw_responses, cli):
    pin_accounts(ibgw_responses)
    pin_search(ibgw_responses)
    report = pin_report(ibgw_responses)
    assert live(cli, "transfers", "AAPL").exit_code == 0
    r = live(cli, "-o", "json", "transfers", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert report.call_count == 1
    assert len(json.loads(r.stdout)) == 4
    assert "IBKR allows one transactions report per 15 minutes" in r.stderr and "cached" in r.stderr


@pytest.mark.parametrize("reason", ["paced", "rate-limited"])
def test_live_window_closed_serves_older_cache(ibgw_responses, cli, monkeypatch, reason):
    pin_accounts(ibgw_responses)
    pin_search(ibgw_responses)
    report = pin_report(ibgw_responses)
    assert live(cli, "transfers", "AAPL").exit_code == 0
    monkeypatch.setattr(reads, "PA_WINDOW", -1.0)  # the cached report is now older than the window
    if reason == "paced":

        def refuse(self, classes, deadline):
            if "pa" in classes:
                raise Unavailable(
                    "pacing: no 'pa' slot before the deadline",
                    reason="paced",
                    hint="IBKR allows 1 call per 900 s for this endpoint; try again in 840 s",
                )
            return 0.0

        monkeypatch.setattr("ibgw.pacing.Pacer.acquire", refuse)
    else:
        ibgw_responses.replace(
            "POST", f"{BASE}/pa/transactions", status=429, body="Too Many Requests"
        )
    r = live(cli, "-o", "json", "transfers", "AAPL")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)) == 4
    assert "showing the report cached" in r.stderr
    assert report.call_count == 1


def test_live_paced_without_cache_exits_4_with_hint(ibgw_responses, cli, monkeypatch):
    pin_accounts(ibgw_responses)
    pin_search(ibgw_responses)
    report = pin_report(ibgw_responses)

    def refuse(self, classes, deadline):
        if "pa" in classes:
            raise Unavailable(
                "pacing", reason="paced", hint="IBKR allows 1 call per 900 s; try again in 840 s"
            )
        return 0.0

    monkeypatch.setattr("ibgw.pacing.Pacer.acquire", refuse)
    r = live(cli, "-o", "json", "transfers", "AAPL")
    assert r.exit_code == 4
    assert report.call_count == 0
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "paced" and "try again in 840 s" in err["hint"]
    assert "none is cached for AAPL over 90 days" in err["message"]


@pytest.mark.parametrize(
    "answer", [{"json": []}, {"json": {"transactions": {}}}, {"body": '{"transactions": ['}]
)
def test_live_malformed_report_exits_4(ibgw_responses, cli, answer):
    pin_accounts(ibgw_responses)
    pin_report(ibgw_responses, conid=1, **answer)
    r = live(cli, "transfers", "--conid", "1")
    assert r.exit_code == 4
    assert one_line(r.stderr)


def test_live_gateway_rejects_exit_2(ibgw_responses, cli):
    pin_accounts(ibgw_responses)
    pin_report(
        ibgw_responses, conid=1, status=400, json={"error": "Bad Request", "statusCode": 400}
    )
    r = live(cli, "transfers", "--conid", "1")
    assert r.exit_code == 2
    assert one_line(r.stderr)


# -- parsers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw,text,expected",
    [
        ("20260331", None, "2026-03-31"),
        (20260331, None, "2026-03-31"),
        (None, "Tue Mar 31 00:00:00 EDT 2026", "2026-03-31"),
        (None, "Mon Dec 11 00:00:00 EST 2023", "2023-12-11"),
        ("", "Fri Jan 2 00:00:00 GMT+01:00 2026", "2026-01-02"),
        (None, "Fri Jan 2 00:00:00 CET 2026", "2026-01-02"),
        ("2026-03-31", "garbage", None),
        (True, None, None),
    ],
)
def test_iso_date(raw, text, expected):
    assert reads.iso_date(raw, text) == expected


def test_read_declaration():
    found = {}
    ibgw_transfers.ibgw_register_reads(
        lambda read: found.setdefault(getattr(read, "key", read.name), read)
    )
    read = found["transfers transactions"]
    assert read.default and read.probe is None
    (endpoint,) = read.endpoints
    assert (endpoint.method, endpoint.path, endpoint.pacing, endpoint.provenance) == (
        "POST",
        "/pa/transactions",
        "pa",
        "documented",
    )
    assert set(endpoint.params) == {"acctIds", "conids", "currency", "days"}
