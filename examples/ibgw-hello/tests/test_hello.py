"""Tests of the example plugin, offline: the fake backend, pinned HTTP with
``responses``, and the installed ``ibgw`` script in a subprocess. The fixtures
(``ibgw_pm``, ``ibgw_cli``, ``ibgw_responses``, ``ibgw_env``) come from the pytest
plugins of ibgw and ibgw-fake, loaded automatically when they are installed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import ibgw_hello
import pytest

IBGW = str(Path(sys.executable).with_name("ibgw"))

SPY = {
    "conid": 756733,
    "currency": "USD",
    "name": "SPDR S&P 500 ETF TRUST",
    "assetClass": "STK",
    "ticker": "SPY",
    "type": "ETF",
    "hasOptions": True,
    "listingExchange": "ARCA",
}


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    from ibgw_fake import market

    # as installed: ibgw-fake's market answers /trsrv/secdef for every other conid
    ibgw_pm.register(market, name="fake-market-test")
    ibgw_pm.register(ibgw_hello)
    return ibgw_cli


# -- the fake backend -------------------------------------------------------------


def test_contract_table(cli):
    result = cli("hello", "contract", "--conid", "756733")
    assert result.exit_code == 0, result.output
    header, _rule, row = result.stdout.splitlines()
    assert header.split()[:3] == ["conid", "ticker", "name"]
    assert row.split()[:2] == ["756733", "SPY"]


def test_several_conids_as_json(cli):
    result = cli("hello", "contract", "--conid", "756733", "--conid", "265598", "-o", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [(r["conid"], r["ticker"], r["exchange"]) for r in records] == [
        (756733, "SPY", "ARCA"),
        (265598, "AAPL", "NASDAQ"),
    ]
    assert records[0]["has_options"] is True


def test_default_read_answers_the_category(cli):
    result = cli("hello", "--conid", "265598", "-o", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("265598,AAPL,APPLE INC,STK,COMMON,USD,NASDAQ")


def test_unknown_conid_is_no_rows(cli):
    result = cli("hello", "contract", "--conid", "1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--conid", "abc"], "conid: expected int"),
        (["--conid", "-5"], "conid: invalid value"),
        (["--conid", "12345678901"], "conid: invalid value"),
        ([], "conid: required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, message):
    result = cli("hello", "contract", *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_at_most_200_conids(cli):
    args = [a for n in range(1, 202) for a in ("--conid", str(n))]
    result = cli("hello", "contract", *args)
    assert result.exit_code == 2
    assert "at most 200" in result.stderr


def test_session_problems_are_the_core_exit_codes(cli):
    result = cli("--scenario", "missing-session", "hello", "contract", "--conid", "756733")
    assert result.exit_code == 3, result.output
    result = cli("--scenario", "gateway-down", "hello", "contract", "--conid", "756733")
    assert result.exit_code == 4, result.output


# -- pinned requests against the live transport -------------------------------------


def test_pinned_request(ibgw_pm, ibgw_cli, ibgw_responses):
    from responses import matchers

    ibgw_pm.register(ibgw_hello)
    aapl = {"conid": "265598", "ticker": "AAPL", "name": "APPLE INC", "assetClass": "STK"}
    ibgw_responses.get(
        f"{ibgw_responses.base}/trsrv/secdef",
        match=[matchers.query_param_matcher({"conids": "756733,265598"})],
        json={"secdef": [SPY, aapl]},
    )
    conids = ["--conid", "756733", "--conid", "265598", "--conid", "756733"]
    result = ibgw_cli("--backend", "live", "hello", "contract", *conids, "-o", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records[0] == {
        "conid": 756733,
        "ticker": "SPY",
        "name": "SPDR S&P 500 ETF TRUST",
        "asset_class": "STK",
        "type": "ETF",
        "currency": "USD",
        "exchange": "ARCA",
        "has_options": True,
    }
    # a string conid and missing optional fields, as some builds send them
    assert records[1] == {
        "conid": 265598,
        "ticker": "AAPL",
        "name": "APPLE INC",
        "asset_class": "STK",
        "type": None,
        "currency": None,
        "exchange": None,
        "has_options": None,
    }
    assert len(ibgw_responses.calls) == 1


def test_pinned_no_content(ibgw_pm, ibgw_cli, ibgw_responses):
    from responses import matchers

    ibgw_pm.register(ibgw_hello)
    ibgw_responses.get(
        f"{ibgw_responses.base}/trsrv/secdef",
        match=[matchers.query_param_matcher({"conids": "42"})],
        status=204,
    )
    result = ibgw_cli("--backend", "live", "hello", "contract", "--conid", "42", "-o", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("conid,ticker,name")


def test_pinned_malformed_answer_is_unavailable(ibgw_pm, ibgw_cli, ibgw_responses):
    ibgw_pm.register(ibgw_hello)
    ibgw_responses.get(f"{ibgw_responses.base}/trsrv/secdef", json={"nope": []})
    result = ibgw_cli("--backend", "live", "hello", "contract", "--conid", "756733")
    assert result.exit_code == 4
    assert "unexpected answer" in result.stderr


# -- a real HTTP server: the fake gateway on a loopback port ------------------------------


def test_against_the_fake_gateway(ibgw_pm, ibgw_cli, ibgw_fake_gateway):
    ibgw_pm.register(ibgw_hello)
    url = ibgw_fake_gateway.url  # http://127.0.0.1:PORT/v1/api
    args = ["hello", "contract", "--conid", "265598", "-o", "json"]
    result = ibgw_cli("--backend", "live", "--gateway-url", url, *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["ticker"] == "AAPL"
    assert ("GET", "/trsrv/secdef", {"conids": "265598"}) in [
        (method, path.removeprefix("/v1/api"), dict(query))
        for method, path, query in ibgw_fake_gateway.requests
    ]


# -- the installed plugin, as users run it ---------------------------------------------


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    env.update(IBGW_STATE_DIR=os.environ["IBGW_STATE_DIR"], IBGW_CONFIG=os.environ["IBGW_CONFIG"])
    return env


def test_installed_plugin_is_listed(ibgw_env):
    result = subprocess.run(
        [IBGW, "plugins", "-o", "json"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["hello"]["distribution"] == "ibgw-hello"
    assert plugins["hello"]["error"] is None
    assert plugins["hello"]["hooks"] == ["ibgw_fake_fixtures", "ibgw_register_reads"]


def test_installed_plugin_runs(ibgw_env):
    result = subprocess.run(
        [IBGW, "--backend", "fake", "hello", "contract", "--conid", "756733"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "SPDR S&P 500 ETF TRUST" in result.stdout


def test_mcp_tool(ibgw_env):
    pytest.importorskip("mcp")
    import anyio
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {k: v for k, v in _env().items() if k.startswith("IBGW_")}
    server = StdioServerParameters(command=IBGW, args=["--backend", "fake", "mcp"], env=env)

    async def session_calls():
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            result = await session.call_tool("hello_contract", {"conid": [756733]})
            return tools, result

    tools, result = anyio.run(session_calls)
    assert "hello_contract" in tools
    assert tools["hello_contract"].annotations.read_only_hint is True
    assert not result.is_error
    assert result.structured_content["records"][0]["ticker"] == "SPY"
