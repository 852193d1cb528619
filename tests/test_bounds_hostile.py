"""Issue 18 (findings 3, 4, 5, 7 and the "also seen" items), tried as an attacker would:
a hostile loopback gateway (a small ``http.server`` on 127.0.0.1) driven through the
live backend by the real ``ibgw`` console script, and a hostile plugin whose load error
carries a home path, a cookie and an access_token value.

Each test runs the console script in a fresh process, so nothing a previous test taught
the redactor can hide a leak.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from ibgw import redact
from ibgw.cli import create_cli
from ibgw.hookspecs import hookimpl
from ibgw.plugins import get_plugin_manager

EXE = str(Path(sys.executable).with_name("ibgw"))

COOKIE_VALUE = "CkV4lue9Q2ZrXyt7"
JSESSION = "JsEsS1onV4lue88"
MAC = "A4:5E:60:C2:19:7B"
FOLDED_SECRET = "F0ldedSecretV4lue"
HEALTHY = {
    "authenticated": True,
    "established": True,
    "competing": False,
    "connected": True,
    "message": "",
    "MAC": MAC,
}


class HostileGateway:
    """Answers ``routes[path] = (status, headers, body)`` under ``/v1/api``."""

    def __init__(self, routes: dict):
        self.routes = routes
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0].removeprefix("/v1/api")
                status, headers, body = gateway.routes.get(path, (404, [], b'{"error":"x"}'))
                if callable(body):
                    body = body()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            do_GET = do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/api"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    servers = []

    def make(routes):
        server = HostileGateway(routes)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def run_ibgw(tmp_path, gateway, *args, timeout=60, env=None):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full_env = dict(
        os.environ,
        HOME=str(home),
        IBGW_STATE_DIR=str(tmp_path / "state"),
        IBGW_LOAD_PLUGINS="",
        COLUMNS="200",
    )
    full_env.pop("IBGW_CONFIG", None)
    full_env.update(env or {})
    argv = [EXE, "--backend", "live"]
    if gateway is not None:
        argv += ["--gateway-url", gateway.url]
    return subprocess.run(
        argv + list(args), env=full_env, capture_output=True, timeout=timeout, text=True
    )


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


# -- finding 3: the build string of ibgw probe -----------------------------------------


def test_probe_shows_the_gateway_build_string_redacted(hostile, tmp_path):
    build = f"Build 10.44 cookie={COOKIE_VALUE} mac {MAC.replace(':', '')} JSESSIONID={JSESSION}"
    status = dict(HEALTHY, serverInfo={"serverName": "GW", "serverVersion": build})
    headers = [("Set-Cookie", f"x-sess-uuid={COOKIE_VALUE}; Path=/; HttpOnly")]
    gw = hostile(
        {
            "/iserver/auth/status": (200, headers, _json(status)),
            "/tickle": (200, headers, _json({"session": "s" * 16, "iserver": {}})),
            "/portfolio/accounts": (200, [], _json([{"id": "U1234567"}])),
        }
    )
    result = run_ibgw(tmp_path, gw, "probe", "accounts")
    everything = result.stdout + result.stderr
    assert "session: usable" in result.stderr, everything
    assert "Build 10.44" in result.stderr
    for secret in (COOKIE_VALUE, JSESSION, MAC, MAC.replace(":", ""), MAC.replace(":", "").lower()):
        assert secret not in everything, secret
    assert "[redacted]" in result.stderr
    stored = "".join(p.read_text() for p in (tmp_path / "state").rglob("*") if p.is_file())
    for secret in (COOKIE_VALUE, JSESSION, MAC.replace(":", "")):
        assert secret not in stored, secret
    status = run_ibgw(tmp_path, gw, "-o", "json", "status")
    assert json.loads(status.stdout)["build"].startswith("Build 10.44")  # still valid JSON
    assert COOKIE_VALUE not in status.stdout


# -- finding 4: plugin load warnings ---------------------------------------------------


def _hostile_error(home: str) -> str:
    return (
        f"cannot read {home}/.ibgw/session.json: Cookie: x-sess-uuid={COOKIE_VALUE}; "
        f"access_token=T0kenV4lueSecret99"
    )


def _hostile_plugin(home: str):
    class Hostile:
        @hookimpl
        def ibgw_register_reads(self, register):
            raise RuntimeError(_hostile_error(home))

    return Hostile()


def _leaks(text: str, home: str) -> list[str]:
    return [s for s in (home, COOKIE_VALUE, "T0kenV4lueSecret99") if s in text]


def test_in_process_plugin_load_warning_is_redacted(tmp_path, monkeypatch):
    home = str(tmp_path / "home-of-alice")
    monkeypatch.setenv("HOME", home)
    monkeypatch.setenv("IBGW_STATE_DIR", str(tmp_path / "state"))
    pm = get_plugin_manager(load_entrypoints=False, extra=[_hostile_plugin(home)])
    result = CliRunner().invoke(create_cli(pm), ["config", "path"])
    assert result.exit_code == 0, result.output
    assert "ibgw: warning:" in result.stderr
    assert _leaks(result.stderr + result.output, home) == []
    assert "~/.ibgw/session.json" in result.stderr


def test_in_process_json_error_stays_one_object_with_the_warnings(tmp_path, monkeypatch):
    home = str(tmp_path / "home-of-alice")
    monkeypatch.setenv("HOME", home)
    monkeypatch.setenv("IBGW_STATE_DIR", str(tmp_path / "state"))
    pm = get_plugin_manager(load_entrypoints=False, extra=[_hostile_plugin(home)])
    cli = create_cli(pm)
    result = CliRunner().invoke(cli, ["-o", "json", "config", "check", "--gateway-url", "ftp://x"])
    assert result.exit_code == 2
    error = json.loads(result.stderr)["error"]  # the whole of stderr is one JSON object
    assert error["reason"]
    assert len(error["warnings"]) == 1 and "RuntimeError" in error["warnings"][0]
    assert _leaks(result.stderr, home) == []
    # on success with -o json, stderr stays empty and stdout parses
    ok = CliRunner().invoke(cli, ["-o", "json", "config", "show"])
    assert ok.exit_code == 0
    assert ok.stderr == ""
    json.loads(ok.stdout)


def _install_hostile_entry_point(site: Path, home: str) -> None:
    (site / "hostile_ibgw_plugin.py").write_text(
        "from ibgw.hookspecs import hookimpl\n\n"
        "@hookimpl\n"
        "def ibgw_register_reads(register):\n"
        f"    raise RuntimeError({_hostile_error(home)!r})\n"
    )
    info = site / "hostile_ibgw_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hostile-ibgw-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[ibgw]\nhostile = hostile_ibgw_plugin\n")


def test_console_script_with_a_hostile_entry_point_plugin(tmp_path):
    home = str(tmp_path / "home")
    site = tmp_path / "site"
    site.mkdir()
    _install_hostile_entry_point(site, home)
    env = {"PYTHONPATH": str(site), "IBGW_LOAD_PLUGINS": "hostile-ibgw-plugin"}
    table = run_ibgw(tmp_path, None, "config", "path", env=env)
    assert table.returncode == 0, table.stderr
    assert "ibgw: warning: hostile:" in table.stderr
    assert _leaks(table.stdout + table.stderr, home) == []
    failed = run_ibgw(
        tmp_path, None, "-o", "json", "config", "check", "--gateway-url", "ftp://x", env=env
    )
    assert failed.returncode == 2
    error = json.loads(failed.stderr)["error"]
    assert error["warnings"] and _leaks(failed.stderr, home) == []
    listed = run_ibgw(tmp_path, None, "-o", "json", "plugins", env=env)
    row = [p for p in json.loads(listed.stdout) if p["name"] == "hostile"][0]
    assert "registering reads failed" in row["error"] and _leaks(listed.stdout, home) == []


# -- finding 5: bounded answers ---------------------------------------------------------


def test_a_huge_answer_of_empty_objects_is_refused_quickly(hostile, tmp_path):
    count = int(15.9 * 1024 * 1024) // 3
    body = b"[" + b"{}," * (count - 1) + b"{}]"
    gw = hostile({"/portfolio/accounts": (200, [], body)})
    # timeout=60: today's main needs minutes and gigabytes for this answer
    result = run_ibgw(tmp_path, gw, "--timeout", "3", "-o", "json", "accounts", "list")
    assert result.returncode == 4, result.stderr[-500:]
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert (error["state"], error["reason"]) == ("unavailable", "answer-too-large")
    assert "docs/security.md" in error["hint"]


def test_deep_nesting_is_refused(hostile, tmp_path):
    body = b"[" * 40 + b"]" * 40
    gw = hostile({"/portfolio/accounts": (200, [], body)})
    result = run_ibgw(tmp_path, gw, "-o", "json", "accounts", "list")
    assert result.returncode == 4
    assert json.loads(result.stderr)["error"]["reason"] == "malformed-response"


def test_many_values_inside_few_records_are_refused(hostile, tmp_path):
    body = _json([{"id": "U1", "extra": list(range(600_000))}])
    gw = hostile({"/portfolio/accounts": (200, [], body)})
    result = run_ibgw(tmp_path, gw, "-o", "json", "accounts", "list")
    assert result.returncode == 4
    assert json.loads(result.stderr)["error"]["reason"] == "answer-too-large"


def test_a_legitimately_large_page_still_works(hostile, tmp_path):
    accounts = [{"id": f"U{1000000 + i}", "accountAlias": f"Account {i}"} for i in range(2000)]
    gw = hostile({"/portfolio/accounts": (200, [], _json(accounts))})
    result = run_ibgw(tmp_path, gw, "-o", "json", "accounts", "list")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2000


# -- finding 7: folded Set-Cookie --------------------------------------------------------


def test_folded_set_cookie_values_are_learned_one_by_one(hostile, tmp_path):
    folded = f"a=b, XSESS={FOLDED_SECRET}; Path=/"
    # the secret comes back alone in the same answer and in a later one
    body = _json([{"id": "U1234567", "accountAlias": f"echo {FOLDED_SECRET} here"}])
    gw = hostile({"/portfolio/accounts": (200, [("Set-Cookie", folded)], body)})
    for fmt in ("table", "json", "csv"):
        result = run_ibgw(tmp_path, gw, "-o", fmt, "accounts", "list")
        assert result.returncode == 0, result.stderr
        assert FOLDED_SECRET not in result.stdout + result.stderr, fmt
        assert "[redacted]" in result.stdout


def test_folded_set_cookie_unit():
    pairs = redact.set_cookie_pairs(
        "a=b, XSESS=v4lue1; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT, y=v4lue2; HttpOnly"
    )
    assert pairs == [("a", "b"), ("XSESS", "v4lue1"), ("y", "v4lue2")]


# -- also seen: escapes, formulas, MAC spellings, the audit sink --------------------------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mRED\x1b[0m\x9b1A\rforged line"


def test_terminal_escapes_from_the_gateway_do_not_reach_the_table(hostile, tmp_path):
    body = _json([{"id": "U1234567", "accountAlias": ESCAPES, "type": "=cmd|' /C calc'!A0"}])
    gw = hostile({"/portfolio/accounts": (200, [], body)})
    result = run_ibgw(tmp_path, gw, "accounts", "list")
    assert result.returncode == 0, result.stderr
    assert "RED" in result.stdout and "forged line" in result.stdout
    assert not any(ch in result.stdout for ch in "\x1b\x07\x9b\r")


def test_formula_cells_from_the_gateway_are_text_in_csv(hostile, tmp_path):
    rows = [
        {"id": "U1", "accountAlias": "=cmd|' /C calc'!A0"},
        {"id": "U2", "accountAlias": "@SUM(A1)"},
        {"id": "U3", "accountAlias": "+1+1"},
        {"id": "U4", "accountAlias": "-3.5"},
    ]
    gw = hostile({"/portfolio/accounts": (200, [], _json(rows))})
    result = run_ibgw(tmp_path, gw, "-o", "csv", "accounts", "list")
    assert result.returncode == 0, result.stderr
    import csv
    import io

    cells = [c for row in csv.reader(io.StringIO(result.stdout)) for c in row]
    assert "'=cmd|' /C calc'!A0" in cells
    assert "'@SUM(A1)" in cells and "'+1+1" in cells
    assert "-3.5" in cells  # a number stays a number
    assert not any(c.startswith(("=", "@", "+")) for c in cells)


@pytest.mark.parametrize(
    "spelling",
    ["a45e60c2197b", "A45E60C2197B", "a4-5e-60-c2-19-7b", "a45e.60c2.197b", "A4:5E:60:C2:19:7B"],
)
def test_a_learned_mac_is_redacted_in_every_spelling(hostile, tmp_path, spelling):
    # auth/status teaches the MAC (colon form); its build string echoes another spelling
    status = dict(HEALTHY, serverInfo={"serverName": "GW", "serverVersion": f"hw {spelling} end"})
    gw = hostile(
        {
            "/iserver/auth/status": (200, [], _json(status)),
            "/portfolio/accounts": (200, [], _json([{"id": "U1234567"}])),
        }
    )
    result = run_ibgw(tmp_path, gw, "probe", "accounts")
    assert "session: usable" in result.stderr, result.stderr
    assert "hw [redacted] end" in result.stderr
    assert spelling not in result.stdout + result.stderr


def test_mac_spellings_unit():
    redact.add_secret("0A:1B:2C:3D:4E:5F")
    for spelling in ("0a1b2c3d4e5f", "0A1B.2C3D.4E5F", "0a-1b-2c-3d-4e-5f", "0A:1B:2C:3D:4E:5F"):
        assert "[redacted]" in redact.text(f"x {spelling} y"), spelling
    for text in ("mac=a1b2c3d4e5f6", 'MAC: "a1b2.c3d4.e5f6"', "mac_address=A1-B2-C3-D4-E5-F6"):
        assert "[redacted]" in redact.text(text), text
    assert redact.text("conid 265598 and 123456789012") == "conid 265598 and 123456789012"


class _NothingSink:
    name = "nothing"

    def write(self, record):
        pass  # claims success, stores nothing


def test_a_sink_that_stores_nothing_does_not_replace_the_builtin_one(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (tmp_path / "elsewhere.jsonl").write_text("")
    (state / "audit.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")  # the built-in refuses
    monkeypatch.setenv("IBGW_STATE_DIR", str(state))

    class Plugin:
        @hookimpl
        def ibgw_audit_sinks(self, config, register):
            register(_NothingSink())

    pm = get_plugin_manager(load_entrypoints=False, extra=[Plugin()])
    result = CliRunner().invoke(
        create_cli(pm), ["--gateway-url", "http://127.0.0.1:9/v1/api", "-o", "json", "status"]
    )
    assert result.exit_code == 7, result.output + result.stderr
    assert json.loads(result.stderr)["error"]["reason"]


def test_an_additional_sink_gets_every_record_when_the_builtin_one_works(tmp_path, monkeypatch):
    monkeypatch.setenv("IBGW_STATE_DIR", str(tmp_path / "state"))
    seen = []

    class Sink:
        name = "mine"

        def write(self, record):
            seen.append(record["kind"])

    class Plugin:
        @hookimpl
        def ibgw_audit_sinks(self, config, register):
            register(Sink())

    pm = get_plugin_manager(load_entrypoints=False, extra=[Plugin()])
    result = CliRunner().invoke(
        create_cli(pm), ["--gateway-url", "http://127.0.0.1:9/v1/api", "status"]
    )
    assert result.exit_code == 4, result.output + result.stderr  # nothing listens on port 9
    assert seen[:1] == ["intent"] and "outcome" in seen
    assert (tmp_path / "state" / "audit.jsonl").read_text().count('"intent"') == 1
