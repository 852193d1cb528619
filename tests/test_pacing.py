"""The pacer keeps IBKR's limits across threads and processes, never sleeps past a
deadline, and survives a broken state file."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
import time

import pytest

from ibgw.declarations import PACING_CLASSES
from ibgw.errors import Unavailable
from ibgw.pacing import STATE_FILE, Pacer

MARGIN = 1.03
N, PER = PACING_CLASSES["global"]


def _max_in_window(slots: list[float], window: float) -> int:
    slots = sorted(slots)
    best = 0
    j = 0
    for i, t in enumerate(slots):
        while slots[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _assert_paced(slots: list[float], n: int = N, per: float = PER, margin: float = MARGIN):
    slots = sorted(slots)
    for i in range(len(slots) - n):
        assert slots[i + n] - slots[i] >= per * margin - 1e-6, (i, slots[i + n] - slots[i])
    # stated the other way: never n+1 slots in any window of `per` seconds
    assert _max_in_window(slots, per) <= n


def test_single_process_sliding_window(tmp_path):
    pacer = Pacer(str(tmp_path / "state"), margin=MARGIN)
    start = time.time()
    slots = [pacer.acquire([], time.monotonic() + 30) for _ in range(50)]
    elapsed = time.time() - start
    _assert_paced(slots)
    assert slots == sorted(slots)
    # 50 calls at 10 per 1.03 s: four full windows of waiting, not more
    assert 4 * PER * MARGIN - 0.1 <= elapsed < 4 * PER * MARGIN + 2.0
    # acquire returns once the slot has come
    assert time.time() >= slots[-1] - 0.01


def _worker(state_dir: str, count: int, queue) -> None:
    pacer = Pacer(state_dir, margin=MARGIN)
    out = []
    for _ in range(count):
        slot = pacer.acquire([], time.monotonic() + 60)
        out.append((slot, time.time()))
    queue.put(out)


def test_two_processes_share_the_budget(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    state = str(tmp_path / "state")
    procs = [ctx.Process(target=_worker, args=(state, 30, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    slots = [s for r in results for s, _ in r]
    sent = [t for r in results for _, t in r]
    assert len(slots) == 60
    _assert_paced(slots)
    # the times the callers actually went ahead obey the plain limit too
    assert _max_in_window(sent, PER) <= N


def test_threads_share_the_budget_and_overlap(tmp_path):
    pacer = Pacer(str(tmp_path / "state"), margin=MARGIN)
    slots: list[float] = []
    lock = threading.Lock()
    in_flight = {"now": 0, "max": 0}

    def run():
        for _ in range(8):
            slot = pacer.acquire([], time.monotonic() + 30)
            with lock:
                slots.append(slot)
                in_flight["now"] += 1
                in_flight["max"] = max(in_flight["max"], in_flight["now"])
            time.sleep(0.05)  # a request in flight
            with lock:
                in_flight["now"] -= 1

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(slots) == 32
    assert len(set(slots)) == 32
    _assert_paced(slots)
    assert in_flight["max"] > 1  # several requests in flight at once


def test_long_window_refuses_at_once_without_reserving(tmp_path):
    pacer = Pacer(str(tmp_path / "state"))
    first = pacer.acquire(["scanner-params"], time.monotonic() + 5)
    assert first <= time.time()
    start = time.monotonic()
    with pytest.raises(Unavailable) as info:
        pacer.acquire(["scanner-params"], time.monotonic() + 1.0)
    assert time.monotonic() - start < 0.5
    err = info.value
    assert err.reason == "paced" and err.state == "unavailable" and err.exit_code == 4
    assert "IBKR allows 1 call per 900 s" in err.hint
    assert "try again in" in err.hint
    wait = int(err.hint.rsplit("try again in", 1)[1].split()[0])
    assert 900 <= wait <= 930
    state = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    assert state["slots"]["scanner-params"] == [first]
    assert state["slots"]["global"] == [first]  # the refused call reserved nothing


def test_deadline_shorter_than_the_wait(tmp_path):
    pacer = Pacer(str(tmp_path / "state"))
    for _ in range(N):
        pacer.acquire([], time.monotonic() + 5)
    with pytest.raises(Unavailable) as info:
        pacer.acquire([], time.monotonic() + 0.3)
    assert "10 calls per 1 s" in info.value.hint
    start = time.monotonic()
    slot = pacer.acquire([], time.monotonic() + 5)  # waits for the window instead
    assert 0.3 < time.monotonic() - start < 2.0
    assert time.time() >= slot - 0.01


def test_several_classes_at_once(tmp_path):
    pacer = Pacer(str(tmp_path / "state"))
    a = pacer.acquire(["tickle"], time.monotonic() + 5)
    b = pacer.acquire(["global"], time.monotonic() + 5)  # global only: no wait
    c = pacer.acquire(["tickle", "fyi"], time.monotonic() + 5)  # tickle: 1 per s
    assert b - a < 0.2
    assert c - a >= 1.0 * 1.03 - 1e-6
    with pytest.raises(ValueError):
        pacer.acquire(["no-such-class"], time.monotonic() + 1)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"not json",
        b"[]",
        b'{"slots": 5}',
        b'{"slots": {"global": "x"}}',
        b'{"slots": {"global": [null, "1", 1e999, -1]}}',
        b"\xff\xfe\x00",
        b'{"slots": {"unknown": [1, 2]}}',
        b" " * (2 << 20),  # larger than any state of ours
    ],
)
def test_corrupt_state_recovers(tmp_path, content):
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_bytes(content)
    pacer = Pacer(str(state))
    slot = pacer.acquire(["tickle"], time.monotonic() + 5)
    saved = json.loads((state / STATE_FILE).read_text())
    assert saved["slots"]["tickle"] == [slot]


def test_state_rewritten_in_place_stays_exact_json_when_it_shrinks(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    stale = time.time() - 100  # outside every short window
    (state / STATE_FILE).write_text(json.dumps({"slots": {"global": [stale] * 200}}))
    inode = os.stat(state / STATE_FILE).st_ino
    slot = Pacer(str(state)).acquire([], time.monotonic() + 5)
    raw = (state / STATE_FILE).read_bytes()
    assert json.loads(raw) == {"version": 1, "slots": {"global": [slot]}}
    assert raw == raw.strip()  # shrunk to the new length, no padding left behind
    assert os.stat(state / STATE_FILE).st_ino == inode  # rewritten in place, not replaced


def test_far_future_entries_are_dropped(tmp_path):
    # A wall-clock step backwards (or a corrupt file) must not block calls for ever.
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_text(json.dumps({"slots": {"global": [time.time() + 10_000] * 20}}))
    pacer = Pacer(str(state))
    start = time.monotonic()
    pacer.acquire([], time.monotonic() + 2)
    assert time.monotonic() - start < 0.5


def test_state_files_are_private(tmp_path):
    state = tmp_path / "state"
    Pacer(str(state)).acquire([], time.monotonic() + 5)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / STATE_FILE).st_mode) == 0o600
    assert os.listdir(state) == [STATE_FILE]  # no lock or temporary files left around


def test_unusable_state_dir_paces_in_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    pacer = Pacer(str(blocker / "state"))  # a path below a regular file
    a = pacer.acquire(["tickle"], time.monotonic() + 5)
    assert pacer.shared is False
    with pytest.raises(Unavailable):
        pacer.acquire(["tickle"], time.monotonic() + 0.2)
    b = pacer.acquire(["tickle"], time.monotonic() + 5)
    assert b - a >= 1.03 - 1e-6


def test_margin_must_not_shrink_limits(tmp_path):
    with pytest.raises(ValueError):
        Pacer(str(tmp_path), margin=0.9)


def test_late_wakeup_records_the_real_send_time(tmp_path, monkeypatch):
    """A caller that oversleeps its slot (a busy machine) must not send closer to the
    next callers than the limit allows: the pacer re-checks and records the real time."""
    import time as _time

    import ibgw.pacing as pacing

    real_sleep = _time.sleep
    monkeypatch.setattr(pacing.time, "sleep", lambda d: real_sleep(d + 0.04))
    pacer = pacing.Pacer(str(tmp_path))
    sends = []
    for _ in range(25):
        returned = pacer.acquire(["snapshot"], _time.monotonic() + 30)
        sends.append(_time.time())
        assert sends[-1] - returned <= pacing.LATE + 0.02
    window = 1.0
    for i, t in enumerate(sends):
        assert sum(1 for u in sends[i:] if u - t < window) <= 10
