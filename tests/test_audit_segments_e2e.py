"""The audit lifecycle through real processes: the installed ``ibgw`` console script with
``IBGW_STATE_DIR`` in a temporary directory and the fake backend."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

IBGW = str(Path(sys.executable).with_name("ibgw"))
LIMIT = 20000

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


@pytest.fixture
def env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    (tmp_path / "empty.toml").write_text("")
    env.update(
        IBGW_STATE_DIR=str(tmp_path / "state"),
        IBGW_CONFIG=str(tmp_path / "empty.toml"),
        IBGW_BACKEND="fake",
    )
    return env


def _ibgw(env, *args, timeout=60):
    return subprocess.run(
        [IBGW, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _state(env) -> Path:
    return Path(env["IBGW_STATE_DIR"])


def _jsonl_files(env) -> list[Path]:
    return sorted(_state(env).glob("audit*.jsonl"))


@pytest.mark.parametrize("keep", [None, 3])
def test_four_processes_rotate_and_the_chain_verifies(env, keep):
    env["IBGW_AUDIT_MAX_BYTES"] = str(LIMIT)
    if keep is not None:
        env["IBGW_AUDIT_KEEP"] = str(keep)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, "100"], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    files = _jsonl_files(env)
    assert len(files) > 1  # rotated
    total = sum(f.stat().st_size for f in files)
    assert total < ((keep or 30) + 1) * LIMIT
    if keep is not None:
        assert len(files) <= keep + 1
    result = _ibgw(env, "-o", "json", "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["segments"] == len(files)
    if keep is not None:
        assert report["pruned_segments"] >= 1
    else:
        assert report["records"] == 800


def test_verify_names_the_segment_and_line_and_exits_7(env):
    env["IBGW_AUDIT_MAX_BYTES"] = str(LIMIT)
    subprocess.run([sys.executable, "-c", WORKER, "60"], env=env, check=True)
    closed = [f for f in _jsonl_files(env) if f.name != "audit.jsonl"]
    lines = closed[0].read_bytes().splitlines(keepends=True)
    assert b'"actor":"cli"' in lines[2]
    lines[2] = lines[2].replace(b'"actor":"cli"', b'"actor":"clj"')
    closed[0].write_bytes(b"".join(lines))
    result = _ibgw(env, "audit", "verify")
    assert result.returncode == 7
    assert f"{closed[0].name} line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_tail_json_prints_the_last_records(env):
    subprocess.run([sys.executable, "-c", WORKER, "4"], env=env, check=True)
    result = _ibgw(env, "audit", "tail", "-n", "5", "-o", "json")
    assert result.returncode == 0, result.stderr
    recs = json.loads(result.stdout)
    assert len(recs) == 5 and [r["seq"] for r in recs] == [4, 5, 6, 7, 8]
    assert {r["kind"] for r in recs} == {"intent", "outcome"}
    assert str(_state(env)) not in result.stdout  # no machine paths


def test_show_filters_by_command_and_renders_csv(env):
    subprocess.run([sys.executable, "-c", WORKER, "2"], env=env, check=True)
    assert _ibgw(env, "fx", "rate", "USD", "EUR").returncode == 0
    result = _ibgw(env, "audit", "show", "--command", "fx rate", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert {r["command"] for r in json.loads(result.stdout)} == {"fx rate"}
    result = _ibgw(env, "audit", "show", "--since", "1h", "-o", "csv")
    assert result.stdout.startswith("seq,ts,kind") and result.stdout.count("\n") == 7
    assert _ibgw(env, "audit", "show", "--since", "2999-01-01").stdout == "(no audit records)\n"
    bad = _ibgw(env, "audit", "show", "--since", "yesterday")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_tail_follow_prints_records_another_process_writes(env):
    subprocess.run([sys.executable, "-c", WORKER, "1"], env=env, check=True)
    follower = subprocess.Popen(
        [IBGW, "audit", "tail", "-n", "1", "--follow", "-o", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout], daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=60))
        assert first["seq"] == 2  # the last record already there
        assert _ibgw(env, "fx", "rate", "USD", "EUR").returncode == 0
        seen = [json.loads(lines.get(timeout=60)) for _ in range(2)]
        assert [(r["kind"], r["command"]) for r in seen] == [
            ("intent", "fx rate"),
            ("outcome", "fx rate"),
        ]
        assert [r["seq"] for r in seen] == [3, 4]
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def test_a_deleted_log_stops_reads_until_acknowledged(env):
    """Issue 18 finding 6 through the console script: exit 7 and nothing read until
    'ibgw audit acknowledge', which leaves a record saying what it accepted."""
    assert _ibgw(env, "fx", "rate", "USD", "EUR").returncode == 0
    for name in ("audit.jsonl", "audit.checkpoint"):
        (_state(env) / name).unlink()
    verify = _ibgw(env, "audit", "verify")
    assert verify.returncode == 7 and "missing" in verify.stderr
    read = _ibgw(env, "-o", "json", "fx", "rate", "USD", "EUR")
    assert read.returncode == 7 and read.stdout == ""
    error = json.loads(read.stderr.strip().splitlines()[-1])["error"]
    assert "acknowledge" in error["hint"]
    log = _state(env) / "audit.jsonl"
    assert not log.exists() or log.stat().st_size == 0  # nothing was written either
    ack = _ibgw(env, "audit", "acknowledge")
    assert ack.returncode == 0 and "log-missing" in ack.stdout
    assert _ibgw(env, "fx", "rate", "USD", "EUR").returncode == 0
    result = _ibgw(env, "audit", "verify")
    assert result.returncode == 0 and "acknowledged: seq 1: log-missing" in result.stdout
    assert "nothing to acknowledge" in _ibgw(env, "audit", "acknowledge").stdout


def test_config_show_knows_the_audit_settings(env):
    env["IBGW_AUDIT_MAX_BYTES"] = "20000"
    result = _ibgw(env, "-o", "json", "config", "show")
    assert result.returncode == 0, result.stderr
    shown = {row["field"]: row for row in json.loads(result.stdout)}
    assert shown["audit_max_bytes"]["value"] == 20000
    assert shown["audit_max_bytes"]["source"] == "env"
    assert shown["audit_keep"]["value"] == 30
    env["IBGW_AUDIT_KEEP"] = "0"
    bad = _ibgw(env, "config", "check")
    assert bad.returncode == 2 and "audit_keep" in bad.stderr
