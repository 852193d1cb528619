"""``ibgw fake-gateway serve`` and ``ibgw fake-gateway scenarios``."""

import hashlib
import os
import signal
import ssl
import subprocess
import sys
import threading

import pytest
import requests
from click.testing import CliRunner
from ibgw_fake.scenarios import SCENARIOS
from ibgw_fake.server import FakeGatewayServer
from ibgw_fake_testutil import FixturePlugin, make_pm

from ibgw.cli import create_cli

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = f"""
import sys
sys.path.insert(0, {HERE!r})
from ibgw_fake_testutil import make_pm
from ibgw.cli import create_cli
create_cli(make_pm()).main(args=sys.argv[1:], prog_name="ibgw")
"""


def run(*args, pm=None):
    return CliRunner().invoke(create_cli(pm or make_pm()), list(args))


def test_scenarios_lists_builtins_and_declared_ones():
    plugin = FixturePlugin(
        {"scenarios": {"no-news": {"description": "news missing", "hide": ["GET /iserver/news"]}}}
    )
    result = run("fake-gateway", "scenarios", pm=make_pm(plugin))
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == [*SCENARIOS, "no-news"]
    assert "news missing (based on connected)" in result.output


def test_serve_help():
    result = run("fake-gateway", "serve", "--help")
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--scenario",
        "--latency-ms",
        "--tls / --no-tls",
        "--cert",
        "--key",
    ):
        assert option in result.output


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.2", "10.0.0.1", "LOCALHOST."])
def test_serve_refuses_non_loopback_hosts(host):
    result = run("fake-gateway", "serve", "--host", host, "--port", "0")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_serve_unknown_scenario_is_one_line_usage_error():
    result = run("fake-gateway", "serve", "--port", "0", "--scenario", "bogus", "--no-tls")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown scenario bogus" in lines[0]


def test_serve_port_in_use_is_one_line_usage_error():
    with FakeGatewayServer(None) as busy:
        result = run("fake-gateway", "serve", "--port", str(busy.port), "--no-tls")
    assert result.exit_code == 2
    assert "address in use" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def start_serve(*args):
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "fake-gateway", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    want = 2 if "--tls" in args or "--no-tls" not in args else 1
    watchdog = threading.Timer(60, proc.kill)  # a server that never prints must not hang the test
    watchdog.start()
    try:
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(want)]
    finally:
        watchdog.cancel()
    return proc, lines


def stop_serve(proc, sig):
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_plain_http_until_signal(sig):
    proc, lines = start_serve("--no-tls", "--scenario", "no-bridge")
    try:
        assert len(lines) == 1, lines
        prefix = "ibgw fake gateway listening on "
        assert lines[0].startswith(prefix + "http://127.0.0.1:")
        url = lines[0][len(prefix) :]
        assert url.endswith("/v1/api")
        r = requests.get(url + "/iserver/accounts", timeout=5)
        assert r.status_code == 400 and r.json()["error"] == "Bad Request: no bridge"
    finally:
        code, out, err = stop_serve(proc, sig)
    assert code == 0, err
    assert out == "" and "Traceback" not in err


def test_serve_tls_prints_fingerprint_of_the_served_certificate():
    proc, lines = start_serve("--tls")
    try:
        assert len(lines) == 2, lines
        url = lines[0].split(" on ", 1)[1]
        assert url.startswith("https://localhost:")
        assert lines[1].startswith("tls fingerprint sha256 ")
        fingerprint = lines[1].split()[-1]
        port = int(url.split(":")[2].split("/")[0])
        served = ssl.get_server_certificate(("127.0.0.1", port))
        assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest() == fingerprint
    finally:
        code, _, err = stop_serve(proc, signal.SIGTERM)
    assert code == 0, err
