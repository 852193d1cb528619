"""MCP progress notifications for long reads, and the size cap on MCP results.

Progress: the SDK's stdio client calls ``options_chain`` (which opens ``ctx.progress``
over its contract look-ups) with a ``progress_callback``; the real ``ibgw --backend fake
mcp`` subprocess sends ``notifications/progress`` with increasing progress and the total,
and sends none when the client did not ask. The same over Streamable HTTP, with
updates on the way (rate-limited) when the look-ups take a while.

Cap: ``success_result`` (what every tool call returns) on a large answer of the
installed ``accounts positions`` read stays within ``MAX_STRUCTURED_BYTES`` and says how
many records it returned, how many it left out and how to narrow the request; the
client SDK accepts the capped result against the tool's output schema.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
import httpx2  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from ibgw.app import App  # noqa: E402
from ibgw.plugins import get_plugin_manager  # noqa: E402
from ibgw.runner import ReadOutcome  # noqa: E402

pytestmark = pytest.mark.timeout(120)

MONTHS = ("APR26", "MAY26", "JUN26")
READS = {r.tool_name: r for r in App(get_plugin_manager()).reads}


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    env.update(
        IBGW_STATE_DIR=str(tmp / "state"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if "IBGW_LOAD_PLUGINS" in os.environ:
        env["IBGW_LOAD_PLUGINS"] = os.environ["IBGW_LOAD_PLUGINS"]
    env.update(extra)
    return env


class Seen:
    def __init__(self):
        self.updates: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress, total, message):
        self.updates.append((progress, total, message))


def _assert_progress(seen: Seen, lookups: int) -> None:
    values = [p for p, _, _ in seen.updates]
    assert len(values) >= 2, seen.updates
    assert values == sorted(values) and len(set(values)) == len(values), values  # increasing
    assert values[0] == 0 and values[-1] == lookups, seen.updates
    assert all(t == lookups for _, t, _ in seen.updates), seen.updates
    assert all(m and "contracts" in m for _, _, m in seen.updates), seen.updates


def _chain_args(month: str) -> dict:
    return {"symbol": "SPY", "month": month, "strikes_around": 4}


pytestmark = [pytestmark, pytest.mark.skipif("options_chain" not in READS, reason="no options")]


def test_long_reads_send_progress_over_stdio_when_asked(tmp_path):
    (tmp_path / "state").mkdir()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ibgw", "--backend", "fake", "mcp"],
        env=_env(tmp_path),
    )

    async def go():
        out = {}
        with open(tmp_path / "stderr.log", "w", encoding="utf-8") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for month in MONTHS[:2]:  # fresh state dir: every look-up goes out
                        seen = Seen()
                        result = await session.call_tool(
                            "options_chain", _chain_args(month), progress_callback=seen
                        )
                        out[month] = (result, seen)
                    # not asked (no progress token): the call is answered as before
                    plain = await session.call_tool("options_chain", _chain_args(MONTHS[2]))
                    out["plain"] = (plain, None)
                    # cached now: nothing to look up, so nothing to report but 0 of 0
                    seen = Seen()
                    cached = await session.call_tool(
                        "options_chain", _chain_args(MONTHS[0]), progress_callback=seen
                    )
                    out["cached"] = (cached, seen)
        return out

    out = anyio.run(go)
    for month in MONTHS[:2]:
        result, seen = out[month]
        assert not result.is_error, result.structured_content
        records = result.structured_content["records"]
        assert records and all(
            r["maturity_month"] == month for r in records if "maturity_month" in r
        )
        _assert_progress(seen, lookups=16)  # 8 strikes x 2 rights
    assert not out["plain"][0].is_error
    cached, seen = out["cached"]
    assert not cached.is_error and seen.updates == []
    assert "Traceback" not in (tmp_path / "stderr.log").read_text(encoding="utf-8")


def test_long_reads_send_progress_over_http(tmp_path):
    from mcp.client.streamable_http import streamable_http_client
    from test_mcp_http import HttpServer

    token = secrets.token_urlsafe(32)
    # each gateway answer takes 150 ms here, so the look-ups span several update intervals
    env = _env(tmp_path, IBGW_MCP_TOKEN=token, IBGW_LATENCY_MS="150")
    server = HttpServer(tmp_path, env=env)
    try:

        async def go():
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                async with streamable_http_client(server.url, http_client=http) as (r, w):
                    async with ClientSession(r, w) as session:
                        await session.initialize()
                        seen = Seen()
                        result = await session.call_tool(
                            "options_chain", _chain_args("MAY26"), progress_callback=seen
                        )
                        return result, seen

        result, seen = anyio.run(go)
    finally:
        server.stop()
    assert not result.is_error
    _assert_progress(seen, lookups=16)
    assert any(0 < p < 16 for p, _, _ in seen.updates), seen.updates  # updates on the way


# -- the result cap ------------------------------------------------------------------------
def _positions(n: int) -> list[dict]:
    read = READS["accounts_positions"]
    return [
        {c: (f"S{i:06d} " + "x" * 300 if c == read.columns[0] else i) for c in read.columns}
        for i in range(n)
    ]


def test_a_large_answer_is_capped_and_the_rest_summarised():
    from ibgw.mcp_server import MAX_STRUCTURED_BYTES, MAX_TEXT_CHARS, success_result

    read = READS["accounts_positions"]
    records = _positions(20_000)  # about 7 MiB of JSON
    assert len(json.dumps(records)) > 4 * 1024 * 1024
    outcome = ReadOutcome(read, records, False, "documented", "GET /x", ["a note"])
    result = success_result(read, outcome)

    sc = result.structured_content
    size = len(json.dumps(sc, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= MAX_STRUCTURED_BYTES
    kept = sc["count"]
    assert 0 < kept < 20_000 and len(sc["records"]) == kept
    assert sc["records"] == records[:kept]  # a prefix, in order, records whole
    assert sc["truncated"] is True and sc["total"] == 20_000 and sc["omitted"] == 20_000 - kept
    note = sc["notes"][-1]
    assert f"{kept:,} of 20,000 records returned" in note and f"{20_000 - kept:,} left out" in note
    assert "narrow the request" in note and "ibgw accounts positions -o json" in note
    assert "a note" in sc["notes"]
    text = result.content[0].text
    assert len(text) <= MAX_TEXT_CHARS + 1000
    assert f"{kept:,} of 20,000 records returned" in text


def test_a_small_answer_is_not_capped():
    from ibgw.mcp_server import success_result

    read = READS["accounts_positions"]
    records = _positions(10)
    sc = success_result(read, ReadOutcome(read, records, False)).structured_content
    assert sc["records"] == records and sc["count"] == 10
    assert "truncated" not in sc and "omitted" not in sc


def test_a_single_record_larger_than_the_cap_is_left_out_and_said_so():
    from ibgw.mcp_server import MAX_STRUCTURED_BYTES, success_result

    single = next((r for r in READS.values() if r.single), None)
    if single is None:
        pytest.skip("no single-record read installed")
    huge = {c: "y" * (MAX_STRUCTURED_BYTES + 10) for c in (single.columns or ("value",))[:1]}
    result = success_result(single, ReadOutcome(single, [huge], True))
    sc = result.structured_content
    assert sc["record"] is None and sc["truncated"] is True and sc["omitted"] == 1
    assert "larger than the 256 KiB result cap" in sc["notes"][-1]


def test_the_capped_result_satisfies_the_tools_output_schema():
    from jsonschema import Draft202012Validator

    from ibgw.mcp_server import output_schema, success_result

    read = READS["accounts_positions"]
    sc = success_result(read, ReadOutcome(read, _positions(5_000), False)).structured_content
    assert sc["truncated"] is True
    Draft202012Validator(output_schema(read)).validate(sc)


def test_progress_keeps_increasing_across_the_bars_of_one_read():
    from ibgw.runner import ReadContext, reporting_progress

    sent = []
    read = READS["options_chain"]
    with reporting_progress(lambda p, t, m: sent.append((p, t, m)), interval=0):
        ctx = ReadContext(None, None, read, actor="mcp")
        first = ctx.progress(3, "first")
        for _ in range(3):
            first.advance()
        first.close()
        second = ctx.progress(2, "second")
        second.advance()
        second.advance()
        second.close()
    ctx = ReadContext(None, None, read, actor="mcp")
    ctx.progress(5, "outside").advance()  # no channel outside the block: nothing sent
    assert [p for p, _, _ in sent] == [0, 1, 2, 3, 4, 5]
    assert [t for _, t, _ in sent] == [3, 3, 3, 3, 5, 5]
    assert [m for _, _, m in sent] == ["first"] * 4 + ["second"] * 2
