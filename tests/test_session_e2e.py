"""Session states end to end: the in-process fake, the live transport over a real
socket to the fake gateway server (HTTP and pinned HTTPS), and several processes
sharing the keepalive guard and the pacing."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

IBGW = str(Path(sys.executable).with_name("ibgw"))

STATUS_EXPECTED = {
    "connected": (0, "usable", "ok"),
    "keepalive-success": (0, "usable", "ok"),
    "missing-session": (3, "manual_action_required", "not-logged-in"),
    "expired-session": (3, "manual_action_required", "session-expired"),
    "competing-session": (3, "manual_action_required", "competing-session"),
    "no-bridge": (3, "manual_action_required", "no-bridge"),
    "keepalive-expired": (3, "manual_action_required", "not-authenticated"),
    "login-page": (3, "manual_action_required", "login-page"),
    "access-denied": (3, "manual_action_required", "ip-not-allowed"),
    "gateway-down": (4, "unavailable", "gateway-down"),
    "rate-limited": (4, "unavailable", "rate-limited"),
    "malformed-response": (4, "unavailable", "malformed-response"),
    "server-error": (4, "unavailable", "gateway-error"),
    "slow-gateway": (4, "unavailable", "timeout"),
}


def _status(ibgw_cli, *args):
    result = ibgw_cli(*args, "--timeout", "1.5", "-o", "json", "status")
    assert "Traceback" not in result.output + result.stderr
    data = json.loads(result.stdout)
    return result.exit_code, data["state"], data["reason"]


@pytest.mark.parametrize("scenario", sorted(STATUS_EXPECTED))
def test_fake_status_per_scenario(ibgw_cli, scenario):
    assert _status(ibgw_cli, "--scenario", scenario) == STATUS_EXPECTED[scenario]


@pytest.mark.parametrize(
    "scenario,code,outcome",
    [
        ("keepalive-success", 0, "keepalive-success"),
        ("connected", 0, "keepalive-success"),
        ("keepalive-expired", 3, "keepalive-expired"),
        ("missing-session", 3, "keepalive-expired"),
        ("gateway-down", 4, "keepalive-failed"),
    ],
)
def test_fake_keepalive(ibgw_cli, scenario, code, outcome):
    result = ibgw_cli("--scenario", scenario, "-o", "json", "keepalive")
    assert result.exit_code == code, result.output + result.stderr
    assert json.loads(result.stdout)["outcome"] == outcome


@pytest.mark.parametrize("scenario", sorted(STATUS_EXPECTED))
def test_live_over_http_matches_in_process_fake(ibgw_fake_gateway, ibgw_cli, scenario):
    ibgw_fake_gateway.scenario = scenario
    got = _status(ibgw_cli, "--backend", "live", "--gateway-url", ibgw_fake_gateway.url)
    assert got == STATUS_EXPECTED[scenario]


@pytest.mark.parametrize(
    "scenario",
    [
        "connected",
        "missing-session",
        "no-bridge",
        "malformed-response",
        "rate-limited",
        "login-page",
    ],
)
def test_live_over_https_with_pinned_fingerprint(ibgw_fake_gateway_tls, ibgw_cli, scenario):
    server = ibgw_fake_gateway_tls
    server.scenario = scenario
    got = _status(
        ibgw_cli,
        "--backend",
        "live",
        "--gateway-url",
        server.url,
        "--verify-tls",
        "--tls-fingerprint",
        server.fingerprint,
    )
    assert got == STATUS_EXPECTED[scenario]


def test_wrong_fingerprint_is_a_tls_error(ibgw_fake_gateway_tls, ibgw_cli):
    got = _status(
        ibgw_cli,
        "--backend",
        "live",
        "--gateway-url",
        ibgw_fake_gateway_tls.url,
        "--verify-tls",
        "--tls-fingerprint",
        "ab" * 32,
    )
    assert got == (4, "unavailable", "tls-error")


def _env(state_dir, url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    (state_dir / "empty.toml").write_text("")
    env.update(
        IBGW_STATE_DIR=str(state_dir),
        IBGW_CONFIG=str(state_dir / "empty.toml"),
        IBGW_BACKEND="live",
        IBGW_GATEWAY_URL=url,
    )
    return env


def test_keepalive_expired_pauses_reads_in_other_processes(ibgw_fake_gateway, tmp_path):
    server = ibgw_fake_gateway
    env = _env(tmp_path, server.url)

    server.scenario = "keepalive-expired"
    ka = subprocess.run([IBGW, "-o", "json", "keepalive"], capture_output=True, text=True, env=env)
    assert ka.returncode == 3 and json.loads(ka.stdout)["outcome"] == "keepalive-expired"

    server.scenario = "connected"  # even a healthy gateway is not asked until a status check
    before = len(server.requests)
    read = subprocess.run([IBGW, "accounts"], capture_output=True, text=True, env=env)
    assert read.returncode == 4, read.stdout + read.stderr
    assert "keepalive found the session expired" in read.stderr and "Log in" in read.stderr
    assert len(server.requests) == before, "a paused read must not reach the gateway"

    st = subprocess.run([IBGW, "status"], capture_output=True, text=True, env=env)
    assert st.returncode == 0
    again = subprocess.run(
        [IBGW, "-o", "json", "accounts"], capture_output=True, text=True, env=env
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)


LOOP = textwrap.dedent("""
    import sys
    from ibgw.app import App
    from ibgw.plugins import get_plugin_manager
    app = App(get_plugin_manager())
    gw = app.gateway()
    for _ in range(int(sys.argv[1])):
        assert gw.session_status().state == "usable"
""")


def test_two_processes_never_exceed_pacing(ibgw_fake_gateway, tmp_path):
    server = ibgw_fake_gateway
    env = _env(tmp_path, server.url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOOP, "20"], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert server.stats.get("429", 0) == 0
    assert sum(1 for r in server.requests if r[1].endswith("/iserver/auth/status")) == 40


def test_keepalive_watch_prints_changes_and_stops_cleanly_on_ctrl_c(ibgw_fake_gateway, tmp_path):
    import signal
    import time

    server = ibgw_fake_gateway
    env = _env(tmp_path, server.url)
    proc = subprocess.Popen(
        [IBGW, "keepalive", "--watch", "--interval", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            r[1].endswith("/tickle") for r in server.requests
        ):
            time.sleep(0.1)
        server.scenario = "keepalive-expired"
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and sum(r[1].endswith("/tickle") for r in server.requests) < 2
        ):
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "keepalive-success" in out and "keepalive-expired" in out
    assert "Traceback" not in err


def test_a_new_session_is_primed_again_in_a_long_lived_process(
    ibgw_pm, ibgw_fake_gateway, ibgw_env
):
    """The MCP server keeps one transport for hours; after a session problem (IBKR
    resets sessions nightly) the next market-data read makes the prerequisite
    /iserver/accounts call again instead of trusting the old session's."""
    import ibgw_fake.market

    from ibgw.app import App
    from ibgw.endpoints import SNAPSHOT

    if not any(p is ibgw_fake.market for p in ibgw_pm.get_plugins()):
        ibgw_pm.register(ibgw_fake.market)
    server = ibgw_fake_gateway
    app = App(ibgw_pm, {"backend": "live", "gateway_url": server.url})
    app.pacer.acquire = lambda classes, deadline: None  # this test is about priming, not pacing
    gateway = app.gateway()

    def snapshot():
        return gateway.call(SNAPSHOT, query={"conids": "756733", "fields": "31"})

    def accounts_calls():
        return sum(1 for r in server.requests if r[1].endswith("/iserver/accounts"))

    snapshot()
    snapshot()
    assert accounts_calls() == 1
    server.scenario = "no-bridge"
    from ibgw.errors import ManualActionRequired

    with pytest.raises(ManualActionRequired):
        snapshot()
    server.scenario = "connected"
    snapshot()
    assert accounts_calls() == 2
