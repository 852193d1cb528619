"""ibgw-greeks against the fake backend and its simulated market (ibgw_fake.market)."""

import csv
import io
import json

import ibgw_fake.market as market
import ibgw_greeks
import pytest

SPY_500C_W = market.option_conid("SPY", "20260410", 500, "C")
SPY_500C = market.option_conid("SPY", "20260417", 500, "C")
SPY_500P = market.option_conid("SPY", "20260417", 500, "P")
COLUMNS = [
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


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_greeks)
    if not any(p is market for p in ibgw_pm.get_plugins()):
        ibgw_pm.register(market, name="fake-market-test")
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def as_json(r):
    assert r.exit_code == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_greeks_by_symbol_table(cli):
    r = cli("greeks", "SPY", "--month", "APR26", "--strike", "500", "--right", "C")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == COLUMNS
    assert lines[2].startswith(f"{SPY_500C_W}  SPY APR 10 '26 500 Call")
    assert lines[3].startswith(f"{SPY_500C}  SPY APR 17 '26 500 Call")
    assert lines[3].split()[-1] == "real-time"
    assert r.stderr == ""


def test_greeks_by_symbol_json_values(cli):
    rows = as_json(
        cli("greeks", "SPY", "--month", "APR26", "--strike", "500", "--right", "c", "-o", "json")
    )
    assert [row["conid"] for row in rows] == [SPY_500C_W, SPY_500C]
    row = rows[1]
    fields = market.fields_for(SPY_500C)
    assert row["symbol"] == "SPY"
    assert row["description"] == "SPY APR 17 '26 500 Call"
    assert (row["expiry"], row["strike"], row["right"]) == ("2026-04-17", 500.0, "C")
    assert row["delta"] == float(fields["7308"]) and 0.5 < row["delta"] < 0.6
    assert row["gamma"] == float(fields["7309"]) and row["gamma"] > 0
    assert row["theta"] == float(fields["7310"]) and row["theta"] < 0
    assert row["vega"] == float(fields["7311"]) and row["vega"] > 0
    assert row["implied_vol"] == float(fields["7633"].rstrip("%"))  # a percent number
    assert 10 < row["implied_vol"] < 30
    assert row["open_interest"] == int(fields["7638"])
    # the contract's day volume (7762), never 7089 (the underlying's option volume: 6.1M)
    assert row["volume"] == int(fields["7762"]) and row["volume"] < 1_000_000
    assert fields["7089"] == market.UNDERLYINGS["SPY"]["option_volume"]
    assert row["bid"] < row["mark"] < row["ask"] and row["last"] == row["mark"]
    assert row["availability"] == "real-time"


def test_greeks_csv(cli):
    r = cli("greeks", "AAPL", "--month", "DEC26", "--strike", "142.5", "--right", "P", "-o", "csv")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 1
    assert rows[0]["description"] == "AAPL DEC 18 '26 142.5 Put"
    assert rows[0]["strike"] == "142.5" and rows[0]["right"] == "P"
    assert float(rows[0]["delta"]) < 0


def test_greeks_defaults_month_strike_and_both_rights(cli):
    r = cli("greeks", "SPY", "-o", "json")
    rows = as_json(r)
    assert [(row["expiry"], row["right"]) for row in rows] == [
        ("2026-04-10", "C"),
        ("2026-04-10", "P"),
        ("2026-04-17", "C"),
        ("2026-04-17", "P"),
    ]
    assert {row["strike"] for row in rows} == {500.0}
    assert "month APR26 (the nearest listed" in r.stderr
    assert "strike 500 (nearest the last price 501.42)" in r.stderr


def test_greeks_by_conid_keeps_the_order(cli):
    rows = as_json(
        cli("greeks", "--conid", SPY_500P, "--conid", SPY_500C, "--conid", SPY_500P, "-o", "json")
    )
    assert [row["conid"] for row in rows] == [SPY_500P, SPY_500C]
    assert rows[0]["description"] == "SPY APR 17 '26 500 Put"
    assert rows[0]["right"] == "P" and rows[0]["delta"] < 0
    assert rows[0]["expiry"] is None  # not known from a snapshot alone


def test_hundred_conids_in_one_snapshot(cli):
    conids = [
        c["conid"]
        for k in market.strikes("AAPL", "JUL26")[:25]
        for r in "CP"
        for c in market.contracts("AAPL", "JUL26", k, r)
    ]
    conids += [
        c["conid"]
        for k in market.strikes("AAPL", "SEP26")[:25]
        for r in "CP"
        for c in market.contracts("AAPL", "SEP26", k, r)
    ]
    assert len(conids) == 100
    args = [a for c in conids for a in ("--conid", c)]
    rows = as_json(cli("greeks", *args, "-o", "json"))
    assert [row["conid"] for row in rows] == conids
    assert all(row["delta"] is not None for row in rows)
    r = cli("greeks", *args, "--conid", 1)
    assert r.exit_code == 2 and one_line(r.stderr)
    assert "at most 100 conids per snapshot" in r.stderr


def test_no_option_data_is_not_entitled_never_zeros(cli):
    r = cli(
        "--scenario",
        "no-option-data",
        "greeks",
        "SPY",
        "--month",
        "APR26",
        "--strike",
        "500",
        "--right",
        "C",
    )
    assert r.exit_code == 5
    assert one_line(r.stderr)
    assert (
        "not entitled: option greeks for 2 conids (market data availability: not subscribed)"
        in r.stderr
    )
    assert r.stdout == ""
    r = cli("--scenario", "no-option-data", "-o", "json", "greeks", "--conid", SPY_500C)
    assert r.exit_code == 5
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "not-entitled"
    assert "option greeks for 1 conid " in err["message"]


def test_unknown_conid_never_gets_data(cli):
    r = cli("greeks", "--conid", 123)
    assert r.exit_code == 5 and one_line(r.stderr)
    assert "option greeks for 1 conid (market data availability: no data)" in r.stderr


def test_partial_answer_has_nulls_and_a_note(cli):
    rows = as_json(cli("greeks", "--conid", SPY_500C, "--conid", 123, "-o", "json"))
    assert rows[0]["delta"] is not None
    assert rows[1] == {
        "conid": 123,
        "symbol": None,
        "description": None,
        "expiry": None,
        "strike": None,
        "right": None,
        "last": None,
        "bid": None,
        "ask": None,
        "mark": None,
        "delta": None,
        "gamma": None,
        "theta": None,
        "vega": None,
        "implied_vol": None,
        "open_interest": None,
        "volume": None,
        "availability": None,
    }


def test_stock_conid_is_not_an_option(cli):
    r = cli("greeks", "--conid", 756733)
    assert r.exit_code == 2 and one_line(r.stderr)
    assert "conid 756733 is a STK, not an option" in r.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("SPY", "--month", "APR26", "--strike", "501", "--right", "C"),
            "strike 501 is not listed for SPY APR26 (nearest: 500, 505)",
        ),
        (
            ("AAPL", "--month", "DEC26", "--strike", "141"),
            "strike 141 is not listed for AAPL DEC26 (nearest: 140, 142.5)",
        ),
        (("SPY", "--month", "APRIL26", "--strike", "500"), "month: expected MMMYY such as APR26"),
        (("SPY", "--month", "APR2026", "--strike", "500"), "month: expected MMMYY such as APR26"),
        (("SPY", "--month", "XYZ26", "--strike", "500"), "month: expected MMMYY such as APR26"),
        (
            ("SPY", "--month", "DEC26", "--strike", "500"),
            "month DEC26 is not listed for SPY options",
        ),
        (("SPY", "--strike", "500", "--right", "X"), "right: expected C or P"),
        (("SPY", "--strike", "five"), "strike: expected float"),
        (("SPY", "--conid", "1"), "not both"),
        ((), "give a SYMBOL"),
        (("--conid", "1", "--strike", "500"), "go with a SYMBOL"),
        (("--conid", "abc"), "conid: expected int"),
        (("--conid", "0"), "conid: must be at least 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, message):
    r = cli("greeks", *args) if args else cli("greeks", "snapshot")
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr
    assert message in r.stderr


@pytest.mark.parametrize(
    "scenario,code",
    [
        ("gateway-down", 4),
        ("missing-session", 3),
        ("no-bridge", 3),
        ("rate-limited", 4),
        ("malformed-response", 4),
        ("access-denied", 3),
    ],
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    r = cli("--scenario", scenario, "greeks", "--conid", SPY_500C)
    assert r.exit_code == code, r.stderr
    assert one_line(r.stderr)


# -- index underlyings and the search pre-flight (issue 17) -------------------------------
SPX_5000C = market.option_conid("SPX", "20260417", 5000, "C")


def test_greeks_on_an_spx_option_with_sec_type_ind(cli):
    rows = as_json(
        cli(
            "greeks",
            "SPX",
            "--sec-type",
            "IND",
            "--month",
            "APR26",
            "--strike",
            "5000",
            "--right",
            "C",
            "-o",
            "json",
        )
    )
    assert [row["conid"] for row in rows] == [SPX_5000C]
    assert rows[0]["symbol"] == "SPX" and rows[0]["delta"] is not None
    assert rows[0]["volume"] == int(market.fields_for(SPX_5000C)["7762"])


def test_greeks_on_spx_without_sec_type_retries_as_an_index(cli):
    r = cli("greeks", "SPX", "--month", "APR26", "--strike", "5000", "--right", "C", "-o", "json")
    assert [row["conid"] for row in as_json(r)] == [SPX_5000C]
    assert "SPX is an index: resolved with --sec-type IND" in r.stderr


def test_greeks_by_conid_searches_the_underlying_before_the_snapshot(
    ibgw_pm, ibgw_fake_gateway, cli
):
    """IBKR: "for derivative contracts /iserver/secdef/search must be called first";
    a bare --conid finds its underlying with /trsrv/secdef and searches it."""
    r = cli(
        "--backend",
        "live",
        "--gateway-url",
        ibgw_fake_gateway.url,
        "-o",
        "json",
        "greeks",
        "--conid",
        str(SPY_500C),
        "--conid",
        str(SPX_5000C),
    )
    assert r.exit_code == 0, r.stderr
    assert [row["conid"] for row in json.loads(r.stdout)] == [SPY_500C, SPX_5000C]
    paths = [(req[1].rsplit("/v1/api", 1)[-1], req[2]) for req in ibgw_fake_gateway.requests]
    first_snapshot = next(i for i, (p, _) in enumerate(paths) if p.endswith("/snapshot"))
    searches = [q for p, q in paths[:first_snapshot] if p == "/iserver/secdef/search"]
    assert {"symbol": "SPY", "secType": "STK"} in [dict(q) for q in searches]
    assert {"symbol": "SPX", "secType": "IND"} in [dict(q) for q in searches]
    assert any(p == "/trsrv/secdef" for p, _ in paths[:first_snapshot])
