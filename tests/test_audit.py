"""The audit trail: hash chain, tamper evidence, fail-closed writes, concurrency.

SECURITY.md section 4. Tests run as root, so faults are injected by monkeypatching
``os`` functions, never by permission bits.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import stat

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibgw import audit, redact
from ibgw.audit import (
    GENESIS,
    AuditError,
    Auditor,
    JsonlSink,
    VerifyReport,
    account_hash,
    tail,
    verify,
)
from ibgw.errors import EXIT_AUDIT, AuditUnavailable


@pytest.fixture(autouse=True)
def _fresh_redactor():
    redact.reset()
    yield
    redact.reset()


@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "state")


def _log(state_dir):
    return os.path.join(state_dir, "audit.jsonl")


def _lines(state_dir) -> list[bytes]:
    with open(_log(state_dir), "rb") as fh:
        return fh.read().splitlines(keepends=True)


def _write_lines(state_dir, lines):
    with open(_log(state_dir), "wb") as fh:
        fh.write(b"".join(lines))


def _fill(state_dir, n: int) -> JsonlSink:
    sink = JsonlSink(state_dir)
    for i in range(n):
        sink.write({"kind": "intent", "command": "test", "params": {"i": i}})
    return sink


class FailingSink:
    name = "failing"

    def __init__(self):
        self.calls = 0

    def write(self, record):
        self.calls += 1
        raise OSError(errno.EIO, "disk on fire", "/secret/path/to/somewhere")


class ListSink:
    name = "list"

    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)


# -- the chain ----------------------------------------------------------------------------


def test_chain_verifies_after_many_appends(state):
    _fill(state, 60)
    report = verify(state)
    assert report == VerifyReport(ok=True, records=60)
    recs = [json.loads(x) for x in _lines(state)]
    assert [r["seq"] for r in recs] == list(range(1, 61))
    assert recs[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(recs, recs[1:], strict=False))
    for raw in _lines(state):
        assert raw == audit.canonical(json.loads(raw)).encode() + b"\n"


def test_verify_of_a_fresh_install_is_ok(state):
    assert verify(state) == VerifyReport(ok=True, records=0)
    assert not os.path.exists(state)  # verify creates nothing
    assert tail(state) == []


def test_tail_returns_the_last_records_oldest_first(state):
    _fill(state, 25)
    last = tail(state, 3)
    assert [r["seq"] for r in last] == [23, 24, 25]
    assert [r["seq"] for r in tail(state, 100)] == list(range(1, 26))


def test_tail_reads_across_large_records(state):
    sink = JsonlSink(state)
    for i in range(5):
        sink.write({"kind": "intent", "command": "big", "params": {"blob": "x" * 20000, "i": i}})
    assert [r["params"]["i"] for r in tail(state, 4)] == [1, 2, 3, 4]
    assert verify(state).ok


# -- tamper evidence --------------------------------------------------------------------


def _small_log(state):
    auditor = Auditor([JsonlSink(state)], state)
    cid = auditor.intent("news", {"symbol": "AAPL"})
    auditor.outcome(cid, "news", "ok", state="usable", rows=3, duration_ms=12)
    auditor.denied("orders", "POST", "/iserver/account/{accountId}/orders", "write-denylist")
    with open(_log(state), "rb") as fh:
        return fh.read()


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def _check(state, data: bytes) -> VerifyReport:
    with open(_log(state), "wb") as fh:
        fh.write(data)
    return verify(state)


def _fast_checker(state):
    """verify() minus the file I/O: the same checks on bytes, for loops over every byte."""
    key = audit._key_for(state, create=False)
    dir_fd = audit._open_dir(state, create=False)
    try:
        checkpoint = audit._read_checkpoint(dir_fd, key)
    finally:
        os.close(dir_fd)
    return lambda data: audit._verify_bytes(data, key, checkpoint)


def test_every_single_byte_edit_is_detected_at_its_line(state):
    original = _small_log(state)
    assert verify(state).ok
    check = _fast_checker(state)
    assert check(original).ok
    checked = 0
    for pos in range(len(original)):
        for new in {
            original[pos] ^ 0x01,
            ord("x") if original[pos] != ord("x") else ord("y"),
            ord("\n") if original[pos] != ord("\n") else ord(" "),
        }:
            mutated = original[:pos] + bytes([new]) + original[pos + 1 :]
            report = check(mutated)
            assert not report.ok, (pos, bytes([original[pos]]), bytes([new]))
            assert report.first_bad_line == _line_of(original, pos), (pos, report)
            checked += 1
    assert checked >= 3 * len(original) - 5
    # and through the file, at a few places
    for pos in (0, len(original) // 2, len(original) - 1):
        mutated = original[:pos] + bytes([original[pos] ^ 0x01]) + original[pos + 1 :]
        assert _check(state, mutated).first_bad_line == _line_of(original, pos)
    assert _check(state, original).ok


def test_every_single_byte_deletion_is_detected(state):
    original = _small_log(state)
    check = _fast_checker(state)
    for pos in range(len(original)):
        report = check(original[:pos] + original[pos + 1 :])
        assert not report.ok, pos
        assert report.first_bad_line == _line_of(original, pos), (pos, report)


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("edits") / "state")
    return _small_log(state), _fast_checker(state)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_arbitrary_byte_edits_are_detected(small_log, data):
    original, check = small_log
    edits = data.draw(
        st.dictionaries(
            st.integers(0, len(original) - 1), st.integers(0, 255), min_size=1, max_size=4
        )
    )
    mutated = bytearray(original)
    for pos, new in edits.items():
        mutated[pos] = new
    mutated = bytes(mutated)
    changed = [pos for pos in edits if mutated[pos] != original[pos]]
    report = check(mutated)
    if not changed:
        assert report.ok
        return
    assert not report.ok
    assert report.first_bad_line == _line_of(original, min(changed))


def test_deleted_record_is_reported_at_its_place(state):
    _fill(state, 6)
    lines = _lines(state)
    _write_lines(state, lines[:2] + lines[3:])
    report = verify(state)
    assert not report.ok and report.first_bad_line == 3
    assert "deleted" in report.problem
    assert report.records == 2


def test_reordered_records_are_reported(state):
    _fill(state, 6)
    lines = _lines(state)
    lines[2], lines[3] = lines[3], lines[2]
    _write_lines(state, lines)
    report = verify(state)
    assert not report.ok and report.first_bad_line == 3


def test_inserted_copy_of_a_record_is_reported(state):
    _fill(state, 6)
    lines = _lines(state)
    _write_lines(state, lines[:4] + [lines[1]] + lines[4:])
    report = verify(state)
    assert not report.ok and report.first_bad_line == 5


def test_inserted_forged_record_is_reported(state):
    _fill(state, 4)
    lines = _lines(state)
    last = json.loads(lines[1])
    forged = dict(last, seq=3, prev=last["hash"], command="forged")
    forged["hash"] = "f" * 64
    _write_lines(state, lines[:2] + [audit.canonical(forged).encode() + b"\n"] + lines[2:])
    report = verify(state)
    assert not report.ok and report.first_bad_line == 3
    assert "hash" in report.problem


def test_reformatted_record_is_reported(state):
    _fill(state, 3)
    lines = _lines(state)
    rec = json.loads(lines[1])
    lines[1] = json.dumps(rec, sort_keys=True).encode() + b"\n"  # same content, other spacing
    _write_lines(state, lines)
    report = verify(state)
    assert not report.ok and report.first_bad_line == 2 and "canonical" in report.problem


def test_torn_last_line_is_reported_then_recovered_by_the_next_write(state):
    sink = _fill(state, 4)
    with open(_log(state), "ab") as fh:
        fh.write(b'{"actor":"cli","call_id":"abc","kin')
    report = verify(state)
    assert not report.ok and report.first_bad_line == 5 and "torn" in report.problem
    sink.write({"kind": "intent", "command": "after-crash"})
    report = verify(state)
    assert report.ok and report.records == 5 and report.recovered_lines == [5]
    recs = [json.loads(x) for x in _lines(state)[5:]]
    assert recs == [dict(recs[0])]
    assert recs[0]["recovered"] is True and recs[0]["seq"] == 5
    sink.write({"kind": "intent", "command": "next"})
    assert verify(state).records == 6


def test_torn_line_followed_by_an_ordinary_record_is_reported(state):
    _fill(state, 3)
    lines = _lines(state)
    _write_lines(state, lines[:2] + [b'{"torn\n'] + lines[2:])
    report = verify(state)
    assert not report.ok and report.first_bad_line == 3


def test_recovered_marker_without_a_torn_line_is_reported(state):
    sink = _fill(state, 3)
    with open(_log(state), "ab") as fh:
        fh.write(b'{"partial')
    sink.write({"kind": "intent"})
    lines = _lines(state)
    assert verify(state).ok
    _write_lines(state, lines[:3] + lines[4:])  # drop the torn line itself
    report = verify(state)
    assert not report.ok and report.first_bad_line == 4 and "recovered" in report.problem


def test_truncated_tail_is_reported_by_the_checkpoint(state):
    sink = _fill(state, 8)
    lines = _lines(state)
    _write_lines(state, lines[:6])
    report = verify(state)
    assert not report.ok and report.first_bad_line == 7
    assert "truncated" in report.problem
    # The writer refuses to chain over the gap.
    with pytest.raises(AuditUnavailable):
        sink.write({"kind": "intent"})
    assert len(_lines(state)) == 6


def test_deleted_log_is_reported_and_not_silently_restarted(state):
    sink = _fill(state, 3)
    os.unlink(_log(state))
    report = verify(state)
    assert not report.ok and report.first_bad_line == 1
    with pytest.raises(AuditUnavailable):
        sink.write({"kind": "intent"})


def test_edited_checkpoint_is_reported_and_refused(state):
    sink = _fill(state, 3)
    path = os.path.join(state, "audit.checkpoint")
    with open(path) as fh:
        cp = json.loads(fh.read())
    cp["seq"] = 2
    with open(path, "w") as fh:
        fh.write(json.dumps(cp))
    report = verify(state)
    assert not report.ok and "checkpoint" in report.problem
    with pytest.raises(AuditUnavailable):
        sink.write({"kind": "intent"})


def test_missing_checkpoint_is_reported(state):
    _fill(state, 3)
    os.unlink(os.path.join(state, "audit.checkpoint"))
    report = verify(state)
    assert not report.ok and "checkpoint" in report.problem


def test_missing_key_is_reported(state):
    _fill(state, 2)
    os.unlink(os.path.join(state, "audit.key"))
    report = verify(state)
    assert not report.ok and "key" in report.problem


def test_a_different_key_breaks_every_record(state):
    _fill(state, 2)
    with open(os.path.join(state, "audit.key"), "w") as fh:
        fh.write("ab" * 32 + "\n")
    report = verify(state)
    assert not report.ok and report.first_bad_line == 1


# -- fail closed ----------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target", ["write", "fdatasync"])
def test_disk_full_makes_intent_raise_and_leaves_the_log_intact(state, monkeypatch, target):
    auditor = Auditor([JsonlSink(state)], state)
    auditor.intent("warm-up", {})
    size = os.path.getsize(_log(state))
    monkeypatch.setattr(os, target, _enospc)
    with pytest.raises(AuditUnavailable) as info:
        auditor.intent("news", {"symbol": "AAPL"})
    assert info.value.exit_code == EXIT_AUDIT
    assert str(info.value) == "audit unavailable: no sink could record the call"
    monkeypatch.undo()
    assert os.path.getsize(_log(state)) == size
    assert verify(state) == VerifyReport(ok=True, records=1)


def test_partial_write_then_enospc_truncates_the_torn_bytes_away(state, monkeypatch):
    sink = _fill(state, 2)
    size = os.path.getsize(_log(state))
    real_write = os.write

    def half_then_fail(fd, data):
        if len(data) > 40:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(AuditError):
        sink.write({"kind": "intent", "command": "x" * 50})
    monkeypatch.undo()
    assert os.path.getsize(_log(state)) == size
    assert verify(state).ok


def test_torn_write_that_cannot_be_undone_is_recovered_later(state, monkeypatch):
    sink = _fill(state, 2)
    real_write = os.write

    def half_then_fail(fd, data):
        if len(data) > 40:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.EIO, "I/O error")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_fail)
    monkeypatch.setattr(os, "ftruncate", _enospc)
    with pytest.raises(AuditError):
        sink.write({"kind": "intent", "command": "x" * 50})
    monkeypatch.undo()
    report = verify(state)
    assert not report.ok and report.first_bad_line == 3 and "torn" in report.problem
    sink.write({"kind": "intent", "command": "after"})
    report = verify(state)
    assert report.ok and report.records == 3 and report.recovered_lines == [3]


def test_checkpoint_failure_fails_the_write_and_removes_the_line(state, monkeypatch):
    sink = _fill(state, 2)
    size = os.path.getsize(_log(state))
    monkeypatch.setattr(os, "pwrite", _enospc)
    with pytest.raises(AuditError):
        sink.write({"kind": "intent"})
    monkeypatch.undo()
    assert os.path.getsize(_log(state)) == size
    assert verify(state).ok


@pytest.mark.parametrize("target", ["open", "mkdir", "makedirs"])
def test_unwritable_directory_makes_intent_raise(state, monkeypatch, target):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", state)

    monkeypatch.setattr(os, target, denied)
    auditor = Auditor([JsonlSink(state)], state)
    if target == "makedirs":
        # ibgw never calls os.makedirs; creating the directory still has to work.
        auditor.intent("news", {})
        monkeypatch.undo()
        assert verify(state).records == 1
        return
    with pytest.raises(AuditUnavailable) as info:
        auditor.intent("news", {})
    assert state not in str(info.value)


def test_unwritable_existing_log_makes_intent_raise(state, monkeypatch):
    _fill(state, 1)
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if path == "audit.jsonl" and flags & os.O_APPEND:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(AuditUnavailable):
        Auditor([JsonlSink(state)], state).intent("news", {})


def test_read_only_filesystem_makes_intent_raise(state, monkeypatch):
    _fill(state, 1)
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(AuditUnavailable):
        Auditor([JsonlSink(state)], state).intent("news", {})


def test_sink_error_messages_hold_no_paths(state, monkeypatch):
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(AuditError) as info:
        JsonlSink(state).write({"kind": "intent"})
    assert state not in str(info.value) and "tmp" not in str(info.value)
    assert "ENOSPC" in str(info.value)
    assert info.value.__cause__ is None


# -- symlinks --------------------------------------------------------------------------


def test_symlinked_log_file_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    (state / "audit.jsonl").symlink_to(target)
    with pytest.raises(AuditUnavailable) as info:
        Auditor([JsonlSink(str(state))], str(state)).intent("news", {})
    assert target.read_text() == "precious\n"
    with pytest.raises(AuditError) as info:
        JsonlSink(str(state)).write({"kind": "intent"})
    assert "symlink" in str(info.value)
    with pytest.raises(AuditError):
        verify(str(state))


def test_symlinked_state_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "state"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(AuditError) as info:
        JsonlSink(str(link)).write({"kind": "intent"})
    assert "symlink" in str(info.value)
    assert list(real.iterdir()) == []
    with pytest.raises(AuditError):
        verify(str(link))


def test_symlinked_parent_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    state = tmp_path / "link" / "state"
    with pytest.raises(AuditError) as info:
        JsonlSink(str(state)).write({"kind": "intent"})
    assert "symlink" in str(info.value)
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("name", ["audit.key", "audit.lock", "audit.checkpoint"])
def test_symlinked_side_files_are_refused(tmp_path, name):
    state = tmp_path / "state"
    _fill(str(state), 1)
    target = tmp_path / "target"
    target.write_text("x")
    os.unlink(state / name)
    (state / name).symlink_to(target)
    with pytest.raises(AuditError):
        JsonlSink(str(state)).write({"kind": "intent"})
    assert target.read_text() == "x"


def test_log_that_is_not_a_regular_file_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.mkfifo(state / "audit.jsonl", 0o600)
    with pytest.raises(AuditError) as info:
        JsonlSink(str(state)).write({"kind": "intent"})
    assert "regular file" in str(info.value)


def test_hard_linked_log_is_refused(tmp_path):
    state = tmp_path / "state"
    _fill(str(state), 1)
    os.link(state / "audit.jsonl", tmp_path / "other")
    with pytest.raises(AuditError):
        JsonlSink(str(state)).write({"kind": "intent"})


def test_symlinks_above_the_home_directory_are_trusted(tmp_path, monkeypatch):
    # e.g. Fedora Silverblue: /home -> /var/home
    real_home_parent = tmp_path / "var" / "home"
    (real_home_parent / "alice").mkdir(parents=True)
    (tmp_path / "home").symlink_to(real_home_parent, target_is_directory=True)
    home = tmp_path / "home" / "alice"
    monkeypatch.setenv("HOME", str(home))
    state = home / ".local" / "state" / "ibgw"
    JsonlSink(str(state)).write({"kind": "intent"})
    assert verify(str(state)).ok
    # ...but not below it.
    (home / ".local" / "state" / "moved").symlink_to(state, target_is_directory=True)
    with pytest.raises(AuditError):
        JsonlSink(str(home / ".local" / "state" / "moved")).write({"kind": "intent"})


# -- permissions ----------------------------------------------------------------------------


def test_file_modes(state):
    _fill(state, 1)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in ("audit.jsonl", "audit.key", "audit.lock", "audit.checkpoint"):
        assert stat.S_IMODE(os.stat(os.path.join(state, name)).st_mode) == 0o600, name


def test_loose_modes_are_tightened(state):
    os.makedirs(state, mode=0o755)
    os.chmod(state, 0o755)
    fd = os.open(_log(state), os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    os.chmod(_log(state), 0o644)
    _fill(state, 1)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(_log(state)).st_mode) == 0o600


def test_key_is_32_random_bytes_in_hex(state, tmp_path):
    _fill(state, 1)
    # The first line is the key; the seal (high-water mark) sits a page further on.
    with open(os.path.join(state, "audit.key")) as fh:
        key = fh.readline().strip()
    assert len(bytes.fromhex(key)) == 32
    other = str(tmp_path / "other")
    _fill(other, 1)
    with open(os.path.join(other, "audit.key")) as fh:
        assert fh.readline().strip() != key


# -- the auditor ---------------------------------------------------------------------------


def test_intent_and_outcome_records(state):
    auditor = Auditor([JsonlSink(state)], state, actor="mcp")
    cid = auditor.intent("options chain", {"symbol": "SPY", "month": "APR26"})
    auditor.outcome(
        cid, "options chain", "ok", state="usable", rows=42, duration_ms=87, provenance="documented"
    )
    auditor.outcome(cid, "options chain", "surprising", reason="x")
    recs = tail(state, 10)
    assert [r["kind"] for r in recs] == ["intent", "outcome", "outcome"]
    intent, outcome, odd = recs
    assert intent["call_id"] == outcome["call_id"] == cid
    assert intent["actor"] == "mcp" and intent["params"] == {"symbol": "SPY", "month": "APR26"}
    assert intent["ts"].endswith("Z") and len(intent["ts"]) == len("2026-01-01T00:00:00.000Z")
    assert {k: outcome[k] for k in ("outcome", "state", "rows", "duration_ms", "provenance")} == {
        "outcome": "ok",
        "state": "usable",
        "rows": 42,
        "duration_ms": 87,
        "provenance": "documented",
    }
    assert "reason" not in outcome  # None fields are left out
    assert odd["outcome"] == "error"


def test_denied_record(state):
    Auditor([JsonlSink(state)], state).denied(
        "orders place", "POST", "/iserver/account/{accountId}/orders", "write"
    )
    (rec,) = tail(state)
    assert rec["kind"] == "denied" and rec["method"] == "POST"
    assert rec["path_template"] == "/iserver/account/{accountId}/orders"


def test_a_failing_sink_does_not_silence_the_others(state, caplog):
    for order in ("first", "last"):
        bad, good = FailingSink(), ListSink()
        sinks = [bad, JsonlSink(state), good] if order == "first" else [JsonlSink(state), good, bad]
        auditor = Auditor(sinks, state)
        cid = auditor.intent("news", {"symbol": "AAPL"})
        auditor.outcome(cid, "news", "ok")
        auditor.denied("x", "POST", "/logout", "write")
        assert bad.calls == 3 and len(good.records) == 3
    assert verify(state).records == 6
    assert "/secret/path" not in caplog.text and "disk on fire" not in caplog.text
    assert "failing" in caplog.text


def test_no_sink_writing_raises_audit_unavailable(state):
    with pytest.raises(AuditUnavailable):
        Auditor([FailingSink(), FailingSink()], state).intent("news", {})
    with pytest.raises(AuditUnavailable):
        Auditor([], state).intent("news", {})


def test_outcome_and_denied_never_raise(state, monkeypatch):
    auditor = Auditor([FailingSink()], state)
    auditor.outcome("id", "news", "ok")
    auditor.denied("news", "POST", "/x", "write")
    monkeypatch.setattr(redact.REDACTOR, "_data", lambda *a: 1 / 0)
    auditor.outcome("id", "news", "ok")
    with pytest.raises(AuditUnavailable):  # cannot redact: fail closed
        Auditor([ListSink()], state).intent("news", {})


ACCOUNTS = ["U1234567", "DU7654321", "F9988776", "DF1122334"]


def test_account_ids_never_appear_in_records(state):
    auditor = Auditor([JsonlSink(state)], state)
    cid = auditor.intent(
        "portfolio summary",
        {
            "account": "U1234567",
            "acctId": "DU7654321",
            "AccountId": "F9988776",
            "accounts": ["DF1122334", "U1234567"],
            "note": "for U1234567 and DU7654321",
            "nested": {"accountId": 1234567},
        },
    )
    auditor.outcome(cid, "portfolio summary", "error", reason="no access to U1234567")
    auditor.denied(
        "portfolio summary",
        "GET",
        "/portfolio/{accountId}/summary",
        "account DU7654321 not allowed",
    )
    with open(_log(state), "rb") as fh:
        raw = fh.read()
    for acct in ACCOUNTS + ["1234567"]:
        assert acct.encode() not in raw, acct
    intent = tail(state, 3)[0]
    assert intent["params"]["account"] == account_hash("U1234567", state)
    assert intent["params"]["acctId"] == account_hash("DU7654321", state)
    assert intent["params"]["accounts"][1] == intent["params"]["account"]
    assert (
        intent["params"]["account"].startswith("acct-") and len(intent["params"]["account"]) == 21
    )
    assert verify(state).ok


def test_account_hash_is_keyed_and_stable(state, tmp_path):
    a = account_hash("U1234567", state)
    assert a == account_hash("U1234567", state)
    assert a != account_hash("U1234568", state)
    assert a != account_hash("U1234567", str(tmp_path / "other-install"))


def test_secrets_never_appear_in_records(state):
    redact.add_secret("SESSION-CANARY-5f4e3d2c")
    auditor = Auditor([JsonlSink(state)], state)
    cid = auditor.intent(
        "news",
        {
            "q": "x SESSION-CANARY-5f4e3d2c y",
            "token": "TOKEN-CANARY-1",
            "header": "Cookie: JSESSIONID=JAR-CANARY-2",
        },
    )
    auditor.outcome(cid, "news", "error", reason="gateway echoed SESSION-CANARY-5f4e3d2c")
    with open(_log(state), "rb") as fh:
        raw = fh.read()
    for canary in (b"SESSION-CANARY", b"TOKEN-CANARY", b"JAR-CANARY"):
        assert canary not in raw
    assert verify(state).ok


def test_non_json_params_are_recorded_safely(state):
    auditor = Auditor([JsonlSink(state)], state)
    auditor.intent(
        "x",
        {
            "nan": float("nan"),
            "inf": float("inf"),
            "set": {1},
            "obj": object,
            "tuple": (1, 2),
            3: "int key",
        },
    )
    (rec,) = tail(state)
    assert rec["params"]["nan"] == "nan" and rec["params"]["tuple"] == [1, 2]
    assert verify(state).ok


# -- concurrency ------------------------------------------------------------------------------


# Run by ``exec`` in each spawned process, so a child imports only ibgw.audit (as a CLI or
# MCP process would), not this test module with pytest and hypothesis.
APPEND_WORKER = """
from ibgw.audit import Auditor, JsonlSink
auditor = Auditor([JsonlSink(STATE)], STATE, actor="worker-%d" % WORKER)
for i in range(COUNT):
    auditor.intent("concurrent", {"worker": WORKER, "i": i})
"""


def test_concurrent_writers_keep_the_chain(state):
    JsonlSink(state).write({"kind": "intent", "command": "init"})
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=exec, args=(APPEND_WORKER, {"STATE": state, "WORKER": w, "COUNT": 100}))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    report = verify(state)
    assert report.ok and report.records == 401
    recs = [json.loads(x) for x in _lines(state)]
    assert [r["seq"] for r in recs] == list(range(1, 402))
    per_worker = {}
    for r in recs[1:]:
        per_worker.setdefault(r["params"]["worker"], []).append(r["params"]["i"])
    assert all(v == list(range(100)) for v in per_worker.values()) and len(per_worker) == 4


def test_threads_sharing_one_sink_keep_the_chain(state):
    import threading

    sink = JsonlSink(state)
    auditor = Auditor([sink], state)

    def work(n):
        for i in range(40):
            auditor.intent("threads", {"worker": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    report = verify(state)
    assert report.ok and report.records == 240


def test_a_forked_child_writes_through_its_own_descriptors(state):
    sink = _fill(state, 1)  # the parent now holds open descriptors and a key
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            for i in range(20):
                sink.write({"kind": "intent", "command": "child", "params": {"i": i}})
        except BaseException:
            code = 1
        os._exit(code)
    for i in range(20):
        sink.write({"kind": "intent", "command": "parent", "params": {"i": i}})
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    report = verify(state)
    assert report.ok and report.records == 41


def _checkpoint_seq(state) -> int:
    key = audit._key_for(state, create=False)
    dir_fd = audit._open_dir(state, create=False)
    try:
        return audit._read_checkpoint(dir_fd, key).seq
    finally:
        os.close(dir_fd)


def test_intent_is_synced_before_write_returns_outcome_with_the_next_intent(state, monkeypatch):
    sink = JsonlSink(state)
    auditor = Auditor([sink], state)
    auditor.intent("warm-up", {})  # creates the key and the genesis checkpoint
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])
    cid = auditor.intent("news", {})
    assert len(syncs) == 1  # on disk before the caller may call the gateway
    auditor.outcome(cid, "news", "ok", rows=1)
    assert len(syncs) == 1  # written, not yet synced...
    assert [json.loads(x)["kind"] for x in _lines(state)] == ["intent", "intent", "outcome"]
    assert _checkpoint_seq(state) == 2  # ...and the checkpoint waits for the sync
    auditor.intent("next", {})
    assert len(syncs) == 2 and _checkpoint_seq(state) == 4
    auditor.outcome(cid, "next", "ok")
    sink.close()  # syncs what is pending, then moves the checkpoint to it
    assert len(syncs) == 3 and _checkpoint_seq(state) == 5
    assert verify(state) == VerifyReport(ok=True, records=5)


def test_a_pending_outcome_is_synced_and_checkpointed_at_exit(state):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ibgw.audit import Auditor, JsonlSink\n"
        "a = Auditor([JsonlSink(sys.argv[1])], sys.argv[1])\n"
        "a.outcome(a.intent('news', {}), 'news', 'ok')\n"
        "GLOBAL = a  # still referenced at exit: the exit hook must do it\n"
    )
    subprocess.run([sys.executable, "-c", code, state], check=True, timeout=60)
    assert _checkpoint_seq(state) == 2
    assert verify(state) == VerifyReport(ok=True, records=2)


def test_a_pending_outcome_deleted_before_the_next_write_is_refused(state):
    sink = JsonlSink(state)
    auditor = Auditor([sink], state)
    cid = auditor.intent("news", {})
    auditor.outcome(cid, "news", "ok")
    _write_lines(state, _lines(state)[:1])  # the outcome line removed behind our back
    with pytest.raises(AuditUnavailable):
        auditor.intent("next", {})
    assert len(_lines(state)) == 1


# A sink keeps its descriptors between writes; every change below made between two
# writes of the same sink must be seen exactly as a fresh sink would see it.


def test_a_log_moved_aside_starts_a_new_log_not_the_moved_one(state, tmp_path):
    # Issue 18 finding 6: moving the log and checkpoint aside is refused (the key's seal
    # remembers them) until acknowledged; then the new log starts with that record.
    sink = _fill(state, 3)
    aside = tmp_path / "aside"
    aside.mkdir()
    for name in ("audit.jsonl", "audit.checkpoint"):
        os.rename(os.path.join(state, name), aside / name)
    before = (aside / "audit.jsonl").read_bytes()
    with pytest.raises(AuditError, match="missing"):
        sink.write({"kind": "intent", "command": "fresh"})
    assert sink.acknowledge()["acknowledged"] == "log-missing"
    sink.write({"kind": "intent", "command": "fresh"})
    assert (aside / "audit.jsonl").read_bytes() == before
    recs = [json.loads(x) for x in _lines(state)]
    assert [r["seq"] for r in recs] == [1, 2] and recs[0]["prev"] == GENESIS
    assert [r["kind"] for r in recs] == ["acknowledged", "intent"]
    assert verify(state) == VerifyReport(ok=True, records=2)


def test_a_log_truncated_under_a_live_sink_is_refused(state):
    sink = _fill(state, 3)
    _write_lines(state, _lines(state)[:2])
    with pytest.raises(AuditError) as info:
        sink.write({"kind": "intent"})
    assert "behind its checkpoint" in str(info.value)


@pytest.mark.parametrize("name", ["audit.jsonl", "audit.lock", "audit.checkpoint"])
def test_a_file_swapped_for_a_symlink_under_a_live_sink_is_refused(tmp_path, name):
    state = tmp_path / "state"
    sink = _fill(str(state), 2)
    target = tmp_path / "target"
    target.write_text("x")
    os.unlink(state / name)
    (state / name).symlink_to(target)
    with pytest.raises(AuditError):
        sink.write({"kind": "intent"})
    assert target.read_text() == "x"


def test_same_size_edits_under_a_live_sink_are_refused(state):
    # The sink remembers the last line and checkpoint it wrote; an edit that keeps the
    # file sizes must still be read and refused, not matched against that memory.
    sink = _fill(state, 3)
    data = bytearray(open(_log(state), "rb").read())
    at = data.rindex(b'"hash":"') + len('"hash":"')
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    with open(_log(state), "r+b") as fh:
        fh.write(bytes(data))
    with pytest.raises(AuditError) as info:
        sink.write({"kind": "intent"})
    assert "behind its checkpoint" in str(info.value)


def test_a_checkpoint_edited_in_place_under_a_live_sink_is_refused(state):
    sink = _fill(state, 3)
    path = os.path.join(state, "audit.checkpoint")
    block = bytearray(open(path, "rb").read())
    at = block.index(b'"seq":3') + len('"seq":')
    block[at] = ord("7")
    with open(path, "r+b") as fh:
        fh.write(bytes(block))
    with pytest.raises(AuditError) as info:
        sink.write({"kind": "intent"})
    assert "checkpoint is corrupt or was edited" in str(info.value)


def test_a_hard_link_made_under_a_live_sink_is_refused(tmp_path):
    state = tmp_path / "state"
    sink = _fill(str(state), 1)
    os.link(state / "audit.jsonl", tmp_path / "other")
    with pytest.raises(AuditError):
        sink.write({"kind": "intent"})


def test_a_state_dir_swapped_for_a_symlink_under_a_live_sink_is_refused(tmp_path):
    state = tmp_path / "state"
    sink = _fill(str(state), 1)
    os.rename(state, tmp_path / "real")
    state.symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(AuditError) as info:
        sink.write({"kind": "intent"})
    assert "symlink" in str(info.value)
    assert verify(str(tmp_path / "real")) == VerifyReport(ok=True, records=1)


def test_loose_modes_set_under_a_live_sink_are_tightened(state):
    sink = _fill(state, 1)
    os.chmod(_log(state), 0o644)
    sink.write({"kind": "intent"})
    assert stat.S_IMODE(os.stat(_log(state)).st_mode) == 0o600
    assert verify(state).records == 2


def test_close_releases_the_descriptors(state):
    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    sink = _fill(state, 2)
    assert open_fds() > before
    sink.close()
    assert open_fds() == before
    sink.write({"kind": "intent"})  # opens again
    del sink
    assert open_fds() == before
    assert verify(state).records == 3


# -- the default plugin and its commands -----------------------------------------------------


def test_default_sink_hook_registers_a_jsonl_sink_trylast(state):
    from types import SimpleNamespace

    from ibgw.default_plugins import audit_sink

    sinks = []
    audit_sink.ibgw_audit_sinks(config=SimpleNamespace(state_dir=state), register=sinks.append)
    assert len(sinks) == 1 and isinstance(sinks[0], JsonlSink) and sinks[0].directory == state
    assert isinstance(sinks[0], audit.AuditSink)
    assert audit_sink.ibgw_audit_sinks.ibgw_impl["trylast"] is True


def test_plugin_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, ibgw.default_plugins.audit_sink, ibgw.default_plugins.redaction; "
        "print(sorted(m for m in ('ibgw.audit', 'ibgw.redact', 'tabulate', 'requests', "
        "'ibgw.app') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_command_logic_functions(state, monkeypatch):
    from ibgw.default_plugins.audit_sink import path_text, tail_text, verify_text

    Auditor([JsonlSink(state)], state).intent("news", {"symbol": "AAPL"})
    assert verify_text(state) == "ok: 1 records in 1 segment(s), chain intact\n"
    assert json.loads(verify_text(state, "json"))["ok"] is True
    table = tail_text(state, 5)
    assert "news" in table and "AAPL" in table and "seq" in table
    assert json.loads(tail_text(state, 5, "json"))[0]["command"] == "news"
    assert tail_text(state, 5, "csv").startswith("seq,ts,kind")
    monkeypatch.setenv("HOME", os.path.dirname(state))
    assert path_text(state) == "~/state/audit.jsonl\n"
    with open(_log(state), "ab") as fh:
        fh.write(b"garbage\n")
    with pytest.raises(AuditUnavailable) as info:
        verify_text(state)
    assert "line 2" in str(info.value) and info.value.exit_code == 7


def _cli_with_stub_app(monkeypatch, state, output="table"):
    app_module = pytest.importorskip("ibgw.app", reason="ibgw.app not written yet")
    from types import SimpleNamespace

    from ibgw.default_plugins import audit_sink

    stub = SimpleNamespace(config=SimpleNamespace(state_dir=state, output=output), output=output)
    monkeypatch.setattr(app_module, "current_app", lambda: stub)

    @click.group()
    def cli():
        pass

    audit_sink.ibgw_register_commands(cli=cli)
    return cli


def test_audit_commands_through_click(state, monkeypatch):
    cli = _cli_with_stub_app(monkeypatch, state)
    runner = CliRunner()
    Auditor([JsonlSink(state)], state).intent("news", {"symbol": "AAPL"})
    result = runner.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert result.output == "ok: 1 records in 1 segment(s), chain intact\n"
    result = runner.invoke(cli, ["audit", "tail", "-n", "1"])
    assert result.exit_code == 0 and "news" in result.output
    result = runner.invoke(cli, ["audit", "path"])
    assert result.exit_code == 0 and result.output.strip().endswith("audit.jsonl")
    lines = _lines(state)
    _write_lines(state, [lines[0].replace(b"AAPL", b"MSFT")])
    result = runner.invoke(cli, ["audit", "verify"])
    assert isinstance(result.exception, AuditUnavailable)
    assert result.exception.exit_code == 7 and "line 1" in str(result.exception)


def test_audit_tail_json_through_click(state, monkeypatch):
    cli = _cli_with_stub_app(monkeypatch, state, output="json")
    Auditor([JsonlSink(state)], state).intent("news", {"symbol": "AAPL"})
    result = CliRunner().invoke(cli, ["audit", "tail"])
    assert result.exit_code == 0
    assert [r["command"] for r in json.loads(result.output)] == ["news"]
