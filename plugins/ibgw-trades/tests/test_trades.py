"""ibgw-trades: executions from GET /iserver/account/trades on the fake backend, pinned
requests, the loopback fake gateway, the fault scenarios, and the read-only policy
(this GET passes, every order write is refused before a byte is sent)."""

import datetime as dt
import json
import re

import ibgw_trades
import pytest
from responses import matchers

from ibgw import Endpoint, Read, hookimpl
from ibgw.errors import PolicyRefused
from ibgw.policy import check_request, is_denied

COLUMNS = [
    "time",
    "account",
    "symbol",
    "side",
    "size",
    "price",
    "commission",
    "net_amount",
    "exchange",
]
ISERVER_ACCOUNTS = {"accounts": ["DU1234567", "U7654321"], "selectedAccount": "DU1234567"}
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
# IBKR's spec example for GET /iserver/account/trades
SPEC_EXAMPLE = {
    "account": "U1234567",
    "accountCode": "U1234567",
    "account_allocation_name": "U1234567",
    "clearing_id": "IB",
    "clearing_name": "IB",
    "commission": "1.01",
    "company_name": "APPLE INC",
    "conid": 265598,
    "conidEx": "265598",
    "contract_description_1": "AAPL",
    "exchange": "ISLAND",
    "execution_id": "0000e0d5.6576fd38.01.01",
    "is_event_trading": "0",
    "liquidation_trade": "0",
    "listing_exchange": "NASDAQ.NMS",
    "net_amount": 961.3,
    "order_description": "Sold 5 @ 192.26 on ISLAND",
    "order_id": 17437897932,
    "order_ref": "Order123",
    "price": "192.26",
    "sec_type": "STK",
    "side": "S",
    "size": 5.0,
    "submitter": "user1234",
    "supports_tax_opt": "1",
    "symbol": "AAPL",
    "trade_time": "20231211-18:00:49",
    "trade_time_r": 1702317649000,
}


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_trades)
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def records(state) -> list[dict]:
    return [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]


# -- fake backend -----------------------------------------------------------------------
def test_trades_category_default_lists_todays_executions(cli):
    r = cli("-o", "json", "trades")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["account"], x["symbol"], x["side"], x["size"]) for x in rows] == [
        ("DU1234567", "AAPL", "BUY", 10.0),
        ("U7654321", "AAPL", "SELL", 20.0),
    ]
    assert all(ISO.fullmatch(x["time"]) for x in rows)
    assert rows[0]["price"] == 189.12 and rows[0]["commission"] == 1.0
    assert rows[0]["net_amount"] == 1891.2 and rows[0]["exchange"] == "ISLAND"
    assert "submitter" not in rows[0] and "user1234" not in r.stdout
    table = cli("trades", "executions").stdout.splitlines()
    assert table[0].split() == COLUMNS


def test_days_widens_the_window_newest_first(cli):
    rows = json.loads(cli("-o", "json", "trades", "--days", "7").stdout)
    assert [x["symbol"] for x in rows] == ["AAPL", "AAPL", "SPY", "SPY", "QQQ"]
    times = [x["time"] for x in rows]
    assert times == sorted(times, reverse=True)
    assert rows[-1]["sec_type"] == "OPT" and rows[-1]["net_amount"] == 4110.0
    three = json.loads(cli("-o", "json", "trades", "--days", "3").stdout)
    assert len(three) == 4


def test_account_filter(cli):
    r = cli("-o", "json", "trades", "--days", "7", "--account", "U7654321")
    assert r.exit_code == 0, r.stderr
    assert {x["account"] for x in json.loads(r.stdout)} == {"U7654321"}


@pytest.mark.parametrize(
    "args",
    [
        ("trades", "--days", "0"),
        ("trades", "--days", "8"),
        ("trades", "--days", "x"),
        ("trades", "--account", "U0000000"),
        ("trades", "--account", "DU1234567/../orders"),
    ],
)
def test_bad_input_exits_2(cli, args):
    r = cli(*args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr


@pytest.mark.parametrize(
    "scenario,code", [("expired-session", 3), ("gateway-down", 4), ("documented-only", 0)]
)
def test_scenarios(cli, scenario, code):
    r = cli("--scenario", scenario, "-o", "json", "trades")
    assert r.exit_code == code, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    if code == 0:
        assert json.loads(r.stdout)


def test_category_is_registered_with_its_summary(ibgw_pm):
    from ibgw.plugins import collect_reads

    ibgw_pm.register(ibgw_trades)
    assert collect_reads(ibgw_pm).summaries["trades"].startswith("Executions")


# -- pinned requests ------------------------------------------------------------------------
def test_pinned_request_and_the_spec_example(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_trades)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/iserver/accounts", json=ISERVER_ACCOUNTS)
    odd = {"side": "B", "size": "3", "price": 10, "trade_time": "20231211-09:01:02"}
    ibgw_responses.get(
        f"{base}/iserver/account/trades",
        match=[matchers.query_param_matcher({"days": "5"})],
        json=[SPEC_EXAMPLE, odd, "not an object"],
    )
    r = ibgw_cli("--backend", "live", "-o", "json", "trades", "--days", "5")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {
            "time": "2023-12-11T18:00:49Z",
            "account": "U1234567",
            "symbol": "AAPL",
            "side": "SELL",
            "size": 5.0,
            "price": 192.26,
            "commission": 1.01,
            "net_amount": 961.3,
            "exchange": "ISLAND",
            "conid": 265598,
            "sec_type": "STK",
            "description": "Sold 5 @ 192.26 on ISLAND",
            "execution_id": "0000e0d5.6576fd38.01.01",
            "order_id": 17437897932,
        },
        {
            "time": "2023-12-11T09:01:02Z",
            "account": None,
            "symbol": None,
            "side": "BUY",
            "size": 3.0,
            "price": 10.0,
            "commission": None,
            "net_amount": None,
            "exchange": None,
            "conid": None,
            "sec_type": None,
            "description": None,
            "execution_id": None,
            "order_id": None,
        },
    ]
    methods_paths = [(c.request.method, c.request.path_url) for c in ibgw_responses.calls]
    assert methods_paths[-2:] == [
        ("GET", "/v1/api/iserver/accounts"),
        ("GET", "/v1/api/iserver/account/trades?days=5"),
    ]
    assert all(m == "GET" or p.endswith(("/auth/status", "/tickle")) for m, p in methods_paths)


def test_no_days_sends_no_days_and_empty_is_a_note(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_trades)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/iserver/accounts", json=ISERVER_ACCOUNTS)
    ibgw_responses.get(
        f"{base}/iserver/account/trades",
        match=[matchers.query_param_matcher({})],
        json=[],
    )
    r = ibgw_cli("--backend", "live", "trades")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "(no rows)\n" and "no executions today" in r.stderr


def test_malformed_answer_exits_4(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_trades)
    base = ibgw_responses.base
    ibgw_responses.get(f"{base}/iserver/accounts", json=ISERVER_ACCOUNTS)
    ibgw_responses.get(f"{base}/iserver/account/trades", json={"trades": "?"})
    r = ibgw_cli("--backend", "live", "trades")
    assert r.exit_code == 4 and one_line(r.stderr)


# -- the loopback fake gateway through the live backend ------------------------------------
def test_live_against_fake_gateway_matches_the_fake_backend(
    cli, ibgw_fake_gateway, ibgw_env, tmp_path
):
    offline = cli("-o", "json", "trades", "--days", "7", env={"IBGW_STATE_DIR": str(tmp_path)})
    assert offline.exit_code == 0, offline.stderr
    live = cli(
        "--backend", "live", "--gateway-url", ibgw_fake_gateway.url, "-o", "json",
        "trades", "--days", "7",
    )  # fmt: skip
    assert live.exit_code == 0, live.stderr

    def at(row):
        return dt.datetime.strptime(row["time"], "%Y-%m-%dT%H:%M:%SZ")

    # the fake computes execution times from 'now': the two runs are seconds apart
    live_rows, offline_rows = json.loads(live.stdout), json.loads(offline.stdout)
    assert [dict(r, time=None) for r in live_rows] == [dict(r, time=None) for r in offline_rows]
    assert all(
        abs((at(a) - at(b)).total_seconds()) < 60
        for a, b in zip(live_rows, offline_rows, strict=True)
    )
    assert ("GET", "/iserver/account/trades", {"days": "7"}) in [
        (m, p.removeprefix("/v1/api"), q) for m, p, q in ibgw_fake_gateway.requests
    ]
    assert ibgw_fake_gateway.stats["429"] == 0
    state = ibgw_env / "state"
    audit = [r for r in records(state) if r["command"] == "trades executions"]
    assert [r["kind"] for r in audit] == ["intent", "outcome"] and audit[1]["outcome"] == "ok"
    assert json.loads((state / "pacing.json").read_text())["slots"].get("trades")


# -- the read-only policy ------------------------------------------------------------------
def test_policy_allows_exactly_the_trades_get():
    assert not is_denied("GET", "/iserver/account/trades")
    check_request("GET", "/iserver/account/trades", [("days", "7")])
    check_request("GET", "/iserver/account/trades", [])
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        with pytest.raises(PolicyRefused):
            check_request(method, "/iserver/account/trades", [])


ORDER_WRITES = [
    ("POST", "/iserver/account/DU1234567/orders"),  # place
    ("POST", "/iserver/account/DU1234567/order/1876543210"),  # modify
    ("DELETE", "/iserver/account/DU1234567/order/1876543210"),  # cancel
    ("POST", "/iserver/account/DU1234567/orders/whatif"),  # preview
    ("POST", "/iserver/account/orders/DU1234567"),  # legacy place
    ("POST", "/iserver/reply/a12b34c5-6789"),  # confirm a warning
    ("POST", "/iserver/notification"),
    ("POST", "/iserver/questions/suppress"),
    ("POST", "/iserver/account/trades"),  # a write on the read's own path
    ("PUT", "/iserver/account/DU1234567/order/1876543210"),
]


@pytest.mark.parametrize("method,path", ORDER_WRITES)
def test_policy_refuses_every_order_write(method, path):
    with pytest.raises(PolicyRefused):
        check_request(method, path, [])


@pytest.mark.parametrize("method,path", [(m, p) for m, p in ORDER_WRITES if m in ("GET", "POST")])
def test_order_write_declared_by_a_read_is_refused_before_any_byte(
    ibgw_pm, ibgw_cli, ibgw_responses, ibgw_env, method, path
):
    """A read that calls an order write beside the trades GET (as a careless or
    hostile plugin would): exit 6, nothing reaches the wire, a ``denied`` audit record.
    (Declaring the write is refused earlier still, at registration: see
    tests/test_containment.py.)"""
    write = Endpoint(method, path)

    class Sneaky:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="sneaky",
                    name="order",
                    summary="x",
                    default=True,
                    endpoints=[ibgw_trades.TRADES],
                    fetch=lambda ctx: ctx.call(write, body={}) if method == "POST" else None,
                )
            )

    ibgw_pm.register(ibgw_trades)
    ibgw_pm.register(Sneaky)
    base = ibgw_responses.base
    ibgw_responses.post(f"{base}/iserver/auth/status", json={"authenticated": True})
    ibgw_responses.add(method, f"{base}{path}", json={"order_id": 1})
    r = ibgw_cli("--backend", "live", "sneaky")
    assert r.exit_code == 6, r.stdout + r.stderr
    assert one_line(r.stderr)
    assert not [c for c in ibgw_responses.calls if path in c.request.url]
    kinds = [(x["kind"], x.get("outcome")) for x in records(ibgw_env / "state")]
    assert ("denied", None) in kinds and ("outcome", "denied") in kinds
    # and the trades read itself still works next to it
    ibgw_responses.get(f"{base}/iserver/accounts", json=ISERVER_ACCOUNTS)
    ibgw_responses.get(f"{base}/iserver/account/trades", json=[SPEC_EXAMPLE])
    ok = ibgw_cli("--backend", "live", "-o", "json", "trades")
    assert ok.exit_code == 0 and json.loads(ok.stdout)[0]["execution_id"]


def test_published_limit_applies_whatever_the_declared_class():
    from ibgw.declarations import PACING_CLASSES, pacing_classes

    assert PACING_CLASSES["trades"] == (1, 5.0)
    assert "trades" in pacing_classes(Endpoint("GET", "/iserver/account/trades"))


def test_installed_console_script_answers_json(ibgw_subprocess_env):
    import subprocess
    import sys
    from pathlib import Path

    ibgw = str(Path(sys.executable).with_name("ibgw"))
    run = subprocess.run(
        [ibgw, "--backend", "fake", "-o", "json", "trades"],
        capture_output=True,
        text=True,
        env=ibgw_subprocess_env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)
