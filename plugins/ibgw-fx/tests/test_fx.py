"""ibgw-fx: exchange rates and currency pairs, on the fake backend and with every
live request pinned by ``responses``."""

import csv
import io
import json

import ibgw_fx
import pytest
from ibgw_fx import fake
from responses import matchers

BASE = "https://localhost:5000/v1/api"
CODES = sorted(fake.USD_VALUE)


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_fx)
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def rate_of(cli, source, target):
    r = cli("fx", "rate", source, target, "-o", "json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


# -- fake backend -------------------------------------------------------------------
def test_rate_is_one_record_in_every_format(cli):
    assert rate_of(cli, "usd", "eur") == {
        "source": "USD",
        "target": "EUR",
        "rate": 0.92592593,
        "inverse": 1.08,
    }
    r = cli("fx", "rate", "USD", "EUR")
    assert r.exit_code == 0
    assert [line.split() for line in r.stdout.splitlines()] == [
        ["source", "USD"],
        ["target", "EUR"],
        ["rate", "0.925926"],
        ["inverse", "1.08"],
    ]
    r = cli("fx", "USD", "JPY", "-o", "csv")  # the default read
    assert list(csv.reader(io.StringIO(r.stdout))) == [
        ["source", "target", "rate", "inverse"],
        ["USD", "JPY", "149.25373134", "0.0067"],
    ]


@pytest.mark.parametrize("a", CODES)
@pytest.mark.parametrize("b", CODES)
def test_fake_rates_are_consistent(cli, a, b):
    if a == b:
        return
    ab = rate_of(cli, a, b)["rate"]
    ba = rate_of(cli, b, a)["rate"]
    assert ab * ba == pytest.approx(1.0, rel=1e-6)
    via_usd = fake.rate(a, "USD") * fake.rate("USD", b)
    assert ab == pytest.approx(via_usd, rel=1e-6)


def test_pairs_table_json_csv(cli):
    r = cli("fx", "pairs", "usd", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["currency"] for row in rows] == ["CAD", "CHF", "EUR", "GBP", "JPY"]
    assert rows[2] == {
        "symbol": "EUR.USD",
        "conid": 12087792,
        "currency": "EUR",
        "base": "EUR",
        "quote": "USD",
    }
    r = cli("fx", "pairs", "EUR")
    assert r.stdout.splitlines()[0].split() == ["symbol", "conid", "currency", "base", "quote"]
    assert "EUR.GBP" in r.stdout
    r = cli("fx", "pairs", "EUR", "-o", "csv")
    assert list(csv.reader(io.StringIO(r.stdout)))[1] == [
        "EUR.CAD",
        "15016125",
        "CAD",
        "EUR",
        "CAD",
    ]


def test_pairs_for_an_unlisted_currency_is_no_rows(cli):
    r = cli("fx", "pairs", "SEK")
    assert r.exit_code == 0
    assert "(no rows)" in r.stdout and "lists no FX pairs for SEK" in r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (("rate", "USD", "usd"), "same currency"),
        (("rate", "US", "EUR"), "source"),
        (("rate", "USD", "EURO"), "target"),
        (("rate", "U$D", "EUR"), "source"),
        (("rate", "USD", "E1R"), "target"),
        (("rate", "USD", "XYZ"), "no exchange rate for USD/XYZ"),  # the gateway's 400
        (("pairs", "12"), "currency"),
        (("pairs", "US D"), "currency"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, needle):
    r = cli("fx", *args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert one_line(r.stderr), r.stderr
    assert needle in r.stderr


def test_missing_target_is_a_usage_error(cli):
    r = cli("fx", "rate", "USD")
    assert r.exit_code == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "scenario,code",
    [
        ("missing-session", 3),
        ("keepalive-expired", 3),
        ("gateway-down", 4),
        ("rate-limited", 4),
        ("malformed-response", 4),
        ("access-denied", 3),
    ],
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    r = cli("--scenario", scenario, "fx", "rate", "USD", "EUR")
    assert r.exit_code == code, r.stderr
    assert one_line(r.stderr)


# -- live transport, every request pinned -------------------------------------------
def live(cli, *args):
    return cli("--backend", "live", *args)


def pin_rate(rsps, source, target, **answer):
    return rsps.add(
        "GET",
        f"{BASE}/iserver/exchangerate",
        match=[matchers.query_param_matcher({"source": source, "target": target})],
        **answer,
    )


def pin_pairs(rsps, currency, **answer):
    return rsps.add(
        "GET",
        f"{BASE}/iserver/currency/pairs",
        match=[matchers.query_param_matcher({"currency": currency})],
        **answer,
    )


def test_live_rate_pinned(ibgw_responses, cli):
    call = pin_rate(ibgw_responses, "USD", "EUR", json={"rate": 0.86656614})  # S3 recording
    r = live(cli, "-o", "json", "fx", "rate", "usd", "eur")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {
        "source": "USD",
        "target": "EUR",
        "rate": 0.86656614,
        "inverse": 1.15398,
    }  # 1.1539800..., 8 significant digits
    r = live(cli, "fx", "rate", "USD", "EUR")
    assert "rate     0.866566" in r.stdout
    r = live(cli, "fx", "rate", "USD", "EUR", "-o", "csv")
    assert r.stdout.splitlines()[1] == "USD,EUR,0.86656614,1.15398"
    assert call.call_count == 3


def test_live_rate_as_string_is_parsed(ibgw_responses, cli):
    pin_rate(ibgw_responses, "EUR", "USD", json={"rate": "1.15398"})
    r = live(cli, "-o", "json", "fx", "rate", "EUR", "USD")
    assert json.loads(r.stdout)["rate"] == 1.15398


def test_live_rate_zero_is_a_usage_error(ibgw_responses, cli):
    # a well-formed answer that has no rate for the pair: the codes are at fault
    pin_rate(ibgw_responses, "USD", "XAU", json={"rate": 0})
    r = live(cli, "fx", "rate", "USD", "XAU")
    assert r.exit_code == 2 and one_line(r.stderr)
    assert "no exchange rate for USD/XAU" in r.stderr


@pytest.mark.parametrize("answer", [{}, {"rate": None}, {"rate": "n/a"}])
def test_live_rate_missing_is_unavailable_not_the_users_fault(ibgw_responses, cli, answer):
    # issue 18 finding 8: an answer without a rate is the gateway's fault (exit 4)
    pin_rate(ibgw_responses, "USD", "XAU", json=answer)
    r = live(cli, "fx", "rate", "USD", "XAU")
    assert r.exit_code == 4 and one_line(r.stderr)
    assert "currency codes" not in r.stderr and "Start the Client Portal" not in r.stderr


def test_live_rate_malformed_is_unavailable(ibgw_responses, cli):
    pin_rate(ibgw_responses, "USD", "EUR", json=[0.9])
    r = live(cli, "fx", "rate", "USD", "EUR")
    assert r.exit_code == 4 and one_line(r.stderr)


def test_live_rate_400_is_unknown_currency(ibgw_responses, cli):
    pin_rate(
        ibgw_responses, "USD", "ABC", status=400, json={"error": "Bad Request", "statusCode": 400}
    )
    r = live(cli, "fx", "rate", "USD", "ABC")
    assert r.exit_code == 2 and "no exchange rate for USD/ABC" in r.stderr


def test_live_pairs_pinned(ibgw_responses, cli):
    answer = {
        "USD": [  # the spec example, plus a string conid and a missing ccyPair
            {"ccyPair": "SGD", "conid": 37928772, "symbol": "USD.SGD"},
            {"ccyPair": "RON", "conid": "38231133", "symbol": "USD.RON"},
            {"conid": 34838409, "symbol": "USD.CZK"},
            "junk",
        ]
    }
    call = pin_pairs(ibgw_responses, "USD", json=answer)
    r = live(cli, "-o", "json", "fx", "pairs", "usd")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"symbol": "USD.CZK", "conid": 34838409, "currency": None, "base": "USD", "quote": "CZK"},
        {"symbol": "USD.RON", "conid": 38231133, "currency": "RON", "base": "USD", "quote": "RON"},
        {"symbol": "USD.SGD", "conid": 37928772, "currency": "SGD", "base": "USD", "quote": "SGD"},
    ]
    r = live(cli, "fx", "pairs", "USD", "-o", "csv")
    assert list(csv.reader(io.StringIO(r.stdout)))[2] == [
        "USD.RON",
        "38231133",
        "RON",
        "USD",
        "RON",
    ]
    r = live(cli, "fx", "pairs", "USD")
    assert r.stdout.splitlines()[2].split() == ["USD.CZK", "34838409", "USD", "CZK"]
    assert call.call_count == 3


@pytest.mark.parametrize("answer", [{}, {"USD": []}, None])
def test_live_pairs_empty(ibgw_responses, cli, answer):
    if answer is None:
        pin_pairs(ibgw_responses, "USD", status=204)
    else:
        pin_pairs(ibgw_responses, "USD", json=answer)
    r = live(cli, "fx", "pairs", "USD")
    assert r.exit_code == 0, r.stderr
    assert "(no rows)" in r.stdout


def test_live_bad_input_sends_nothing(ibgw_responses, cli):
    r = live(cli, "fx", "rate", "USD", "USD")
    assert r.exit_code == 2
    r = live(cli, "fx", "rate", "USD", "EU")
    assert r.exit_code == 2
    assert len(ibgw_responses.calls) == 0
