"""5. MCP: ``ibgw --backend fake mcp`` driven by the official MCP SDK client
(``mcp.client.stdio.stdio_client`` + ``ClientSession``).

* Start-up: from spawning the process to the ``tools/list`` answer (initialize
  handshake included), over several fresh processes.
* Tool-call latency: ``CALLS`` calls of ``fx_rate`` (USD→EUR, fake backend) in one
  session after a warm-up, each timed from ``call_tool`` to its result; every call
  goes through ``run_read``, so it is validated, audited (the intent synced to disk before
  the call) and redacted.

* HTTP: the same ``fx_rate`` calls over the Streamable HTTP transport
  (``ibgw --backend fake mcp --transport http --port 0``, the SDK's
  ``streamable_http_client`` with the bearer token), median beside the stdio one.
* Large answer: one ``accounts_positions`` result of ~5 MiB (30,000 generated records)
  through the SDK's in-process client (``mcp.client.client.Client``), with the result cap
  and with the cap lifted, each in a fresh process (time of the call, peak RSS).

If ``ibgw.mcp_server`` is not installed yet the section is reported as pending.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

from common import (
    fmt_summary,
    fmt_time,
    ibgw_env,
    profile_block,
    profile_parts,
    profile_top,
    scratch,
    summary,
    venv_bin,
)

NAME = "mcp"
TITLE = "MCP server"
STARTS = 8
CALLS = 200
WARMUP = 10
TOOL = "fx_rate"
ARGS = {"source": "USD", "target": "EUR"}
TARGET_CALL_S = 0.010
HANDLER_CALLS = 200
IMPORT_RUNS = 5

# the tool handler's parts, profiled in process (cumulative, per call)
HANDLER_PARTS = [
    (
        "ibgw's tool handler (argument check + `IbgwMcp._call_sync`)",
        "ibgw/mcp_server.py",
        "check_arguments|_call_sync",
    ),
    (
        "&nbsp;&nbsp;argument check against the input schema",
        "ibgw/mcp_server.py",
        "check_arguments",
    ),
    ("&nbsp;&nbsp;run_read", "ibgw/runner.py", "run_read"),
    ("&nbsp;&nbsp;&nbsp;&nbsp;audit intent + outcome records", "ibgw/audit.py", "intent|outcome"),
    (
        "&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;of which os.fsync / fdatasync",
        "~",
        "<built-in method posix.fsync>|<built-in method posix.fdatasync>",
    ),
    ("&nbsp;&nbsp;&nbsp;&nbsp;fake transport", "ibgw_fake/transport.py", "_deliver"),
    ("&nbsp;&nbsp;result building (success_result)", "ibgw/mcp_server.py", "success_result"),
]

HTTP_CALLS = 200
BIG_RECORDS = 30_000
BIG_CHILD = r"""
import json, resource, sys, tempfile, time
import anyio
from mcp.client.client import Client
import ibgw.mcp_server as ms
from ibgw.app import App
from ibgw.plugins import get_plugin_manager
from ibgw.runner import ReadOutcome

if sys.argv[1] != "cap":
    ms.MAX_STRUCTURED_BYTES = 1 << 40
n = int(sys.argv[2])
app = App(get_plugin_manager(), {"backend": "fake"},
          environ={"IBGW_STATE_DIR": tempfile.mkdtemp() + "/state"})
server = ms.build(app)
read = server.table.reads["accounts_positions"]
first = read.columns[0]
records = [{c: (f"S{i:06d}" if c == first else i * 1.5) for c in read.columns} for i in range(n)]
size = len(json.dumps(records, separators=(",", ":")))

def answer(name, arguments, report=None):
    return ms.success_result(read, ReadOutcome(read, records, False, "documented", "GET /x"))

server._call_sync = answer

async def main():
    async with Client(server.server) as client:
        t = time.perf_counter()
        result = await client.call_tool("accounts_positions", {})
        return time.perf_counter() - t, result

elapsed, result = anyio.run(main)
print(json.dumps({"seconds": elapsed, "answer_bytes": size,
                  "returned": result.structured_content["count"],
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

IMPORT_CHILD = (
    "import time; t = time.perf_counter(); import ibgw.mcp_server; print(time.perf_counter() - t)"
)


def _available() -> str | None:
    """None when the MCP server can be benchmarked, else why not."""
    if importlib.util.find_spec("mcp") is None:
        return "the mcp SDK is not installed in the project .venv"
    if importlib.util.find_spec("ibgw.mcp_server") is None:
        return "ibgw/mcp_server.py is not there yet"
    return None


def run(log) -> dict:
    why = _available()
    if why is not None:
        log(f"  pending: {why}")
        return {"pending": why}
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    ibgw = venv_bin("ibgw")

    async def session_run(env, errlog, calls: int):
        params = StdioServerParameters(command=ibgw, args=["--backend", "fake", "mcp"], env=env)
        t0 = time.perf_counter()
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                t_init = time.perf_counter() - t0
                listed = await session.list_tools()
                t_list = time.perf_counter() - t0
                names = [t.name for t in listed.tools]
                if TOOL not in names:
                    raise RuntimeError(f"tool {TOOL} not listed")
                lat = []
                for i in range(calls + (WARMUP if calls else 0)):
                    t = time.perf_counter()
                    result = await session.call_tool(TOOL, dict(ARGS))
                    elapsed = time.perf_counter() - t
                    if result.is_error:
                        raise RuntimeError(f"{TOOL} failed: {result.content}")
                    if i >= WARMUP:
                        lat.append(elapsed)
        return {"init": t_init, "list": t_list, "tools": len(names), "latencies": lat}

    starts, inits, lat, tools = [], [], [], 0
    with scratch() as tmp:
        env = ibgw_env(tmp / "state")
        with open(tmp / "stderr.log", "w", encoding="utf-8") as errlog:
            log(f"  {STARTS} start-ups to the tool list")
            anyio.run(session_run, env, errlog, 0)  # warm-up: pyc files, page cache
            for _ in range(STARTS):
                r = anyio.run(session_run, env, errlog, 0)
                starts.append(r["list"])
                inits.append(r["init"])
            log(f"  {CALLS} tool calls in one session")
            r = anyio.run(session_run, env, errlog, CALLS)
            lat, tools = r["latencies"], r["tools"]
    log(f"  {HTTP_CALLS} tool calls over Streamable HTTP")
    http = _http_calls(ibgw)
    log("  a ~5 MiB answer, capped and uncapped")
    big = {kind: _big_answer(kind) for kind in ("cap", "nocap")}
    log("  the tool handler in process, and the import of ibgw.mcp_server")
    handler = _handler(log)
    imports = _imports()
    return {
        "startup": summary(starts),
        "initialize": summary(inits),
        "calls": summary(lat),
        "http_calls": summary(http),
        "big": big,
        "tools": tools,
        "handler": handler,
        "imports": imports,
    }


def _http_calls(ibgw: str) -> list[float]:
    """``HTTP_CALLS`` timed ``fx_rate`` calls over Streamable HTTP, after a warm-up."""
    import re
    import secrets

    import anyio
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    token = secrets.token_urlsafe(32)
    with scratch() as tmp:
        env = dict(ibgw_env(tmp / "state"), IBGW_MCP_TOKEN=token)
        errpath = tmp / "http-stderr.log"
        with open(errpath, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(
                [ibgw, "--backend", "fake", "mcp", "--transport", "http", "--port", "0"],
                stdin=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
            try:
                deadline = time.monotonic() + 60
                while not (m := re.search(r"at (http://\S+)", errpath.read_text())):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the HTTP server did not start")
                    time.sleep(0.05)
                url = m.group(1)

                async def go():
                    lat = []
                    headers = {"Authorization": f"Bearer {token}"}
                    async with httpx2.AsyncClient(headers=headers, timeout=60) as client:
                        async with streamable_http_client(url, http_client=client) as (r, w):
                            async with ClientSession(r, w) as session:
                                await session.initialize()
                                for i in range(HTTP_CALLS + WARMUP):
                                    t = time.perf_counter()
                                    result = await session.call_tool(TOOL, dict(ARGS))
                                    elapsed = time.perf_counter() - t
                                    if result.is_error:
                                        raise RuntimeError(f"{TOOL} failed over HTTP")
                                    if i >= WARMUP:
                                        lat.append(elapsed)
                    return lat

                return anyio.run(go)
            finally:
                proc.terminate()
                proc.wait(timeout=20)


def _big_answer(kind: str) -> dict:
    import json

    with scratch() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", BIG_CHILD, kind, str(BIG_RECORDS)],
            env=ibgw_env(tmp / "state"),
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _handler(log) -> dict | None:
    """``IbgwMcp._call_sync`` (what the server runs per tool call, minus the SDK and
    stdio) timed and profiled in this process, on the fake backend."""
    import cProfile
    import pstats

    from ibgw.app import App
    from ibgw.mcp_server import build
    from ibgw.plugins import get_plugin_manager

    with scratch() as tmp:
        app = App(get_plugin_manager(), {"backend": "fake"}, environ=ibgw_env(tmp / "state"))
        server = build(app)
        sync = getattr(server, "_call_sync", None)
        table = getattr(server, "table", None)
        if sync is None or not hasattr(table, "check_arguments"):
            log("  IbgwMcp._call_sync not found: no handler breakdown")
            return None

        def call(name, arguments):  # what IbgwMcp.call_tool does, minus the awaits
            return sync(name, table.check_arguments(name, arguments))

        for _ in range(WARMUP):
            call(TOOL, dict(ARGS))
        times = []
        for _ in range(HANDLER_CALLS):
            t = time.perf_counter()
            result = call(TOOL, dict(ARGS))
            times.append(time.perf_counter() - t)
            if result.is_error:
                raise RuntimeError(f"{TOOL} failed in process: {result.content}")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(100):
            call(TOOL, dict(ARGS))
        prof.disable()
        app.close()
    stats = pstats.Stats(prof).stats
    return {
        "time": summary(times),
        "parts": profile_parts(stats, HANDLER_PARTS, 100),
        "top": profile_top(stats, 18, 100),
    }


def _imports() -> dict:
    """Import time of ``ibgw.mcp_server`` in fresh processes, and the largest self
    import times by top-level package (``-X importtime``)."""
    py = sys.executable
    times = []
    with scratch() as tmp:
        env = ibgw_env(tmp / "state")
        for _ in range(IMPORT_RUNS):
            out = subprocess.run(
                [py, "-c", IMPORT_CHILD], env=env, capture_output=True, text=True, check=True
            )
            times.append(float(out.stdout.strip()))
        proc = subprocess.run(
            [py, "-X", "importtime", "-c", "import ibgw.mcp_server"],
            env=env,
            capture_output=True,
            text=True,
        )
    groups: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or "self [us]" in line:
            continue
        try:
            us = float(parts[0].split(":", 1)[1])
        except ValueError:
            continue
        top = parts[2].strip().split(".")[0]
        groups[top] = groups.get(top, 0.0) + us / 1e6
    return {
        "time": summary(times),
        "groups": sorted(groups.items(), key=lambda kv: -kv[1])[:10],
    }


def targets(r: dict) -> list[dict]:
    if "pending" in r:
        return [
            {
                "what": "MCP tool call median",
                "target": f"< {fmt_time(TARGET_CALL_S)}",
                "measured": "pending",
                "ok": None,
            }
        ]
    med = r["calls"]["median"]
    return [
        {
            "what": f"MCP tool call median (`{TOOL}`, fake backend)",
            "target": f"< {fmt_time(TARGET_CALL_S)}",
            "measured": f"{fmt_time(med)} (p95 {fmt_time(r['calls']['p95'])})",
            "ok": med < TARGET_CALL_S,
        }
    ]


def report(r: dict) -> str:
    if "pending" in r:
        return f"**Pending**: {r['pending']}. Re-run with `python benchmarks/run.py --only mcp`."
    return "\n".join(
        [
            "`ibgw --backend fake mcp` (the project's console script) spawned by the MCP SDK's `stdio_client`, "
            "with a `ClientSession`; fresh state dir; the fake backend answers in process (no pacing, no "
            "latency), so what is measured is the server's own cost plus the stdio round trip.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| process start → `initialize` answered ({STARTS} starts) | {fmt_summary(r['initialize'])} |",
            f"| process start → tool list received ({r['tools']} tools) | {fmt_summary(r['startup'])} |",
            f"| `{TOOL}` tool call, round trip ({CALLS} calls after {WARMUP} warm-ups) | {fmt_summary(r['calls'])} |",
        ]
        + _http_rows(r)
        + [
            "",
            f"Tool call p95: **{fmt_time(r['calls']['p95'])}**.",
        ]
        + _report_parts(r)
    )


def _http_rows(r: dict) -> list[str]:
    rows = []
    if r.get("http_calls"):
        rows.append(
            f"| `{TOOL}` tool call over Streamable HTTP (loopback, bearer token; {HTTP_CALLS} "
            f"calls) | {fmt_summary(r['http_calls'])} |"
        )
    for kind, label in (("cap", "capped"), ("nocap", "cap lifted")):
        b = (r.get("big") or {}).get(kind)
        if b:
            rows.append(
                f"| one {b['answer_bytes'] / 1048576:.1f} MiB answer ({BIG_RECORDS:,} records), "
                f"{label}, in-process SDK client | **{fmt_time(b['seconds'])}**, "
                f"{b['returned']:,} records returned, peak RSS {b['maxrss_mib']:.0f} MiB |"
            )
    return rows


def _report_parts(r: dict) -> list[str]:
    out = []
    imp = r.get("imports")
    if imp:
        out += [
            "",
            "Where the start-up goes: importing `ibgw.mcp_server` alone (the MCP SDK and its "
            f"pydantic models) takes {fmt_summary(imp['time'])} in a fresh process "
            f"({IMPORT_RUNS} runs). Self import time by top-level package (`-X importtime`):",
            "",
            "| package | self import time |",
            "|---|---|",
        ]
        out += [f"| `{name}` | {fmt_time(secs)} |" for name, secs in imp["groups"]]
    h = r.get("handler")
    if h:
        out += [
            "",
            "Where a tool call goes: ibgw's handler (the argument check and `IbgwMcp._call_sync`, "
            "what `IbgwMcp.call_tool` runs for one call, without the SDK, JSON-RPC and stdio) called in "
            f"process on the fake backend: {fmt_summary(h['time'])} ({HANDLER_CALLS} calls); "
            f"the rest of the {fmt_time(r['calls']['median'])} round trip "
            f"(≈ {fmt_time(r['calls']['median'] - h['time']['median'])}) is the SDK on both "
            "sides (pydantic models, JSON-RPC dispatch, the client's check of the result against "
            "the tool's output schema), the worker-thread hop and the pipes. cProfile of 100 "
            "handler calls, per call:",
            "",
            "| part | per call |",
            "|---|---|",
        ]
        out += [f"| {label} | {fmt_time(secs)} |" for label, secs in h["parts"]]
        out += profile_block(
            h["top"], "cProfile of the handler, top functions by own time (per call)"
        )
        out += ["", _limits(r)]
    return out


def _limits(r: dict) -> str:
    h = r["handler"]
    parts = {label.replace("&nbsp;", "").strip(): secs for label, secs in h["parts"]}
    handler_total = next(v for k, v in parts.items() if k.startswith("ibgw"))
    rt, hm = r["calls"]["median"], h["time"]["median"]
    head = "**What limits it.**" if rt >= TARGET_CALL_S else "**Where the time goes.**"
    return (
        f"{head} Of the {fmt_time(rt)} round trip, ibgw's own handler is "
        f"{fmt_time(hm)} ({hm / rt:.0%}); in its profile the audit records take "
        f"{fmt_time(parts['audit intent + outcome records'])} of {fmt_time(handler_total)} "
        f"(fsync/fdatasync {fmt_time(parts['of which os.fsync / fdatasync'])}) and building the "
        f"result {fmt_time(parts['result building (success_result)'])}. The larger part, about "
        f"{fmt_time(rt - hm)}, is outside ibgw's code: the MCP SDK's JSON-RPC handling and pydantic "
        "models on both sides, the client SDK validating each result against the tool's output "
        "schema (jsonschema), the hop to a worker thread and back, and two pipe transfers, all on a "
        "2-core machine where the client, the server and their threads compete. Start-up is set by "
        f"importing the SDK: {fmt_time(r['imports']['time']['median'])} of the "
        f"{fmt_time(r['startup']['median'])} to the tool list."
    )
