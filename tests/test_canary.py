"""No secret ever leaves: canary values planted in every secret slot never appear in
stdout, stderr, logs, the audit file or anything else ibgw writes.

Reads are enumerated from the plugin registry (their ``probe`` parameters), so a
new plugin is covered without editing this file. The fake backend replaces every
``{{secret:NAME}}`` placeholder with ``CANARY<NAME>`` when ``IBGW_FAKE_CANARY`` is
set; this test adds routes that put canaries where real gateways put secrets and
echo the request in error text.
"""

import os
from pathlib import Path

import pytest

from ibgw import hookimpl
from ibgw.plugins import collect_reads, get_plugin_manager

CANARY = "Kq7CANARYz"
SCENARIOS = [
    "connected",
    "canary-echo",
    "missing-session",
    "expired-session",
    "competing-session",
    "no-bridge",
    "keepalive-expired",
    "gateway-down",
    "rate-limited",
    "malformed-response",
    "login-page",
    "access-denied",
    "server-error",
    "documented-only",
]
SECRET_FIELDS = {
    "session": f"{CANARY}tickle0123456789abcdef",
    "sessionId": f"{CANARY}sessid",
    "MAC": "8e:1c:44:0a:bb:07",
    "hardware_info": f"{CANARY}hw|8e:1c:44:0a:bb:07",
    "userId": 987654321,
    "USER_NAME": f"{CANARY}user",
    "CREDENTIAL": f"{CANARY}cred",
    "IP": "203.0.113.77",
    "PAPER_USER_NAME": f"{CANARY}paper",
}
PLANTED = [v if isinstance(v, str) else str(v) for v in SECRET_FIELDS.values()] + [CANARY]


ECHO = (
    f"failed for {SECRET_FIELDS['session']}: Set-Cookie: JSESSIONID={CANARY}jsess; "
    f"GET /v1/api/x?token={CANARY}tok sessionId={SECRET_FIELDS['sessionId']}"
)


class CanaryRoutes:
    """A scenario, ``canary-echo``, where the gateway echoes secrets: in error text, in
    extra fields of account answers, in the tickle and in /sso/validate."""

    @hookimpl
    def ibgw_fake_fixtures(register):
        only = ["canary-echo"]
        auth = {
            "authenticated": True,
            "established": True,
            "competing": False,
            "connected": True,
            "MAC": SECRET_FIELDS["MAC"],
            "hardware_info": SECRET_FIELDS["hardware_info"],
            "message": ECHO,
            "fail": ECHO,
        }
        register(
            {
                "scenarios": {
                    "canary-echo": {
                        "description": "secrets echoed everywhere",
                        "base": "connected",
                        "hide": [],
                    }
                },
                "routes": [
                    {
                        "method": ["GET", "POST"],
                        "path": "/iserver/auth/status",
                        "scenarios": only,
                        "response": auth,
                    },
                    {
                        "method": ["GET", "POST"],
                        "path": "/tickle",
                        "scenarios": only,
                        "response": {
                            "session": SECRET_FIELDS["session"],
                            "userId": SECRET_FIELDS["userId"],
                            "ssoExpires": 1,
                            "collission": False,
                            "iserver": {"authStatus": auth},
                        },
                    },
                    {
                        "method": "GET",
                        "path": "/iserver/accounts",
                        "scenarios": only,
                        "response": {
                            "accounts": ["DU1234567"],
                            "selectedAccount": "DU1234567",
                            "isPaper": True,
                            "sessionId": SECRET_FIELDS["sessionId"],
                            "MAC": SECRET_FIELDS["MAC"],
                        },
                    },
                    {
                        "method": "GET",
                        "path": "/sso/validate",
                        "scenarios": only,
                        "response": {
                            k: SECRET_FIELDS[k]
                            for k in ("USER_NAME", "CREDENTIAL", "IP", "PAPER_USER_NAME")
                        },
                    },
                    {
                        "method": "GET",
                        "path": "/portfolio/accounts",
                        "scenarios": only,
                        "status": 500,
                        "response": {"error": ECHO, "statusCode": 500},
                    },
                ],
            }
        )


# Reads that declare no probe (because probing would spend a scarce IBKR allowance,
# such as /pa/transactions' one call per 15 minutes) are run here with these
# parameters instead; a read with neither fails test_every_read_is_covered.
EXAMPLES = {"transfers transactions": {"symbol": "AAPL"}, "portfolio performance": {}}


def _reads():
    pm = get_plugin_manager(load_entrypoints=True)
    return sorted(
        (r for r in collect_reads(pm) if r.probe is not None or r.key in EXAMPLES),
        key=lambda r: r.key,
    )


READS = _reads()


def _argv(read):
    argv = [*read.category.split(), read.name]
    example = read.probe if read.probe is not None else EXAMPLES[read.key]
    for param in read.params:
        value = example.get(param.name)
        if value is None or value is False:
            continue
        if param.argument:
            argv += [str(v) for v in (value if isinstance(value, list) else [value])]
        elif param.type == "bool":
            argv.append(param.option_name)
        else:
            for v in value if isinstance(value, list) else [value]:
                argv += [param.option_name, str(v)]
    return argv


def _scan_tree(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}: {c}" for c in PLANTED if c.encode() in data]
    return hits


@pytest.fixture
def canary_pm(ibgw_pm, monkeypatch, tmp_path):
    monkeypatch.setenv("IBGW_FAKE_CANARY", CANARY)
    home = tmp_path / f"home-{CANARY}"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    # local secret paths: state and config live under a home whose name is a canary
    monkeypatch.setenv("IBGW_STATE_DIR", str(home / ".local" / "state" / "ibgw"))
    config = home / ".config" / "ibgw" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("")
    monkeypatch.setenv("IBGW_CONFIG", str(config))
    pm = get_plugin_manager(load_entrypoints=True)
    pm.register(CanaryRoutes, name="canary-routes")
    return pm


def _run_everything(pm, ibgw_env, commands, scenarios, formats, debugs):
    from click.testing import CliRunner

    from ibgw import redact
    from ibgw.cli import create_cli

    redact.reset()
    cli = create_cli(pm)
    runner = CliRunner()
    hits, runs, codes = [], 0, []
    for scenario in scenarios:
        for argv in commands:
            for fmt in formats:
                for debug in debugs:
                    args = [
                        "--backend",
                        "fake",
                        "--scenario",
                        scenario,
                        "--timeout",
                        "2",
                        "-o",
                        fmt,
                    ]
                    args += ["--debug"] if debug else []
                    result = runner.invoke(cli, args + argv)
                    runs += 1
                    codes.append(result.exit_code)
                    text = result.stdout + result.stderr
                    assert "Traceback" not in text or debug, (scenario, argv, text[-500:])
                    hits += [
                        f"{scenario} {' '.join(argv)} -o {fmt}: {c}" for c in PLANTED if c in text
                    ]
    hits += _scan_tree(Path(os.environ["IBGW_STATE_DIR"]))
    assert 2 not in codes, "a run failed on usage or configuration: the scan would prove nothing"
    return hits, runs


BASE_COMMANDS = [
    ["status"],
    ["keepalive"],
    ["accounts"],
    ["accounts", "positions"],
    ["doctor"],
    ["config", "show"],
    ["config", "path"],
    ["audit", "path"],
    ["audit", "tail"],
    ["plugins"],
]


def test_no_canary_in_any_output_connected(canary_pm, ibgw_env):
    commands = BASE_COMMANDS + [_argv(r) for r in READS]
    hits, runs = _run_everything(
        canary_pm, ibgw_env, commands, ["connected"], ["table", "json", "csv"], [False, True]
    )
    assert runs >= len(commands) * 6
    assert hits == []
    # the canaries really went through ibgw (and were caught), not around it
    from ibgw import redact

    seen = {v for v in redact.REDACTOR._secrets if CANARY in v}
    assert {CANARY + n for n in ("session", "sessionid", "userid", "hardware")} <= seen, seen


def test_echoed_secrets_really_reach_ibgw(canary_pm, ibgw_env):
    """Under canary-echo the gateway's answers carry the planted values (so the scan
    above is meaningful), and they are caught."""
    from ibgw import redact

    commands = BASE_COMMANDS + [_argv(r) for r in READS]
    hits, _ = _run_everything(canary_pm, ibgw_env, commands, ["canary-echo"], ["json"], [True])
    assert hits == []
    assert {SECRET_FIELDS["session"], SECRET_FIELDS["sessionId"]} <= set(redact.REDACTOR._secrets)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "connected"])
def test_no_canary_in_any_output_under_faults(canary_pm, ibgw_env, scenario):
    commands = BASE_COMMANDS + [_argv(r) for r in READS]
    hits, _ = _run_everything(canary_pm, ibgw_env, commands, [scenario], ["json", "table"], [True])
    assert hits == []


def test_every_read_is_covered():
    pm = get_plugin_manager(load_entrypoints=True)
    missing = [r.key for r in collect_reads(pm) if r.probe is None and r.key not in EXAMPLES]
    assert missing == [], f"give these reads a probe or an entry in EXAMPLES: {missing}"
