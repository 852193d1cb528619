"""``ibgw mcp`` end to end: a real server subprocess on the fake backend, driven by the
MCP SDK's own stdio client (and, for malformed input, by raw JSON-RPC lines).

No mocks: the tool list is compared with the reads the installed plugins register,
every probe-able read is called, and the audit log the server writes is read back.
The connected-scenario tests share one server (module fixture) to keep the file fast;
the fault scenarios and the raw-stdio test start their own.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp")

import mcp_types as types  # noqa: E402
from anyio.from_thread import start_blocking_portal  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from ibgw.app import App  # noqa: E402
from ibgw.plugins import get_plugin_manager  # noqa: E402

pytestmark = pytest.mark.timeout(120)

ANNOTATIONS = {
    "readOnlyHint": True,
    "destructiveHint": False,
    "idempotentHint": True,
    "openWorldHint": False,
}
TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "choice": "string",
}
CANARY = "CNRY" + secrets.token_hex(6)
# A read whose endpoint this gateway build (here: the fake) does not serve answers with a
# tool error in state "usable"; every other failure on the connected fake is a bug.
NOT_SERVED = ("not-served", "not-entitled")

READS = list(App(get_plugin_manager()).reads)
PROBED = [r for r in READS if r.probe is not None]


def _env(tmp: Path) -> dict[str, str]:
    env = {
        "IBGW_STATE_DIR": str(tmp / "state"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "IBGW_FAKE_CANARY": CANARY,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "IBGW_LOAD_PLUGINS" in os.environ:
        env["IBGW_LOAD_PLUGINS"] = os.environ["IBGW_LOAD_PLUGINS"]
    return env


class Recorder:
    """Everything the client received, for the leak scan."""

    def __init__(self):
        self.chunks: list[str] = []

    def add(self, obj) -> None:
        if isinstance(obj, MCPError):
            self.chunks.append(f"{obj.code} {obj.message} {obj.error.data}")
        elif hasattr(obj, "model_dump_json"):
            self.chunks.append(obj.model_dump_json(by_alias=True))
        else:
            self.chunks.append(str(obj))

    def text(self) -> str:
        return "\n".join(self.chunks)


@asynccontextmanager
async def mcp_session(tmp: Path, *global_args: str, recorder: Recorder):
    (tmp / "state").mkdir(exist_ok=True)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ibgw", "--backend", "fake", *global_args, "mcp"],
        env=_env(tmp),
    )
    with open(tmp / "stderr.log", "a", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                recorder.add(await session.initialize())
                yield session


async def call(session: ClientSession, recorder: Recorder, name: str, arguments: dict):
    try:
        result = await session.call_tool(name, arguments)
    except MCPError as exc:
        recorder.add(exc)
        raise
    recorder.add(result)
    return result


def audit_records(tmp: Path) -> list[dict]:
    path = tmp / "state" / "audit.jsonl"
    if not path.exists():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def assert_no_leak(tmp: Path, recorder: Recorder) -> None:
    places = {
        "mcp responses": recorder.text(),
        "stderr": (tmp / "stderr.log").read_text(encoding="utf-8", errors="replace"),
    }
    audit = tmp / "state" / "audit.jsonl"
    if audit.exists():
        places["audit"] = audit.read_text(encoding="utf-8", errors="replace")
    for where, text in places.items():
        assert CANARY not in text, f"a secret canary leaked into {where}"
        assert "Traceback (most recent call last)" not in text, f"a traceback reached {where}"


@dataclass
class Server:
    """A running ``ibgw --backend fake mcp`` with an initialized client session."""

    portal: object
    session: ClientSession
    tmp: Path
    recorder: Recorder
    startup_to_tool_list: float
    tools: list = field(default_factory=list)

    def call(self, name: str, arguments: dict | None = None):
        return self.portal.call(call, self.session, self.recorder, name, dict(arguments or {}))

    def error(self, name: str, arguments: dict | None = None) -> MCPError:
        with pytest.raises(MCPError) as info:
            self.call(name, arguments)
        return info.value

    def run(self, async_fn, *args):
        return self.portal.call(async_fn, *args)

    def audit_mark(self) -> int:
        return len(audit_records(self.tmp))

    def audit_since(self, mark: int) -> list[dict]:
        return audit_records(self.tmp)[mark:]


def start_server(tmp: Path, *global_args: str):
    """A context manager yielding a :class:`Server` (the client runs in a portal thread)."""

    class _Ctx:
        def __enter__(self):
            self._portal_cm = start_blocking_portal()
            portal = self._portal_cm.__enter__()
            recorder = Recorder()
            started = time.perf_counter()
            self._session_cm = portal.wrap_async_context_manager(
                mcp_session(tmp, *global_args, recorder=recorder)
            )
            try:
                session = self._session_cm.__enter__()
                listed = portal.call(session.list_tools)
            except BaseException:
                self._portal_cm.__exit__(*sys.exc_info())
                raise
            recorder.add(listed)
            server = Server(
                portal, session, tmp, recorder, time.perf_counter() - started, listed.tools
            )
            return server

        def __exit__(self, *exc):
            try:
                self._session_cm.__exit__(*exc)
            finally:
                self._portal_cm.__exit__(*exc)

    return _Ctx()


@pytest.fixture(scope="module")
def connected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp-connected")
    with start_server(tmp) as server:
        yield server
    assert_no_leak(tmp, server.recorder)


# -- tool list --------------------------------------------------------------------------
SAMPLES = (
    "",
    "a",
    "A",
    "C",
    "c",
    "p",
    "PUT",
    "call",
    "x",
    "SPY",
    "spy",
    "APR26",
    "SMART",
    "U1234567",
    "DU1234567",
    "2026-04-01",
    "EUR",
    "eur.usd",
    "a/b",
    "../x",
    "a b",
    "x" * 70,
    "1",
    "-1",
    "STK",
    "US-EQ",
    "TOP_PERC_GAIN",
    "é",
    "a\nb",
    "AAPL\r",
)


def assert_same_language(python_pattern: str, json_pattern: str, probe: dict, name: str) -> None:
    """The JSON-schema pattern (searched) accepts what the Python one (full match) accepts."""
    assert json_pattern.startswith("^") and json_pattern.endswith("$")
    values = list(SAMPLES)
    given = probe.get(name)
    values += [str(v) for v in (given if isinstance(given, list) else [given]) if v is not None]
    ecma = json_pattern[:-1] + r"\Z"  # ECMA-262 '$' is the very end, unlike Python's
    for value in values:
        assert bool(re.fullmatch(python_pattern, value)) == bool(re.search(ecma, value)), (
            python_pattern,
            json_pattern,
            value,
        )


def test_initialize_and_startup_time(connected):
    init = connected.session.initialize_result
    assert init.server_info.name == "ibgw"
    assert init.capabilities.tools is not None
    assert init.instructions and "read-only" in init.instructions.lower()
    assert connected.startup_to_tool_list < 30


def test_tool_names_are_the_installed_reads_plus_session_status(connected):
    names = [t.name for t in connected.tools]
    assert len(names) == len(set(names)), "duplicate tool names"
    assert set(names) == {r.tool_name for r in READS} | {"session_status"}
    assert {"accounts_list", "accounts_summary", "accounts_ledger", "accounts_positions"} <= set(
        names
    )


def test_every_tool_is_annotated_read_only(connected):
    for tool in connected.tools:
        ann = tool.annotations.model_dump(by_alias=True, exclude_none=True)
        assert {k: ann.get(k) for k in ANNOTATIONS} == ANNOTATIONS, tool.name
        assert tool.description and len(tool.description) > 10, tool.name
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False
        assert tool.output_schema and tool.output_schema["type"] == "object"


def test_input_schemas_follow_the_declared_params(connected):
    by_name = {t.name: t for t in connected.tools}
    for read in READS:
        tool = by_name[read.tool_name]
        schema = tool.input_schema
        assert set(schema["properties"]) == {p.name for p in read.params}, read.key
        assert set(schema.get("required", [])) == {p.name for p in read.params if p.required}
        for p in read.params:
            prop = schema["properties"][p.name]
            item = prop["items"] if p.multiple else prop
            assert prop["type"] == ("array" if p.multiple else TYPES[p.type]), (read.key, p.name)
            assert item["type"] == TYPES[p.type], (read.key, p.name)
            if p.type == "choice":
                assert item["enum"] == list(p.choices)
            if p.pattern and p.type == "str" and "pattern" in item:
                # absent only when the Python regex has no portable JSON-schema form
                assert_same_language(p.pattern, item["pattern"], read.probe or {}, p.name)
            for bound in ("minimum", "maximum"):
                if getattr(p, bound) is not None and p.type in ("int", "float"):
                    assert item[bound] == getattr(p, bound)
            assert p.help.split(".")[0] in prop["description"]
        assert (tool.description or "").startswith(read.summary.rstrip("."))
        assert f"ibgw {read.category} {read.name}" in tool.description


# -- every tool, connected --------------------------------------------------------------
def test_every_tool_answers(connected):
    mark = connected.audit_mark()
    status = connected.call("session_status")
    assert not status.is_error
    assert status.structured_content["state"] == "usable"
    assert status.structured_content["session_state"] == "usable"
    assert status.structured_content["backend"] == "fake"
    assert status.content[0].text.startswith("usable (ok)")

    not_served = []
    for read in PROBED:
        result = connected.call(read.tool_name, read.probe)
        sc = result.structured_content
        assert result.content and result.content[0].type == "text" and result.content[0].text
        if result.is_error:
            assert sc["state"] == "usable" and sc["reason"] in NOT_SERVED, (read.key, sc)
            not_served.append(read.key)
            continue
        assert sc["session_state"] == "usable"
        assert "provenance" in sc and "variant" in sc
        if read.single:
            assert sc["record"] is None or isinstance(sc["record"], dict)
        else:
            assert isinstance(sc["records"], list) and sc["count"] == len(sc["records"])
            assert all(isinstance(r, dict) for r in sc["records"])
    assert not [k for k in not_served if k.startswith("accounts ")]
    if not_served:
        print(f"not served on the fake backend: {', '.join(not_served)}")

    # Every call left an intent and an outcome record, actor mcp, paired by call id.
    records = connected.audit_since(mark)
    assert records and all(r.get("actor") == "mcp" for r in records)
    intents = {r["call_id"]: r for r in records if r["kind"] == "intent"}
    outcomes = {r["call_id"]: r for r in records if r["kind"] == "outcome"}
    assert set(intents) == set(outcomes)
    assert sorted(r["command"] for r in intents.values()) == sorted(
        ["status"] + [r.key for r in PROBED]
    )
    assert sum(o["outcome"] == "ok" for o in outcomes.values()) == 1 + len(PROBED) - len(not_served)


def test_results_carry_records_provenance_and_a_table(connected):
    listed = connected.call("accounts_list")
    sc = listed.structured_content
    assert sc["count"] >= 1
    assert sc["variant"] == "GET /portfolio/accounts" and sc["provenance"] == "documented"
    header = listed.content[0].text.splitlines()[0]
    assert "account" in header and "currency" in header
    account = sc["records"][0]["account"]
    summary = connected.call("accounts_summary", {"account": account, "all": True})
    assert {r["metric"] for r in summary.structured_content["records"]} >= {"netliquidation"}
    positions = connected.call("accounts_positions", {"account": None})  # null = not given
    rows = positions.structured_content["records"]
    if len(rows) > 40:
        assert f"40 of {len(rows)} rows shown" in positions.content[0].text


# -- protocol errors ----------------------------------------------------------------------
def test_invalid_arguments_are_protocol_errors(connected):
    mark = connected.audit_mark()
    bad_calls = [
        ("accounts_list", {"nonsense": 1}, "nonsense"),  # additionalProperties
        ("accounts_summary", {"account": 12345}, "expected string"),  # wrong type
        ("accounts_summary", {"account": "bad/../acct"}, "does not match"),
        ("accounts_summary", {"all": "yes"}, "expected boolean"),
        ("session_status", {"x": True}, "unknown argument"),
    ]
    for read in READS:  # a required parameter left out, when an installed read has one
        if any(p.required for p in read.params):
            bad_calls.append((read.tool_name, {}, "missing required argument"))
            break
    for name, arguments, expected in bad_calls:
        exc = connected.error(name, arguments)
        assert exc.code == types.INVALID_PARAMS, (name, arguments)
        assert exc.message.startswith(f"Invalid arguments for tool {name}: ")
        assert expected in exc.message, exc.message
    assert connected.audit_since(mark) == []  # rejected calls never reach the runner


def test_unknown_tools_are_protocol_errors(connected):
    exc = connected.error("orders_place", {"conid": 1})
    assert exc.code == types.INVALID_PARAMS and "orders_place" in exc.message
    exc = connected.error("x" * 5000)
    assert exc.code == types.INVALID_PARAMS and len(exc.message) < 400
    assert not connected.call("session_status").is_error  # still serving


def test_a_bad_value_the_schema_cannot_catch_is_a_tool_error(connected):
    unknown_account = connected.call("accounts_summary", {"account": "ZZ99999"})
    assert unknown_account.is_error
    sc = unknown_account.structured_content
    assert set(sc) >= {"state", "reason", "message", "hint"}
    assert sc["state"] is None and sc["reason"] == "unknown-account" and sc["hint"]
    assert unknown_account.content[0].text.startswith("error (unknown-account)")
    # Python's '$' would accept a trailing newline; the schema check is ECMA-strict.
    exc = connected.error("accounts_summary", {"account": "DU1234567\n"})
    assert exc.code == types.INVALID_PARAMS and "does not match ^(?:" in exc.message


# -- concurrency ------------------------------------------------------------------------
def test_concurrent_calls_are_all_answered(connected):
    mark = connected.audit_mark()
    names = ["accounts_list", "session_status", "accounts_ledger"] * 4

    async def burst():
        results: list = []

        async def one(name):
            results.append(await call(connected.session, connected.recorder, name, {}))

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
        return results

    results = connected.run(burst)
    assert len(results) == len(names)
    assert all(not r.is_error for r in results), [
        r.structured_content for r in results if r.is_error
    ]
    records = connected.audit_since(mark)
    assert sum(r["kind"] == "intent" for r in records) == len(names)
    assert sum(r["kind"] == "outcome" for r in records) == len(names)
    # The hash chain survived concurrent writers in the server's worker threads.
    verify = subprocess.run(
        [sys.executable, "-m", "ibgw", "audit", "verify"],
        capture_output=True,
        text=True,
        env={**os.environ, **_env(connected.tmp)},
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


# -- session states ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "scenario, state",
    [("missing-session", "manual_action_required"), ("gateway-down", "unavailable")],
)
def test_session_problems_are_tool_errors_with_a_state(tmp_path, scenario, state):
    with start_server(tmp_path, "--scenario", scenario) as server:
        status = server.call("session_status")
        reads = {r.tool_name: server.call(r.tool_name, r.probe) for r in PROBED if r.session}
    assert not status.is_error  # the status tool answers; an unusable session is its answer
    assert status.structured_content["state"] == state
    reason = status.structured_content["reason"]
    assert reason and status.structured_content["hint"]
    assert status.structured_content["session_state"] == state
    assert reads, "no session-backed read with a probe is installed"
    for name, result in reads.items():
        assert result.is_error, name
        sc = result.structured_content
        assert (sc["state"], sc["reason"]) == (state, reason), (name, sc)
        assert sc["message"] and sc["hint"]
        assert result.content[0].text.startswith(f"{state} ({reason}): ")
    outcomes = [r for r in audit_records(tmp_path) if r["kind"] == "outcome"]
    assert len(outcomes) == 1 + len(reads) and all(r["actor"] == "mcp" for r in outcomes)
    assert all(
        r["outcome"] == "error" and r["state"] == state
        for r in outcomes
        if r["command"] != "status"
    )
    assert_no_leak(tmp_path, server.recorder)


# -- raw stdio --------------------------------------------------------------------------------
class RawServer:
    def __init__(self, tmp: Path):
        (tmp / "state").mkdir(exist_ok=True)
        env = {**os.environ, **_env(tmp)}
        self.stderr = open(tmp / "stderr.log", "a", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ibgw", "--backend", "fake", "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            text=True,
            bufsize=1,
        )

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def request(self, id_, method, params=None) -> None:
        msg = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(json.dumps(msg))

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, "the server closed stdout"
        return json.loads(line)

    def close(self) -> int:
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.stderr.close()


def test_raw_stdio_malformed_input_is_answered_and_the_server_keeps_serving(tmp_path):
    server = RawServer(tmp_path)
    try:
        server.request(
            1,
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        )
        init = server.receive()
        assert init["id"] == 1 and init["result"]["serverInfo"]["name"] == "ibgw"
        server.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))

        server.send("{this is not json")
        parse_error = server.receive()
        assert parse_error["id"] is None and parse_error["error"]["code"] == -32700

        server.send(json.dumps({"hello": "world"}))
        invalid = server.receive()
        assert invalid["id"] is None and invalid["error"]["code"] == -32600

        server.request(2, "orders/place", {"conid": 1})
        unknown_method = server.receive()
        assert unknown_method["id"] == 2 and unknown_method["error"]["code"] == -32601

        server.request(3, "tools/call", {"name": "accounts_list", "arguments": "not an object"})
        bad_params = server.receive()
        assert bad_params["id"] == 3 and bad_params["error"]["code"] == -32602

        server.request(4, "tools/list")
        listed = server.receive()
        assert listed["id"] == 4
        assert "session_status" in {t["name"] for t in listed["result"]["tools"]}

        server.request(5, "tools/call", {"name": "session_status", "arguments": {}})
        status = server.receive()
        assert status["id"] == 5 and status["result"]["isError"] is False
        assert status["result"]["structuredContent"]["state"] == "usable"
        transcript = json.dumps([init, parse_error, invalid, unknown_method, bad_params, status])
    finally:
        rc = server.close()
    assert rc == 0  # stdin closed: a clean exit
    assert CANARY not in transcript
    assert "Traceback" not in (tmp_path / "stderr.log").read_text(encoding="utf-8")


# -- pattern translation (in process: a pure function) ------------------------------------
PATTERNS = sorted(
    {p.pattern for r in READS for p in r.params if p.pattern}
    | {
        r"(?i)C|P|CALL|PUT",
        r"(?i)[a-f0-9]{2,4}",
        r"(?i)ab?c*",
        r"[A-Z]{3}\.[A-Z]{3}",
        r"(?i)[_a-c]x|y",
        r"\d{4}-\d{2}-\d{2}",
    }
)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_schema_patterns_accept_exactly_what_the_runner_accepts(pattern):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ibgw.mcp_server import json_pattern

    portable = json_pattern(pattern)
    if portable is None:
        pytest.skip(f"{pattern!r} has no portable form; the runner checks it")
    alphabet = st.sampled_from("aAbBcCpPuUtTlLxXyYzZ019.-_/ \n")
    ecma = portable[:-1] + r"\Z"  # ECMA-262 '$' is the very end, unlike Python's

    @settings(max_examples=150, deadline=None)
    @given(st.text(alphabet=alphabet, max_size=8))
    def check(value):
        assert bool(re.fullmatch(pattern, value)) == bool(re.search(ecma, value))

    check()
