"""``ibgw mcp --transport http`` end to end: a real server subprocess on the fake backend
(loopback, a free port, a temporary state dir), driven by the MCP SDK's own Streamable
HTTP client (``mcp.client.streamable_http``) with and without the bearer token.

One server serves the whole module (fixture); the bind refusals start their own short
processes, which exit before binding.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
import httpx2  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from ibgw.app import App  # noqa: E402
from ibgw.plugins import get_plugin_manager  # noqa: E402

pytestmark = pytest.mark.timeout(120)

CANARY = "CNRY" + secrets.token_hex(6)
NOT_SERVED = ("not-served", "not-entitled")
READS = list(App(get_plugin_manager()).reads)
PROBED = [r for r in READS if r.probe is not None]
ALLOWED = "http://localhost:3000"
SERVING = re.compile(r"serving MCP \(Streamable HTTP\) at (http://\S+)")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    env.update(
        IBGW_STATE_DIR=str(tmp / "state"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        IBGW_FAKE_CANARY=CANARY,
        PYTHONDONTWRITEBYTECODE="1",
    )
    if "IBGW_LOAD_PLUGINS" in os.environ:
        env["IBGW_LOAD_PLUGINS"] = os.environ["IBGW_LOAD_PLUGINS"]
    env.update(extra)
    return env


def _ibgw(*args: str) -> list[str]:
    return [sys.executable, "-m", "ibgw", "--backend", "fake", *args]


class HttpServer:
    def __init__(self, tmp: Path, *args: str, env: dict | None = None, host: str = "127.0.0.1"):
        self.tmp = tmp
        (tmp / "state").mkdir(parents=True, exist_ok=True)
        self.stderr_path = tmp / "server-stderr.log"
        self._stderr = open(self.stderr_path, "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            _ibgw("mcp", "--transport", "http", "--host", host, "--port", "0", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env or _env(tmp),
        )
        deadline = time.monotonic() + 60
        while True:
            text = self.stderr()
            found = SERVING.search(text)
            if found:
                self.url = found.group(1)
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {text}")
            time.sleep(0.05)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self._stderr.close()


def token_file(tmp: Path) -> Path:
    return tmp / "state" / "mcp.token"


def audit_records(tmp: Path) -> list[dict]:
    path = tmp / "state" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


@asynccontextmanager
async def http_session(url: str, headers: dict[str, str]):
    timeout = httpx2.Timeout(30, read=120)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp-http")
    srv = HttpServer(tmp, "--allow-origin", ALLOWED)
    srv.token = token_file(tmp).read_text(encoding="ascii").strip()
    yield srv
    assert srv.stop() == 0  # SIGTERM: a graceful stop, exit 0
    for where, text in {"stderr": srv.stderr(), "audit": _audit_text(tmp)}.items():
        assert CANARY not in text, f"the canary leaked into {where}"
        assert "Traceback (most recent call last)" not in text, where


def _audit_text(tmp: Path) -> str:
    path = tmp / "state" / "audit.jsonl"
    return path.read_text(encoding="utf-8") if path.exists() else ""


# -- start-up ------------------------------------------------------------------------------
def test_first_start_generates_a_private_token_and_prints_it_once(server, tmp_path):
    path = token_file(server.tmp)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(server.token) >= 32
    assert server.stderr().count(server.token) == 1  # printed once, on generation
    assert f"http://127.0.0.1:{server.port}/mcp" == server.url

    # a second server on the same state dir reuses the token and does not print it
    again = HttpServer(tmp_path, env=_env(tmp_path, IBGW_STATE_DIR=str(server.tmp / "state")))
    try:
        assert server.token not in again.stderr()
        assert "generated" not in again.stderr()

        async def listed():
            async with http_session(again.url, bearer(server.token)) as session:
                return await session.list_tools()

        assert anyio.run(listed).tools
    finally:
        again.stop()


def test_a_token_from_the_environment_is_used_and_never_printed(tmp_path):
    token = "env-" + secrets.token_urlsafe(24)
    srv = HttpServer(tmp_path, env=_env(tmp_path, IBGW_MCP_TOKEN=token))
    try:

        async def go():
            async with http_session(srv.url, bearer(token)) as session:
                return await session.call_tool("session_status", {})

        assert not anyio.run(go).is_error
        assert not token_file(tmp_path).exists()
        assert token not in srv.stderr()
    finally:
        srv.stop()


def test_a_weak_environment_token_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        _ibgw("mcp", "--transport", "http", "--port", "0"),
        env=_env(tmp_path, IBGW_MCP_TOKEN="short"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "IBGW_MCP_TOKEN" in proc.stderr and "short" not in proc.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "127.0.0.2", "example.com", "::"])
def test_binding_to_a_non_loopback_address_is_refused_with_exit_2(tmp_path, host):
    proc = subprocess.run(
        _ibgw("mcp", "--transport", "http", "--host", host, "--port", "0"),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "loopback" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not token_file(tmp_path).exists()  # refused before anything was set up


@pytest.mark.parametrize(
    "args",
    [["--port", "70000"], ["--port", "-1"], ["--allow-origin", "http://evil.example/path"]],
)
def test_bad_port_or_origin_is_a_usage_error(tmp_path, args):
    proc = subprocess.run(
        _ibgw("mcp", "--transport", "http", *args),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_port_in_use_is_a_usage_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            _ibgw("mcp", "--transport", "http", "--port", str(port)),
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    assert "cannot listen" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_symlinked_token_file_is_refused(tmp_path):
    (tmp_path / "state").mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("x" * 40 + "\n")
    token_file(tmp_path).symlink_to(elsewhere)
    proc = subprocess.run(
        _ibgw("mcp", "--transport", "http", "--port", "0"),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "symlink" in proc.stderr and str(tmp_path) not in proc.stderr
    assert "x" * 40 not in proc.stderr


def test_localhost_serves_on_the_loopback_address(tmp_path):
    srv = HttpServer(tmp_path, env=_env(tmp_path, IBGW_MCP_TOKEN="t" * 32), host="localhost")
    try:
        assert srv.url.startswith("http://localhost:")

        async def go():
            async with http_session(srv.url, bearer("t" * 32)) as session:
                return await session.call_tool("session_status", {})

        assert not anyio.run(go).is_error
    finally:
        assert srv.stop() == 0


def test_http_options_without_the_http_transport_are_a_usage_error(tmp_path):
    proc = subprocess.run(
        _ibgw("mcp", "--port", "9000"), env=_env(tmp_path), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--transport http" in proc.stderr


# -- the tools -----------------------------------------------------------------------------
async def _stdio_tools(tmp: Path):
    params = StdioServerParameters(command=sys.executable, args=_ibgw("mcp")[1:], env=_env(tmp))
    with open(tmp / "stdio-stderr.log", "w", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return (await session.list_tools()).tools


def _dump(tools) -> dict:
    return {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in tools}


def test_the_tools_and_annotations_are_the_same_as_over_stdio(server, tmp_path):
    async def over_http():
        async with http_session(server.url, bearer(server.token)) as session:
            return (await session.list_tools()).tools

    http_tools = anyio.run(over_http)
    (tmp_path / "state").mkdir()
    stdio_tools = anyio.run(_stdio_tools, tmp_path)
    assert _dump(http_tools) == _dump(stdio_tools)
    assert {t.name for t in http_tools} == {r.tool_name for r in READS} | {"session_status"}
    for tool in http_tools:
        assert tool.annotations.read_only_hint is True, tool.name
        assert tool.annotations.destructive_hint is False, tool.name


def test_every_tool_answers_over_http(server):
    mark = len(audit_records(server.tmp))

    async def go():
        out = {}
        async with http_session(server.url, bearer(server.token)) as session:
            out["session_status"] = await session.call_tool("session_status", {})
            for read in PROBED:
                out[read.tool_name] = await session.call_tool(read.tool_name, dict(read.probe))
        return out

    results = anyio.run(go)
    status = results.pop("session_status")
    assert not status.is_error and status.structured_content["state"] == "usable"
    not_served = []
    for name, result in results.items():
        sc = result.structured_content
        assert result.content and result.content[0].text, name
        if result.is_error:
            assert sc["state"] == "usable" and sc["reason"] in NOT_SERVED, (name, sc)
            not_served.append(name)
            continue
        assert sc["session_state"] == "usable", name
    assert not [n for n in not_served if n.startswith("accounts_")]
    records = audit_records(server.tmp)[mark:]
    intents = [r for r in records if r["kind"] == "intent"]
    assert len(intents) == 1 + len(PROBED) and all(r["actor"] == "mcp" for r in intents)
    assert server.token not in _audit_text(server.tmp)


# -- refusals ------------------------------------------------------------------------------
async def _refused(url: str, headers: dict[str, str]) -> MCPError:
    try:
        async with http_session(url, headers) as session:
            await session.list_tools()
    except MCPError as exc:
        return exc
    except BaseException as exc:  # the SDK may wrap the error in an exception group
        found = _find(exc, MCPError)
        if found is not None:
            return found
        raise
    raise AssertionError("the request was served")


def _find(exc: BaseException, kind):
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find(inner, kind)
        if found is not None:
            return found
    return None


def _raw_post(url: str, headers: dict[str, str]) -> httpx2.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    return httpx2.post(
        url,
        json=body,
        headers={"Accept": "application/json, text/event-stream", **headers},
        timeout=30,
    )


@pytest.mark.parametrize(
    "case, status, reason",
    [
        ("no token", 401, "missing-token"),
        ("wrong token", 401, "invalid-token"),
        ("token in another scheme", 401, "invalid-token"),
        ("foreign origin", 403, "foreign-origin"),
        ("foreign host", 421, "foreign-host"),
    ],
)
def test_requests_without_the_token_or_from_elsewhere_are_refused_and_audited(
    server, case, status, reason
):
    wrong = secrets.token_urlsafe(32)
    headers = {
        "no token": {},
        "wrong token": bearer(wrong),
        "token in another scheme": {"Authorization": f"Basic {server.token}"},
        "foreign origin": {**bearer(server.token), "Origin": "http://evil.example"},
        "foreign host": {**bearer(server.token), "Host": "evil.example"},
    }[case]
    mark = len(audit_records(server.tmp))

    raw = _raw_post(server.url, headers)
    assert raw.status_code == status, (case, raw.status_code, raw.text)
    if status == 401:
        assert raw.headers["www-authenticate"].startswith("Bearer")
    assert "mcp-session-id" not in raw.headers

    if case != "foreign host":  # the SDK client sets Host itself
        exc = anyio.run(_refused, server.url, headers)
        assert exc.message and server.token not in exc.message

    refusals = [r for r in audit_records(server.tmp)[mark:] if r["kind"] == "denied"]
    assert refusals and all(r["reason"] == reason for r in refusals), refusals
    assert all(r["actor"] == "mcp" and r["command"] == "mcp-http" for r in refusals)
    assert all(r["path_template"] == "/mcp" for r in refusals)
    text = _audit_text(server.tmp)
    assert server.token not in text and wrong not in text and "evil.example" not in text
    assert "Authorization" not in text and "Bearer" not in text
    assert server.token not in server.stderr().split("serving MCP", 1)[1]


@pytest.mark.parametrize("origin", ["own", ALLOWED])
def test_the_servers_own_origin_and_an_allowed_one_are_accepted(server, origin):
    origin = f"http://localhost:{server.port}" if origin == "own" else origin

    async def go():
        headers = {**bearer(server.token), "Origin": origin}
        async with http_session(server.url, headers) as session:
            return await session.call_tool("session_status", {})

    assert not anyio.run(go).is_error
    # one port more is another origin
    other = _raw_post(server.url, {**bearer(server.token), "Origin": origin + "1"})
    assert other.status_code == 403
