"""Audit end to end: concurrent writers leave a verifying chain; a broken audit stops
the call (exit 7) before any byte reaches the gateway; denied calls are recorded."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

IBGW = str(Path(sys.executable).with_name("ibgw"))

WORKER = textwrap.dedent("""
    import sys
    from ibgw.app import App
    from ibgw.plugins import get_plugin_manager
    from ibgw.runner import run_read
    app = App(get_plugin_manager(), {"backend": "fake"})
    read = app.reads.get("accounts", "list")
    for _ in range(int(sys.argv[1])):
        assert run_read(app, read, {}).records
""")


def _records(state_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (state_dir / "audit.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_eight_processes_two_hundred_reads_each(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    (tmp_path / "empty.toml").write_text("")
    env.update(IBGW_STATE_DIR=str(tmp_path), IBGW_CONFIG=str(tmp_path / "empty.toml"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, "200"], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    records = _records(tmp_path)
    kinds = [r["kind"] for r in records]
    assert kinds.count("intent") == 1600 and kinds.count("outcome") == 1600
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[0]["seq"] + 3200))
    verify = subprocess.run([IBGW, "audit", "verify"], capture_output=True, text=True, env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_read_is_audited_with_hashed_account(ibgw_cli, ibgw_env):
    result = ibgw_cli("accounts", "summary", "--account", "DU1234567")
    state = ibgw_env / "state"
    records = _records(state)
    intent, outcome = records[-2], records[-1]
    assert (intent["kind"], outcome["kind"]) == ("intent", "outcome")
    assert intent["command"] == "accounts summary" and intent["actor"] == "cli"
    assert outcome["outcome"] == ("ok" if result.exit_code == 0 else "error")
    assert "DU1234567" not in (state / "audit.jsonl").read_text()


def _count_sends(monkeypatch):
    from ibgw_fake.transport import FakeTransport

    sent = []
    original = FakeTransport._deliver

    def counting(self, request):
        sent.append(request.path)
        return original(self, request)

    monkeypatch.setattr(FakeTransport, "_deliver", counting)
    return sent


def test_disk_full_stops_the_call_before_the_gateway(ibgw_cli, monkeypatch):
    import ibgw.audit

    sent = _count_sends(monkeypatch)
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ibgw.audit.os, "fsync", full)
    result = ibgw_cli("-o", "json", "accounts")
    monkeypatch.setattr(ibgw.audit.os, "fsync", real_fsync)
    assert result.exit_code == 7, result.output + result.stderr
    assert (
        json.loads(result.stderr.strip().splitlines()[-1])["error"]["reason"] == "audit-unavailable"
    )
    assert sent == []


def test_unwritable_audit_dir_stops_the_call(ibgw_cli, monkeypatch):
    import ibgw.audit

    sent = _count_sends(monkeypatch)
    real_open = os.open

    def deny(path, *a, **kw):
        if "audit" in os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(ibgw.audit.os, "open", deny)
    result = ibgw_cli("status")
    assert result.exit_code == 7
    assert sent == []
    assert "Traceback" not in result.stderr


def test_symlinked_audit_file_is_refused(ibgw_cli, ibgw_env):
    state = ibgw_env / "state"
    state.mkdir(mode=0o700)
    target = ibgw_env / "elsewhere.jsonl"
    target.write_text("")
    (state / "audit.jsonl").symlink_to(target)
    result = ibgw_cli("status")
    assert result.exit_code == 7
    assert target.read_text() == ""


def test_policy_refusal_is_audited_as_denied(ibgw_pm, ibgw_cli, ibgw_env):
    from ibgw import Endpoint, Read, hookimpl

    logout = Endpoint("POST", "/logout")

    class Sneaky:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="sneaky",
                    name="logout",
                    summary="x",
                    default=True,
                    # declaring it would be refused at registration: call it undeclared
                    endpoints=[],
                    fetch=lambda ctx: ctx.call(logout),
                )
            )

    ibgw_pm.register(Sneaky)
    sent = []
    from ibgw_fake.transport import FakeTransport

    original = FakeTransport._deliver
    FakeTransport._deliver = lambda self, req: sent.append(req) or original(self, req)
    try:
        result = ibgw_cli("sneaky")
    finally:
        FakeTransport._deliver = original
    assert result.exit_code == 6, result.stderr
    assert sent == []
    kinds = [(r["kind"], r.get("outcome")) for r in _records(ibgw_env / "state")]
    assert ("denied", None) in kinds and ("outcome", "denied") in kinds
