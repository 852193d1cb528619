"""ibgw-options against the fake backend and its simulated market (ibgw_fake.market)."""

import csv
import io
import json

import ibgw_fake.market as market
import ibgw_options
import pytest
from ibgw_options import reads

SPY_MONTHS = ["APR26", "MAY26", "JUN26"]
AAPL_MONTHS = ["APR26", "MAY26", "JUN26", "JUL26", "SEP26", "DEC26"]
CHAIN_COLUMNS = [
    "conid",
    "symbol",
    "expiry",
    "strike",
    "right",
    "trading_class",
    "multiplier",
    "exchange",
]


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_options)
    if not any(p is market for p in ibgw_pm.get_plugins()):
        ibgw_pm.register(market, name="fake-market-test")
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def as_json(r):
    assert r.exit_code == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def as_csv(r):
    assert r.exit_code == 0, r.stdout + r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


# -- expirations ----------------------------------------------------------------------------
def test_bare_category_lists_expirations(cli):
    r = cli("options", "SPY")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["month", "expiry_month", "exchanges"]
    assert [line.split()[0] for line in lines[2:]] == SPY_MONTHS
    assert "2026-04" in lines[2] and "SMART,AMEX,CBOE" in lines[2]


def test_expirations_json_and_csv(cli):
    rows = as_json(cli("options", "expirations", "AAPL", "-o", "json"))
    assert [r["month"] for r in rows] == AAPL_MONTHS
    assert rows[-1] == {
        "month": "DEC26",
        "expiry_month": "2026-12",
        "exchanges": "SMART,AMEX,BATS,BOX,CBOE,ISE,NASDAQOM,PHLX",
    }
    rows = as_csv(cli("options", "expirations", "spy", "--exchange", "cboe", "-o", "csv"))
    assert rows[0] == {"month": "APR26", "expiry_month": "2026-04", "exchanges": "CBOE"}


def test_expirations_exchange_not_listed(cli):
    r = cli("options", "expirations", "SPY", "--exchange", "NYSE")
    assert r.exit_code == 2
    assert (
        one_line(r.stderr) and "not listed on NYSE" in r.stderr and "SMART, AMEX, CBOE" in r.stderr
    )


# -- strikes --------------------------------------------------------------------------------
def test_strikes_spy_apr26_has_100(cli):
    rows = as_json(cli("options", "strikes", "SPY", "--month", "APR26", "-o", "json"))
    assert len(rows) == 100
    assert rows[0] == {"strike": 250.0, "call": True, "put": True}
    assert rows[-1]["strike"] == 745.0
    assert all(r["call"] and r["put"] for r in rows)


def test_strikes_table_csv_and_lower_case_month(cli):
    r = cli("options", "strikes", "AAPL", "--month", "dec26")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["strike", "call", "put"]
    assert lines[2].split() == ["140", "True", "True"]
    assert lines[3].split() == ["142.5", "True", "True"]
    assert len(lines) == 2 + 40
    rows = as_csv(cli("options", "strikes", "AAPL", "--month", "DEC26", "-o", "csv"))
    assert rows[1] == {"strike": "142.5", "call": "True", "put": "True"}


def test_strikes_default_month_is_the_nearest_with_a_note(cli):
    r = cli("options", "strikes", "SPY", "-o", "json")
    assert len(as_json(r)) == 100
    assert "month APR26 (the nearest listed" in r.stderr


# -- chain ----------------------------------------------------------------------------------
def test_chain_strikes_around(cli):
    r = cli("options", "chain", "SPY", "--month", "APR26", "--strikes-around", "2")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == CHAIN_COLUMNS
    rows = as_json(
        cli("options", "chain", "SPY", "--month", "APR26", "--strikes-around", "2", "-o", "json")
    )
    # SPY last 501.42: two strikes below (495, 500), two at or above (505, 510); weekly + monthly
    assert sorted({r["strike"] for r in rows}) == [495.0, 500.0, 505.0, 510.0]
    assert len(rows) == 4 * 2 * 2
    assert [(r["expiry"], r["strike"], r["right"]) for r in rows] == sorted(
        (r["expiry"], r["strike"], r["right"]) for r in rows
    )
    assert {r["expiry"] for r in rows} == {"2026-04-10", "2026-04-17"}
    first = rows[0]
    assert first["conid"] == market.option_conid("SPY", "20260410", 495, "C")
    assert first == {
        "conid": first["conid"],
        "symbol": "SPY",
        "expiry": "2026-04-10",
        "strike": 495.0,
        "right": "C",
        "trading_class": "SPY",
        "multiplier": 100,
        "exchange": "SMART",
        "description": "APR 10 '26 495 Call",
    }


def test_chain_csv_and_right_filter(cli):
    rows = as_csv(
        cli(
            "options",
            "chain",
            "AAPL",
            "--month",
            "MAY26",
            "--right",
            "p",
            "--strikes-around",
            "1",
            "-o",
            "csv",
        )
    )
    assert [(r["strike"], r["right"], r["expiry"]) for r in rows] == [
        ("187.5", "P", "2026-05-15"),
        ("190.0", "P", "2026-05-15"),
    ]
    assert rows[0]["multiplier"] == "100"


def test_chain_strike_range(cli):
    rows = as_json(
        cli(
            "options",
            "chain",
            "SPY",
            "--month",
            "MAY26",
            "--min-strike",
            "480",
            "--max-strike",
            "490",
            "--right",
            "C",
            "-o",
            "json",
        )
    )
    assert [(r["strike"], r["expiry"]) for r in rows] == [
        (480.0, "2026-05-08"),
        (485.0, "2026-05-08"),
        (490.0, "2026-05-08"),
        (480.0, "2026-05-15"),
        (485.0, "2026-05-15"),
        (490.0, "2026-05-15"),
    ]


def test_chain_range_outside_the_listed_strikes_is_no_rows(cli):
    r = cli("options", "chain", "SPY", "--month", "MAY26", "--min-strike", "900")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "(no rows)\n"
    assert "no strikes of SPY MAY26 in that range (listed: 400 to 595)" in r.stderr


def test_full_chain_and_the_cache(cli, monkeypatch):
    calls = []
    real = reads.fetch_contracts

    def counting(*args, **kwargs):
        calls.append(args[3:5])
        return real(*args, **kwargs)

    monkeypatch.setattr(reads, "fetch_contracts", counting)
    rows = as_json(cli("options", "chain", "SPY", "--month", "APR26", "-o", "json"))
    assert len(calls) == 200  # 100 strikes x 2 rights
    assert len(rows) == 400  # each with a weekly and a monthly
    assert len({r["conid"] for r in rows}) == 400
    calls.clear()
    r = cli("options", "chain", "SPY", "--month", "APR26", "-o", "json")
    assert as_json(r) == rows
    assert calls == []
    assert "200 of 200 contract look-ups from the cache" in r.stderr


def test_chain_cache_is_per_scenario_and_exchange(cli, monkeypatch):
    calls = []
    real = reads.fetch_contracts
    monkeypatch.setattr(reads, "fetch_contracts", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = ("options", "chain", "AAPL", "--month", "JUN26", "--strikes-around", "1", "-o", "json")
    as_json(cli(*args))
    as_json(cli(*args, "--exchange", "CBOE"))
    assert len(calls) == 8
    rows = as_json(cli(*args, "--exchange", "CBOE"))
    assert len(calls) == 8 and {r["exchange"] for r in rows} == {"CBOE"}


def test_chain_without_option_data_still_lists_contracts(cli):
    rows = as_json(
        cli(
            "--scenario",
            "no-option-data",
            "options",
            "chain",
            "SPY",
            "--month",
            "JUN26",
            "--strikes-around",
            "1",
            "-o",
            "json",
        )
    )
    assert len(rows) == 2 * 2 * 2


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,message",
    [
        (("strikes", "SPY", "--month", "APRIL26"), "month: expected MMMYY such as APR26"),
        (("strikes", "SPY", "--month", "APR2026"), "month: expected MMMYY such as APR26"),
        (("strikes", "SPY", "--month", "XYZ26"), "month: expected MMMYY such as APR26"),
        (("chain", "SPY", "--month", "APRIL26"), "month: expected MMMYY such as APR26"),
        (
            ("strikes", "SPY", "--month", "JUL26"),
            "month JUL26 is not listed for SPY options (listed: APR26, MAY26, JUN26)",
        ),
        (
            ("chain", "AAPL", "--month", "AUG26"),
            "(listed: APR26, MAY26, JUN26, JUL26, SEP26, DEC26)",
        ),
        (("chain", "SPY", "--month", "APR26", "--right", "X"), "right: expected C or P"),
        (
            ("chain", "SPY", "--month", "APR26", "--min-strike", "500", "--max-strike", "400"),
            "min-strike is above max-strike",
        ),
        (("chain", "SPY", "--strikes-around", "3", "--min-strike", "400"), "not both"),
        (("chain", "SPY", "--strikes-around", "0"), "strikes-around: must be at least 1"),
        (("chain", "SPY", "--min-strike", "abc"), "min-strike: expected float"),
        (("strikes", "SPY", "--exchange", "NYSE"), "SPY options are not listed on NYSE"),
        (("strikes", "SPY", "--exchange", "SM/ART"), "exchange: invalid value"),
        (("expirations", "S/PY"), "symbol"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, message):
    r = cli("options", *args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr
    assert message in r.stderr
    assert r.stdout == ""


def test_bad_input_sends_nothing(cli, monkeypatch):
    from ibgw.gateway import Gateway

    sent = []
    monkeypatch.setattr(Gateway, "call", lambda self, ep, **kw: sent.append(ep.key))
    r = cli("options", "chain", "SPY", "--month", "APRIL26")
    assert r.exit_code == 2
    assert sent == []


def test_bad_input_json_error_object(cli):
    r = cli("-o", "json", "options", "chain", "SPY", "--month", "APR26", "--right", "Q")
    assert r.exit_code == 2
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "invalid-right"


@pytest.mark.parametrize(
    "scenario,code",
    [
        ("gateway-down", 4),
        ("missing-session", 3),
        ("expired-session", 3),
        ("no-bridge", 3),
        ("rate-limited", 4),
        ("malformed-response", 4),
        ("login-page", 3),
        ("server-error", 4),
    ],
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    r = cli(
        "--scenario",
        scenario,
        "options",
        "chain",
        "SPY",
        "--month",
        "APR26",
        "--strikes-around",
        "1",
    )
    assert r.exit_code == code, r.stderr
    assert one_line(r.stderr)


# -- index underlyings (issue 17) -------------------------------------------------------
def test_expirations_of_an_index_with_sec_type_ind(cli):
    r = cli("options", "expirations", "SPX", "--sec-type", "IND", "-o", "json")
    rows = as_json(r)
    assert [row["month"] for row in rows] == list(market.UNDERLYINGS["SPX"]["months"])
    assert "is an index" not in r.stderr  # asked for as an index: no retry, no note


def test_an_index_without_sec_type_is_retried_as_ind_with_a_note(cli):
    r = cli("options", "SPX", "-o", "json")
    assert [row["month"] for row in as_json(r)] == ["APR26", "MAY26", "JUN26"]
    assert "SPX is an index: resolved with --sec-type IND" in r.stderr


def test_chain_of_an_index(cli):
    r = cli(
        "options", "chain", "SPX", "--sec-type", "IND", "--month", "MAY26", "--strikes-around", "1"
    )
    assert r.exit_code == 0, r.stderr
    assert "SPX" in r.stdout and "5,000" in r.stdout and "5,025" in r.stdout


def test_sec_type_is_checked_before_any_call(cli):
    r = cli("options", "SPX", "--sec-type", "FUT")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
