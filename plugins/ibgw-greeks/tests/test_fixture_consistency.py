"""Issue 6 acceptance: the fake market is consistent, offline, for SPY and AAPL.

Every month ``options expirations`` lists has strikes, every listed strike has
call and put contracts (``options chain``), and every such contract has greeks
(``greeks --conid``): walked through the CLI, every step exit 0.
"""

import json

import ibgw_fake.market as market
import ibgw_greeks
import pytest

ibgw_options = pytest.importorskip("ibgw_options")


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_options)
    ibgw_pm.register(ibgw_greeks)
    if not any(p is market for p in ibgw_pm.get_plugins()):
        ibgw_pm.register(market, name="fake-market-test")
    return ibgw_cli


def run_json(cli, *args):
    r = cli(*args, "-o", "json")
    assert r.exit_code == 0, f"{args}: {r.stderr}"
    return json.loads(r.stdout)


@pytest.mark.parametrize("symbol", ["SPY", "AAPL"])
def test_expirations_strikes_chain_greeks_walk(cli, symbol):
    months = [row["month"] for row in run_json(cli, "options", "expirations", symbol)]
    assert months == list(market.UNDERLYINGS[symbol]["months"])
    contracts = 0
    for month in months:
        strikes = run_json(cli, "options", "strikes", symbol, "--month", month)
        assert strikes, f"{symbol} {month}: no strikes"
        assert all(s["call"] and s["put"] for s in strikes)
        listed = {s["strike"] for s in strikes}

        chain = run_json(cli, "options", "chain", symbol, "--month", month)
        pairs = {(c["strike"], c["right"]) for c in chain}
        assert pairs == {(k, r) for k in listed for r in ("C", "P")}, f"{symbol} {month}"
        assert all(c["expiry"] and c["expiry"].startswith(f"20{month[3:]}-") for c in chain)

        conids = [c["conid"] for c in chain]
        for start in range(0, len(conids), 100):
            batch = conids[start : start + 100]
            args = [a for c in batch for a in ("--conid", str(c))]
            rows = run_json(cli, "greeks", *args)
            assert [row["conid"] for row in rows] == batch
            for row in rows:
                assert row["availability"] == "real-time"
                for name in (
                    "delta",
                    "gamma",
                    "theta",
                    "vega",
                    "implied_vol",
                    "mark",
                    "open_interest",
                ):
                    assert row[name] is not None, (row["conid"], name)
                assert -1.0 <= row["delta"] <= 1.0 and row["implied_vol"] > 0
        contracts += len(conids)
    assert contracts == {"SPY": 720, "AAPL": 480}[symbol]


def test_a_few_strikes_by_symbol_have_greeks(cli):
    """The symbol form of greeks agrees with the chain's conids."""
    chain = run_json(cli, "options", "chain", "AAPL", "--month", "SEP26", "--strikes-around", "2")
    for strike in sorted({c["strike"] for c in chain}):
        rows = run_json(cli, "greeks", "AAPL", "--month", "SEP26", "--strike", f"{strike:g}")
        assert {row["conid"] for row in rows} == {
            c["conid"] for c in chain if c["strike"] == strike
        }
