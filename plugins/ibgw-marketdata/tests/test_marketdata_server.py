"""ibgw-marketdata against the loopback fake gateway (``ibgw fake-gateway serve``'s
server, which enforces IBKR's pacing limits with 429s) through the live backend;
its tools over MCP with the real SDK client; and a fresh install of only the core
and this plugin."""

import json
import os
import subprocess
import sys
from pathlib import Path

import ibgw_fake.market as market
import ibgw_marketdata
import pytest
from ibgw_fake import stocks

READS = [
    ["quote", "AAPL"],
    ["quote", "AAPL", "MSFT", "SPY"],
    ["quote", "265598", "756733"],
    ["history", "AAPL", "--period", "1w", "--bar", "1d"],
    ["history", "272093", "--period", "1d", "--bar", "15min", "--outside-rth"],
]


@pytest.fixture
def pm(ibgw_pm):
    ibgw_pm.register(ibgw_marketdata)
    ibgw_pm.register(market, name="fake-market-test")
    return ibgw_pm


def _stable(rows):
    return [{k: v for k, v in r.items() if k != "updated"} for r in rows]


def _audit(env_dir: Path) -> list[dict]:
    path = env_dir / "state" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_live_backend_against_the_fake_gateway_gives_the_fake_backends_answers(
    pm, ibgw_cli, ibgw_fake_gateway, ibgw_env
):
    for args in READS:
        fake = ibgw_cli("-o", "json", *args)
        live = ibgw_cli(
            "--backend", "live", "--gateway-url", ibgw_fake_gateway.url, "-o", "json", *args
        )
        assert fake.exit_code == 0 and live.exit_code == 0, (args, live.stderr)
        assert _stable(json.loads(live.stdout)) == _stable(json.loads(fake.stdout)), args
        assert json.loads(live.stdout)
    assert ibgw_fake_gateway.stats["429"] == 0
    # every read, fake or live, has its audit intent and outcome
    records = [r for r in _audit(ibgw_env) if r["command"] in ("quote snapshot", "history bars")]
    assert [r["kind"] for r in records] == ["intent", "outcome"] * (2 * len(READS))
    assert all(r["outcome"] == "ok" for r in records if r["kind"] == "outcome")


def test_50_quotes_are_paced_with_zero_429s(pm, ibgw_cli, ibgw_fake_gateway, ibgw_env):
    tickers = sorted(s for s in stocks.universe() if s not in ("AAPL", "SPY"))[:50]
    r = ibgw_cli(
        "--backend", "live", "--gateway-url", ibgw_fake_gateway.url, "-o", "json", "quote", *tickers
    )
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["symbol"] for row in rows] == tickers
    assert all(row["last"] is not None for row in rows)
    stats = ibgw_fake_gateway.stats
    assert stats["429"] == 0
    # 50 searches (one per ticker), the /iserver/accounts prerequisite once, and the
    # snapshot: its pre-flight, then the values
    assert stats["paths"]["/iserver/secdef/search"] == 50
    assert stats["paths"]["/iserver/accounts"] == 1
    assert stats["paths"]["/iserver/marketdata/snapshot"] == 2
    outcome = [x for x in _audit(ibgw_env) if x["kind"] == "outcome"][-1]
    assert outcome["command"] == "quote snapshot" and outcome["rows"] == 50
    # again: the tickers' conids come from the state dir's cache, no search at all
    ibgw_fake_gateway.reset()
    again = ibgw_cli(
        "--backend", "live", "--gateway-url", ibgw_fake_gateway.url, "-o", "json", "quote", *tickers
    )
    assert again.exit_code == 0 and _stable(json.loads(again.stdout)) == _stable(rows)
    assert "/iserver/secdef/search" not in ibgw_fake_gateway.stats["paths"]


def test_the_fake_gateway_would_have_answered_429_without_pacing(pm, ibgw_fake_gateway):
    """The zero above means something: the server counts and refuses bursts."""
    import requests

    with requests.Session() as s:
        codes = [
            s.get(
                ibgw_fake_gateway.url + "/iserver/secdef/search",
                params={"symbol": "MSFT", "secType": "STK"},
                timeout=10,
            ).status_code
            for _ in range(15)
        ]
    assert codes.count(429) >= 1 and ibgw_fake_gateway.stats["429"] >= 1


# -- MCP ----------------------------------------------------------------------------------
pytest.importorskip("mcp")


def test_mcp_lists_the_tools_read_only_with_output_schemas(tmp_path):
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    (tmp_path / "state").mkdir()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ibgw", "--backend", "fake", "mcp"],
        env={
            "IBGW_STATE_DIR": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "PATH": os.environ.get("PATH", ""),
        },
    )

    async def go():
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = {t.name: t for t in (await session.list_tools()).tools}
                    quote = await session.call_tool("quote_snapshot", {"symbols": ["AAPL", "MSFT"]})
                    history = await session.call_tool(
                        "history_bars", {"symbol": "AAPL", "period": "1w", "bar": "1d"}
                    )
                    bad = await session.call_tool(
                        "history_bars", {"symbol": "AAPL", "period": "2x"}
                    )
                    return tools, quote, history, bad

    tools, quote, history, bad = anyio.run(go)
    for name in ("quote_snapshot", "history_bars"):
        tool = tools[name]
        ann = tool.annotations.model_dump(by_alias=True, exclude_none=True)
        assert ann["readOnlyHint"] is True and ann["destructiveHint"] is False, name
        assert tool.output_schema and tool.output_schema["type"] == "object"
    props = tools["quote_snapshot"].input_schema["properties"]
    assert props["symbols"]["type"] == "array" and props["sec_type"]["enum"] == [
        "STK",
        "IND",
        "BOND",
    ]
    assert not quote.is_error and not history.is_error
    records = quote.structured_content["records"]
    assert [r["symbol"] for r in records] == ["AAPL", "MSFT"]
    assert records[0]["availability"] == "real-time"
    assert len(history.structured_content["records"]) == 5
    assert bad.is_error and "1-30min" in bad.content[0].text


# -- a user who installs only ibgw and ibgw-marketdata ------------------------------------
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_fresh_install_of_the_core_and_this_plugin_only(tmp_path):
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        pytest.fail("uv is a test dependency (pip install -e '.[test]')")
    wheels = tmp_path / "wheels"
    for project in (ROOT, ROOT / "plugins" / "ibgw-marketdata", ROOT / "plugins" / "ibgw-fake"):
        subprocess.run(
            [uv, "build", "-q", "--wheel", "-o", str(wheels), str(project)],
            check=True,
            capture_output=True,
        )
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", str(venv)], check=True, capture_output=True)

    def install(*names):
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
            + ["--find-links", str(wheels), *names],
            check=True,
            capture_output=True,
        )

    (tmp_path / "empty.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IBGW_", "PYTHON", "VIRTUAL"))}
    env.update(IBGW_STATE_DIR=str(tmp_path / "state"), IBGW_CONFIG=str(tmp_path / "empty.toml"))

    def ibgw(*args):
        return subprocess.run(
            [str(venv / "bin" / "ibgw"), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=120,
        )

    install("ibgw", "ibgw-marketdata")
    help_text = ibgw("--help").stdout
    assert "  quote " in help_text and "  history " in help_text
    for other in ("contracts", "options", "greeks", "fx", "news"):
        assert f"  {other} " not in help_text
    plugins = json.loads(ibgw("plugins", "-o", "json").stdout)
    assert "ibgw-marketdata" in {p["distribution"] for p in plugins}
    assert all(p["error"] is None for p in plugins), plugins
    for args in (["quote", "--help"], ["history", "--help"]):
        assert ibgw(*args).returncode == 0
    r = ibgw("history", "AAPL", "--period", "2x")
    assert r.returncode == 2 and "1-30min" in r.stderr  # checked before any call
    # offline, once the fake backend is there too
    install("ibgw-fake")
    for args in (["quote", "AAPL", "MSFT", "SPY"], ["history", "AAPL", "--period", "1w"]):
        r = ibgw("--backend", "fake", "-o", "json", *args)
        assert r.returncode == 0, (args, r.stderr)
        assert json.loads(r.stdout)
    probe = json.loads(ibgw("--backend", "fake", "-o", "json", "probe", "quote", "history").stdout)
    assert [p["result"] for p in probe] == ["works", "works"], probe
