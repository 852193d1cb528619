"""The new reads as MCP tools, through the MCP SDK's own stdio client against
``ibgw --backend fake mcp`` (the installed plugins, found by their entry points):
listed with read-only annotations and output schemas, and each answering records."""

import sys

import anyio
import pytest

pytest.importorskip("mcp")

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

pytestmark = pytest.mark.timeout(120)

READ_ONLY = {
    "readOnlyHint": True,
    "destructiveHint": False,
    "idempotentHint": True,
    "openWorldHint": False,
}
CALLS = {
    "portfolio_pnl": {},
    "portfolio_performance": {"period": "3M"},
    "portfolio_allocation": {"by": "asset-class"},
    "trades_executions": {"days": 7},
}


async def _session_run(tmp):
    (tmp / "state").mkdir()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ibgw", "--backend", "fake", "mcp"],
        env={
            "IBGW_STATE_DIR": str(tmp / "state"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
    )
    with open(tmp / "stderr.log", "w", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                results = {
                    name: await session.call_tool(name, args) for name, args in CALLS.items()
                }
                try:
                    await session.call_tool("trades_executions", {"days": 8})
                except MCPError as exc:  # invalid arguments: a protocol error
                    bad = exc.message
                else:
                    bad = None
                return tools, results, bad


@pytest.fixture(scope="module")
def mcp_run(tmp_path_factory):
    return anyio.run(_session_run, tmp_path_factory.mktemp("mcp-portfolio"))


def test_tools_are_listed_read_only_with_output_schemas(mcp_run):
    tools, _, _ = mcp_run
    assert set(CALLS) <= set(tools)
    for name in CALLS:
        tool = tools[name]
        ann = tool.annotations.model_dump(by_alias=True, exclude_none=True)
        assert {k: ann.get(k) for k in READ_ONLY} == READ_ONLY, name
        assert tool.output_schema and tool.output_schema["type"] == "object", name
        assert tool.input_schema["additionalProperties"] is False
    days = tools["trades_executions"].input_schema["properties"]["days"]
    assert days["minimum"] == 1 and days["maximum"] == 7
    period = tools["portfolio_performance"].input_schema["properties"]["period"]
    assert {"1M", "3M", "YTD", "1Y", "12M"} <= set(period["enum"])


def test_each_tool_answers_records(mcp_run):
    _, results, _ = mcp_run
    for name, result in results.items():
        assert not result.is_error, (name, result.content)
        sc = result.structured_content
        assert sc["count"] == len(sc["records"]) > 0, name
        assert sc["provenance"] == "documented"
    assert {r["name"] for r in results["portfolio_allocation"].structured_content["records"]} == {
        "OPT",
        "CASH",
        "STK",
    }
    assert len(results["trades_executions"].structured_content["records"]) == 5
    assert "cached" not in results["portfolio_performance"].content[0].text


def test_out_of_range_days_is_refused(mcp_run):
    _, _, bad = mcp_run
    assert bad is not None and "days: must be at most 7" in bad
