"""The audit log's lifecycle (issue 15) and the audit findings of issue 18.

Segments: the live ``audit.jsonl`` rotates into ``audit.NNNNNN.jsonl`` past ``max_bytes``;
the chain runs on across segments; segments beyond ``keep`` are dropped after a ``pruned``
record names them. Findings: a record of any size never wedges the writer (2), and a
deleted or rolled-back log is refused until acknowledged (6).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ibgw import audit, redact
from ibgw.audit import AuditError, Auditor, JsonlSink, records, tail, verify
from ibgw.errors import AuditUnavailable

LIMIT = 8192


@pytest.fixture(autouse=True)
def _fresh_redactor():
    redact.reset()
    yield
    redact.reset()


@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "state")


def _names(state) -> list[str]:
    return sorted(n for n in os.listdir(state) if n.endswith(".jsonl"))


def _segments(state) -> list[str]:
    return [n for n in _names(state) if n != "audit.jsonl"]


def _read(state, name) -> list[bytes]:
    with open(os.path.join(state, name), "rb") as fh:
        return fh.read().splitlines(keepends=True)


def _write(state, name, lines) -> None:
    with open(os.path.join(state, name), "wb") as fh:
        fh.write(b"".join(lines))


def _fill(state, n, keep=30, sink=None) -> JsonlSink:
    sink = sink or JsonlSink(state, max_bytes=LIMIT, keep=keep)
    for i in range(n):
        ts = audit._now()
        sink.write(
            {"kind": "intent", "ts": ts, "command": "test", "params": {"i": i, "p": "x" * 150}}
        )
        sink.write({"kind": "outcome", "ts": ts, "command": "test", "outcome": "ok"})
    return sink


# -- rotation and retention ----------------------------------------------------------------


def test_rotation_keeps_one_chain_across_segments(state):
    _fill(state, 60)
    segments = _segments(state)
    assert len(segments) >= 2 and segments[0] == "audit.000001.jsonl"
    report = verify(state)
    assert report.ok and report.records == 120 and report.segments == len(segments) + 1
    chain = [json.loads(x) for name in [*segments, "audit.jsonl"] for x in _read(state, name)]
    assert [r["seq"] for r in chain] == list(range(1, 121))
    assert all(b["prev"] == a["hash"] for a, b in zip(chain, chain[1:], strict=False))
    for name in segments:
        assert os.path.getsize(os.path.join(state, name)) <= LIMIT
    assert [r["seq"] for r in tail(state, 3)] == [118, 119, 120]
    assert len(tail(state, 500)) == 120  # tail reads back across segments


def test_pruning_is_recorded_and_keeps_the_total_bounded(state):
    keep = 2
    _fill(state, 150, keep=keep)
    segments = _segments(state)
    assert len(segments) == keep and segments[0] != "audit.000001.jsonl"
    total = sum(os.path.getsize(os.path.join(state, n)) for n in _names(state))
    assert total < (keep + 1) * LIMIT
    pruned = [r for r in records(state) if r["kind"] == "pruned"]
    assert pruned and all(r["segment"].startswith("audit.0") for r in pruned)
    report = verify(state)
    assert report.ok, report
    assert report.pruned >= 1  # pruned records seen, one naming the segment before the oldest


def test_deleting_the_oldest_segment_without_a_pruned_record_is_reported(state):
    _fill(state, 60)
    oldest = _segments(state)[0]
    os.unlink(os.path.join(state, oldest))
    report = verify(state)
    assert not report.ok
    assert (report.segment, report.first_bad_line) == (_segments(state)[0], 1)
    assert "no pruned record" in report.problem


def test_deleting_a_middle_segment_is_reported_at_the_next_one(state):
    _fill(state, 80)
    segments = _segments(state)
    assert len(segments) >= 3
    os.unlink(os.path.join(state, segments[1]))
    report = verify(state)
    assert not report.ok
    assert (report.segment, report.first_bad_line) == (segments[2], 1)
    assert "segment before this one was deleted" in report.problem


@pytest.mark.parametrize("change", ["edit", "delete", "reorder"])
def test_changes_in_a_closed_segment_are_reported_with_segment_and_line(state, change):
    _fill(state, 60)
    name = _segments(state)[1]
    lines = _read(state, name)
    if change == "edit":
        lines[4] = lines[4].replace(b'"outcome":"ok"', b'"outcome":"no"')
        lines[4] = lines[4].replace(b'"command":"test"', b'"command":"tset"')
    elif change == "delete":
        del lines[4]
    else:
        lines[4], lines[5] = lines[5], lines[4]
    _write(state, name, lines)
    report = verify(state)
    assert not report.ok
    assert (report.segment, report.first_bad_line) == (name, 5)


def test_truncating_the_live_segment_is_reported_and_refused(state):
    sink = _fill(state, 60)
    lines = _read(state, "audit.jsonl")
    _write(state, "audit.jsonl", lines[:-3])
    report = verify(state)
    assert not report.ok and report.segment == "audit.jsonl"
    assert report.first_bad_line == len(lines) - 2 and "truncated" in report.problem
    with pytest.raises(AuditUnavailable):
        sink.write({"kind": "intent"})


def test_deleting_the_live_segment_is_reported(state):
    _fill(state, 60)
    os.unlink(os.path.join(state, "audit.jsonl"))
    report = verify(state)
    assert not report.ok and "truncated" in report.problem


def test_a_crash_right_after_the_rename_continues_the_chain(state):
    sink = _fill(state, 30)
    sink.close()
    number = len(_segments(state)) + 1
    os.rename(os.path.join(state, "audit.jsonl"), os.path.join(state, f"audit.{number:06d}.jsonl"))
    assert verify(state).ok  # no live file yet: the chain simply ends in the closed one
    _fill(state, 1)
    first = json.loads(_read(state, "audit.jsonl")[0])
    last = json.loads(_read(state, f"audit.{number:06d}.jsonl")[-1])
    assert (first["seq"], first["prev"]) == (last["seq"] + 1, last["hash"])
    assert verify(state).ok


def test_a_crash_between_the_pruned_record_and_the_unlink_is_not_tampering(state, monkeypatch):
    sink = _fill(state, 100, keep=2)
    real_unlink = os.unlink
    failed = []

    def unlink_once(name, *a, **kw):
        if not failed and str(name).startswith("audit.0"):
            failed.append(name)
            raise OSError(5, "EIO")
        return real_unlink(name, *a, **kw)

    monkeypatch.setattr(audit.os, "unlink", unlink_once)
    with pytest.raises(AuditError):
        _fill(state, 40, keep=2, sink=sink)
    monkeypatch.setattr(audit.os, "unlink", real_unlink)
    assert verify(state).ok  # a pruned record whose segment is still there
    _fill(state, 40, keep=2)
    assert len(_segments(state)) == 2
    assert verify(state).ok


def test_verify_since_checks_only_recent_segments_and_says_so(state):
    _fill(state, 60)
    segments = _segments(state)
    middle = json.loads(_read(state, segments[1])[-1])["ts"]
    os.unlink(os.path.join(state, segments[0]))
    assert not verify(state).ok
    report = verify(state, since=middle)
    assert report.ok and report.checked_from == segments[1]
    assert report.records < 120


def test_parse_since_accepts_ages_and_iso_times():
    from datetime import UTC, datetime

    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert audit.parse_since("2h", now) == "2026-01-31T10:00:00.000Z"
    assert audit.parse_since("2026-01-30", now) == "2026-01-30T00:00:00.000Z"
    assert audit.parse_since("2026-01-30T09:30+01:00", now) == "2026-01-30T08:30:00.000Z"
    with pytest.raises(ValueError):
        audit.parse_since("yesterday", now)


# -- issue 18, finding 2: big records and torn ends never wedge the writer ---------------------


def test_a_record_over_a_mebibyte_does_not_wedge_the_next_writer(state):
    """Regression (issue 18 finding 2): a 3.3 MB last record made every later write fail
    ('the end of the audit log is unreadable') while verify said ok."""
    big = JsonlSink(state)
    big.write({"kind": "intent", "command": "scanner", "params": {"v": ["x" * 14] * 220000}})
    big.close()
    JsonlSink(state).write({"kind": "intent", "command": "next"})
    report = verify(state)
    assert report.ok and report.records == 2


def test_a_torn_huge_last_line_is_recovered_by_a_record(state):
    _fill(state, 2)
    with open(os.path.join(state, "audit.jsonl"), "ab") as fh:
        fh.write(b'{"kind":"intent","params":"' + b"y" * (3 << 20))  # killed mid-write
    assert not verify(state).ok  # a torn end is reported until a writer recovers it
    JsonlSink(state, max_bytes=LIMIT).write({"kind": "intent", "command": "after"})
    last = tail(state, 1)[0]
    assert last["command"] == "after" and last["recovered"] is True
    assert verify(state).ok


def test_intent_params_are_capped_with_a_count_and_a_keyed_hash(state):
    """Regression (issue 18 finding 2): 220k scanner filter values wrote a 3.3 MB intent."""
    auditor = Auditor([JsonlSink(state)], state)
    values = [f"v{i}" for i in range(220000)]
    auditor.intent("scanner run", {"filters": values, "note": "n" * 5000, "symbol": "AAPL"})
    auditor.intent("scanner run", {"filters": values, "note": "n" * 5000, "symbol": "AAPL"})
    first, second = tail(state, 2)
    size = os.path.getsize(os.path.join(state, "audit.jsonl"))
    assert size < 12000  # two records, not 2 x 3 MB
    filters = first["params"]["filters"]
    assert filters["truncated"] is True and filters["count"] == 220000
    assert filters["head"] == values[: audit.PARAM_MAX_ITEMS]
    assert filters["hash"].startswith("hmac-")
    assert filters["hash"] == second["params"]["filters"]["hash"]  # stable, comparable
    note = first["params"]["note"]
    assert note["chars"] == 5000 and len(note["head"]) == audit.PARAM_MAX_CHARS
    assert first["params"]["symbol"] == "AAPL"  # small values stay as they are
    many = {f"k{i}": "v" * 200 for i in range(40)}
    auditor.intent("wide", many)
    params = tail(state, 1)[0]["params"]
    assert len(audit.canonical(params)) <= audit.PARAMS_MAX_BYTES
    assert verify(state).ok


# -- issue 18, finding 6: deletion and rollback are noticed ------------------------------------


def test_deleted_log_and_checkpoint_are_refused_until_acknowledged(state):
    """Regression (issue 18 finding 6): deleting log + checkpoint gave 'ok: 0 records' and
    a fresh log started silently although the key existed."""
    sink = _fill(state, 3, sink=JsonlSink(state))
    for name in ("audit.jsonl", "audit.checkpoint"):
        os.unlink(os.path.join(state, name))
    report = verify(state)
    assert not report.ok and "missing" in report.problem
    sink.close()
    with pytest.raises(AuditUnavailable) as info:
        Auditor([JsonlSink(state)], state).intent("news", {})
    assert info.value.exit_code == 7 and "acknowledge" in info.value.hint
    assert "missing" in info.value.message
    ack = JsonlSink(state).acknowledge()
    assert ack["acknowledged"] == "log-missing" and ack["sealed_seq"] == 5
    assert JsonlSink(state).acknowledge() is None  # nothing left to acknowledge
    Auditor([JsonlSink(state)], state).intent("news", {})
    report = verify(state)
    assert report.ok and report.records == 2
    assert report.acknowledged == ["seq 1: log-missing"]


def test_rollback_to_an_old_checkpoint_is_refused_until_acknowledged(state, tmp_path):
    """Regression (issue 18 finding 6): restoring an old checkpoint and truncating the log
    to it passed verify."""
    _fill(state, 2, sink=JsonlSink(state)).close()
    saved = {
        n: open(os.path.join(state, n), "rb").read() for n in ("audit.jsonl", "audit.checkpoint")
    }
    _fill(state, 3, sink=JsonlSink(state)).close()
    for name, data in saved.items():
        with open(os.path.join(state, name), "wb") as fh:
            fh.write(data)
    report = verify(state)
    assert not report.ok and "rolled back" in report.problem
    assert report.segment == "audit.jsonl" and report.first_bad_line == 5
    with pytest.raises(AuditUnavailable, match="sealed high-water mark"):
        JsonlSink(state).write({"kind": "intent"})
    ack = JsonlSink(state).acknowledge()
    assert (ack["acknowledged"], ack["last_seq"], ack["sealed_seq"]) == ("rolled-back", 4, 10)
    JsonlSink(state).write({"kind": "intent"})
    assert verify(state).ok


def test_an_edited_seal_is_reported_and_refused(state):
    _fill(state, 2)
    path = os.path.join(state, "audit.key")
    with open(path, "r+b") as fh:
        fh.seek(audit._SEAL_OFFSET + 10)  # a hex digit of the sealed hash
        digit = fh.read(1)
        fh.seek(audit._SEAL_OFFSET + 10)
        fh.write(b"a" if digit != b"a" else b"b")
    assert "seal" in verify(state).problem
    with pytest.raises(AuditUnavailable):
        JsonlSink(state).write({"kind": "intent"})


def test_a_key_file_from_before_seals_gets_one(state):
    _fill(state, 2)
    path = os.path.join(state, "audit.key")
    with open(path, "r+b") as fh:
        fh.truncate(65)  # key line only, as ibgw wrote it before seals
    assert verify(state).ok
    _fill(state, 1)
    with open(path, "rb") as fh:
        assert b'"seal":6' in fh.read()
    shutil.copy(path, path + ".bak")  # the key line itself never changes
    with open(path, "rb") as a, open(path + ".bak", "rb") as b:
        assert a.readline() == b.readline()


def test_the_limits_come_from_the_config_file_and_are_checked(tmp_path):
    from ibgw.config import ConfigError, load_config

    path = tmp_path / "config.toml"
    path.write_text("audit_max_bytes = 20000\naudit_keep = 5\n")
    cfg = load_config({}, {"IBGW_CONFIG": str(path)})
    assert (cfg.audit_max_bytes, cfg.audit_keep) == (20000, 5)
    assert cfg.public_dict()["audit_keep"] == {"value": 5, "source": "file"}
    path.write_text("audit_max_bytes = 100\n")
    with pytest.raises(ConfigError, match="audit_max_bytes"):
        load_config({}, {"IBGW_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="IBGW_AUDIT_KEEP"):
        path.write_text("")
        load_config({}, {"IBGW_CONFIG": str(path), "IBGW_AUDIT_KEEP": "x"})
