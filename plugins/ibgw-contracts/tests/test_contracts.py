"""ibgw-contracts: search and info on the fake backend, over the live transport with
every request pinned by ``responses``, against the loopback fake gateway, and its
tools over MCP with the real SDK client. Shapes: endpoint reference §3."""

import json
import os
import sys

import ibgw_contracts
import ibgw_fake.market as market
import pytest
from responses import matchers


@pytest.fixture
def pm(ibgw_pm):
    ibgw_pm.register(ibgw_contracts)
    ibgw_pm.register(market, name="fake-market-test")
    return ibgw_pm


@pytest.fixture
def cli(pm, ibgw_cli):
    return ibgw_cli


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def as_json(result):
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


# -- fake backend -------------------------------------------------------------------------
def test_search_by_company_name(cli):
    rows = as_json(cli("-o", "json", "contracts", "search", "apple"))
    assert rows[0]["conid"] == 265598 and rows[0]["symbol"] == "AAPL"
    assert rows[0]["exchange"] == "NASDAQ" and "OPT" in rows[0]["sec_types"].split(",")


def test_search_by_ticker_lists_every_listing_the_us_one_first(cli):
    rows = as_json(cli("-o", "json", "contracts", "search", "AAPL"))
    assert [(r["conid"], r["exchange"]) for r in rows] == [
        (265598, "NASDAQ"),
        (38708077, "MEXI"),
        (273982664, "EBS"),
    ]
    assert rows[0]["option_months"] == "APR26,MAY26,JUN26,JUL26,SEP26,DEC26"


def test_search_type_filter(cli):
    assert [
        r["conid"]
        for r in as_json(cli("-o", "json", "contracts", "search", "spy", "--type", "OPT"))
    ] == [756733]
    r = cli("contracts", "search", "MSFT", "--type", "OPT")
    assert r.exit_code == 0 and "(no rows)" in r.stdout
    assert "IBKR found no OPT contracts for 'MSFT'" in r.stderr
    r = cli("contracts", "search", "AAPL", "--type", "WAR")
    assert r.exit_code == 2 and one_line(r.stderr)


def test_search_finds_nothing_honestly(cli):
    r = cli("-o", "json", "contracts", "search", "no such company")
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    assert "IBKR found no contracts for 'NO SUCH COMPANY'" in r.stderr


def test_info_of_a_stock_an_option_and_a_ticker(cli):
    aapl = as_json(cli("-o", "json", "contracts", "info", "265598"))
    assert aapl["conid"] == 265598 and aapl["symbol"] == "AAPL" and aapl["sec_type"] == "STK"
    assert aapl["name"] == "APPLE INC" and aapl["currency"] == "USD"
    assert aapl["listing_exchange"] == "NASDAQ" and aapl["has_options"] is True
    assert aapl["industry"] == "Technology"
    assert as_json(cli("-o", "json", "contracts", "info", "aapl")) == aapl
    conid = market.option_conid("SPY", "20260417", 500.0, "C")
    opt = as_json(cli("-o", "json", "contracts", "info", str(conid)))
    assert opt["sec_type"] == "OPT" and opt["right"] == "C" and opt["strike"] == 500.0
    assert opt["expiry"] == "2026-04-17" and opt["underlying_conid"] == 756733
    assert opt["multiplier"] == 100.0
    r = cli("contracts", "info", "265598")  # one record: key/value pairs
    assert r.stdout.splitlines()[0].split() == ["conid", "265598"]


def test_info_unknown_conid_is_a_usage_error(cli):
    r = cli("contracts", "info", "999")
    assert r.exit_code == 2 and one_line(r.stderr) and "knows no contract 999" in r.stderr


@pytest.mark.parametrize(
    "scenario,code", [("expired-session", 3), ("gateway-down", 4), ("documented-only", 0)]
)
def test_scenarios(cli, scenario, code):
    for args in (["contracts", "search", "apple"], ["contracts", "info", "265598"]):
        r = cli("--scenario", scenario, "-o", "json", *args)
        assert r.exit_code == code, (args, r.stderr)
        assert json.loads(r.stderr if code else r.stdout)


# -- live transport, pinned ---------------------------------------------------------------
@pytest.fixture
def live(pm, ibgw_cli, ibgw_responses):
    def run(*args):
        return ibgw_cli("--backend", "live", *args)

    run.rsps = ibgw_responses
    run.base = ibgw_responses.base
    return run


def test_live_search_asks_by_name_then_by_ticker(live):
    url = f"{live.base}/iserver/secdef/search"
    by_name = live.rsps.add(
        "GET",
        url,
        json=[{"conid": "8314", "symbol": "IBM", "companyName": "INTL BUSINESS MACHINES CORP",
               "description": "NYSE", "sections": [{"secType": "STK"}]}],
        match=[matchers.query_param_matcher({"symbol": "IBM", "name": "true"})],
    )  # fmt: skip
    by_ticker = live.rsps.add(
        "GET",
        url,
        json=[
            {"conid": "41645598", "symbol": "IBM", "companyHeader": "INTL BUSINESS MACHINES CORP - LSE",
             "sections": [{"secType": "STK"}]},
            {"conid": "2147483647", "companyHeader": "Corporate Fixed Income", "symbol": None,
             "issuers": [{"id": "e1400789", "name": "International Business Machines Corp"}],
             "sections": [{"secType": "BOND"}]},
        ],
        match=[matchers.query_param_matcher({"symbol": "IBM"})],
    )  # fmt: skip
    rows = as_json(live("-o", "json", "contracts", "search", "ibm"))
    assert by_name.call_count == 1 and by_ticker.call_count == 1
    order = [c.request.url for c in live.rsps.calls]
    assert "name=true" in order[0] and "name" not in order[1]
    assert [(r["conid"], r["exchange"], r["issuer_id"]) for r in rows] == [
        (41645598, "LSE", None),
        (8314, "NYSE", None),
        (None, None, "e1400789"),
    ]
    assert rows[2]["name"] == "International Business Machines Corp"


def test_live_search_for_index_and_bond_types_sends_sec_type(live):
    for sec_type in ("IND", "BOND"):
        live.rsps.add(
            "GET",
            f"{live.base}/iserver/secdef/search",
            json=[],
            match=[matchers.query_param_matcher({"symbol": "SPX", "secType": sec_type}, strict_match=False)],
        )  # fmt: skip
        r = live("-o", "json", "contracts", "search", "SPX", "--type", sec_type)
        assert r.exit_code == 0, r.stderr
    sent = [c.request.url for c in live.rsps.calls]
    assert (
        sum("secType=IND" in u for u in sent) == 2 and sum("secType=BOND" in u for u in sent) == 2
    )


def test_live_info_without_trsrv_secdef_still_answers(live):
    live.rsps.add(
        "GET",
        f"{live.base}/iserver/contract/8314/info",
        json={"con_id": 8314, "symbol": "IBM", "instrument_type": "STK", "company_name": "INTL BUSINESS MACHINES CORP",
              "currency": "USD", "valid_exchanges": "SMART,NYSE", "r_t_h": True, "multiplier": None,
              "category": "Computer Services", "industry": "Computers", "underlying_con_id": 0},
    )  # fmt: skip
    live.rsps.add(
        "GET",
        f"{live.base}/trsrv/secdef",
        body="<html><body><h1>Resource not found</h1></body></html>",
        status=404,
        content_type="text/html",
    )
    r = live("-o", "json", "contracts", "info", "8314")
    row = as_json(r)
    assert row["symbol"] == "IBM" and row["industry"] == "Computers"
    assert row["multiplier"] is None and row["underlying_conid"] is None
    assert row["regular_hours_only"] is True and row["listing_exchange"] is None
    assert "some fields are empty" in r.stderr


def test_live_info_malformed_is_unavailable_never_usage(live):
    live.rsps.add("GET", f"{live.base}/iserver/contract/8314/info", body=b'{"con_id": 83')
    r = live("-o", "json", "contracts", "info", "8314")
    assert r.exit_code == 4
    assert json.loads(r.stderr)["error"]["reason"] == "malformed-response"


# -- loopback fake gateway, and MCP -------------------------------------------------------
def test_live_backend_against_the_fake_gateway(pm, ibgw_cli, ibgw_fake_gateway):
    for args in (["contracts", "search", "apple"], ["contracts", "info", "265598"]):
        fake = ibgw_cli("-o", "json", *args)
        live = ibgw_cli(
            "--backend", "live", "--gateway-url", ibgw_fake_gateway.url, "-o", "json", *args
        )
        assert live.exit_code == 0, live.stderr
        assert json.loads(live.stdout) == json.loads(fake.stdout) and json.loads(live.stdout)
    assert ibgw_fake_gateway.stats["429"] == 0


def test_mcp_tools(tmp_path):
    pytest.importorskip("mcp")
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    (tmp_path / "state").mkdir()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ibgw", "--backend", "fake", "mcp"],
        env={"IBGW_STATE_DIR": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "c"),
             "PATH": os.environ.get("PATH", "")},
    )  # fmt: skip

    async def go():
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = {t.name: t for t in (await session.list_tools()).tools}
                    found = await session.call_tool("contracts_search", {"text": "apple"})
                    info = await session.call_tool("contracts_info", {"contract": "265598"})
                    return tools, found, info

    tools, found, info = anyio.run(go)
    for name in ("contracts_search", "contracts_info"):
        ann = tools[name].annotations.model_dump(by_alias=True, exclude_none=True)
        assert ann["readOnlyHint"] is True and ann["destructiveHint"] is False
        assert tools[name].output_schema["type"] == "object"
    assert tools["contracts_search"].input_schema["properties"]["type"]["enum"] == [
        "STK", "OPT", "FUT", "CASH", "IND", "BOND"
    ]  # fmt: skip
    assert not found.is_error and found.structured_content["records"][0]["conid"] == 265598
    assert not info.is_error and "265598" in json.dumps(info.structured_content)
