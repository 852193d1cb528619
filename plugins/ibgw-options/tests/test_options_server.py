"""The installed ``ibgw`` console script against a real fake gateway server.

The server enforces IBKR's pacing (HTTP 429 beyond it) and adds 150 ms to every
answer; ibgw runs as a separate process with the live backend, as a user runs it.
Zero 429s, even with two processes building chains at once.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import ibgw_fake.market as market
import pytest

IBGW = Path(sys.executable).with_name("ibgw")


@pytest.fixture
def server(ibgw_pm, ibgw_fake_gateway):
    if not any(p is market for p in ibgw_pm.get_plugins()):
        ibgw_pm.register(market, name="fake-market-test")
    ibgw_fake_gateway.latency_ms = 150
    return ibgw_fake_gateway


@pytest.fixture
def env(ibgw_subprocess_env):
    if not IBGW.exists():
        pytest.fail("the ibgw console script is not installed beside this Python")
    return ibgw_subprocess_env


def ibgw_args(server, *args):
    return [str(IBGW), "--backend", "live", "--gateway-url", server.url, "-o", "json", *args]


def info_calls(server) -> int:
    return sum(
        n for path, n in server.stats["paths"].items() if path.endswith("/iserver/secdef/info")
    )


def expected_conids(symbol, month, strikes):
    return {
        c["conid"] for k in strikes for r in "CP" for c in market.contracts(symbol, month, k, r)
    }


def test_chain_strikes_around_over_the_server(server, env):
    started = time.monotonic()
    r = subprocess.run(
        ibgw_args(server, "options", "chain", "SPY", "--month", "APR26", "--strikes-around", "10"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    strikes = [
        k for k in market.strikes("SPY", "APR26") if 455 <= k <= 550
    ]  # 10 below 501.42, 10 above
    assert len(strikes) == 20
    assert {row["conid"] for row in rows} == expected_conids("SPY", "APR26", strikes)
    assert len(rows) == 80
    assert server.stats["429"] == 0
    assert info_calls(server) == 40
    assert elapsed < 30

    # the second run reads the contract definitions from the disk cache
    before = info_calls(server)
    r = subprocess.run(
        ibgw_args(server, "options", "chain", "SPY", "--month", "APR26", "--strikes-around", "10"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 80
    assert info_calls(server) == before
    assert "40 of 40 contract look-ups from the cache" in r.stderr
    assert server.stats["429"] == 0


def test_two_processes_share_the_pacing_budget(server, env):
    jobs = [
        (
            "SPY",
            "MAY26",
            ibgw_args(
                server, "options", "chain", "SPY", "--month", "MAY26", "--strikes-around", "5"
            ),
        ),
        (
            "AAPL",
            "JUN26",
            ibgw_args(
                server, "options", "chain", "AAPL", "--month", "JUN26", "--strikes-around", "5"
            ),
        ),
    ]
    procs = [
        (
            symbol,
            month,
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
        for symbol, month, args in jobs
    ]
    for symbol, month, proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        rows = json.loads(out)
        assert len(rows) == 5 * 2 * 2 * (2 if symbol == "SPY" else 1)
        assert {row["conid"] for row in rows} == expected_conids(
            symbol, month, sorted({row["strike"] for row in rows})
        )
    assert server.stats["429"] == 0
    assert info_calls(server) == 2 * 5 * 2 * 2
