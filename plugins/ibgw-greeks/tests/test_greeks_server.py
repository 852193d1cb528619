"""The installed ``ibgw`` console script reads greeks from a real fake gateway server
(IBKR pacing enforced with 429, 150 ms per answer), the pre-flight handled over HTTP."""

import json
import subprocess
import sys
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


def test_greeks_over_the_server(server, env):
    r = subprocess.run(
        ibgw_args(server, "greeks", "SPY", "--month", "APR26", "--strike", "500", "--right", "C"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["conid"] for row in rows] == [
        market.option_conid("SPY", "20260410", 500, "C"),
        market.option_conid("SPY", "20260417", 500, "C"),
    ]
    assert all(row["delta"] is not None for row in rows)
    server.scenario = "no-option-data"
    r = subprocess.run(
        ibgw_args(server, "greeks", "--conid", str(rows[0]["conid"])),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 5, r.stderr
    assert "not subscribed" in r.stderr
    assert server.stats["429"] == 0
