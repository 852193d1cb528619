"""IBKR's published pacing limits, kept across threads and processes.

A :class:`Pacer` reserves a send slot for each call. For a class ``(n, per)`` from
:data:`ibgw.declarations.PACING_CLASSES`, any window of ``per * margin`` seconds
holds at most ``n`` reserved slots of that class; the ``global`` class applies to
every call as well. Slots live in ``<state_dir>/pacing.json`` as wall-clock times
(``time.time()``), read and rewritten in place under an exclusive ``flock`` on that
file, so the CLI, the MCP server and any other ibgw process on the machine share one
budget. The lock is held only to read, decide and write a few hundred bytes (one
``pwrite``, padded with spaces to the old length, so the file is valid JSON after
every system call; no rename, no fsync: the state only matters while processes run);
the caller sleeps until its slot after releasing it, so several calls can be in
flight at once while the rate never exceeds the limit.

A slot later than the caller's deadline is not reserved: :meth:`Pacer.acquire`
raises :class:`ibgw.errors.Unavailable` (reason ``paced``) at once, naming the
limit and how long to wait. A missing or corrupt state file starts fresh; if the
state dir cannot be used at all, the pacer keeps slots in this process's memory
(``Pacer.shared`` is then false) rather than failing the call.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Sequence

from .declarations import PACING_CLASSES
from .errors import Unavailable

STATE_FILE = "pacing.json"
_EPS = 1e-6
LATE = 0.005  # a caller that wakes later than this past its slot re-checks the windows


def _read_all(fd: int, limit: int = 1 << 20) -> bytes:
    """The state file's bytes; more than ``limit`` of them cannot be ours: corrupt."""
    chunks, pos = [], 0
    while pos <= limit:
        chunk = os.pread(fd, 65536, pos)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        pos += len(chunk)
    raise ValueError("pacing state too large")


def _window_ok(slots: list[float], t: float, n: int, window: float) -> bool:
    """Would inserting ``t`` into the sorted ``slots`` keep every run of n+1
    consecutive slots that includes ``t`` at least ``window`` long?"""
    merged = sorted([*slots, t])
    k = merged.index(t)
    last = len(merged) - 1
    for i in range(max(0, k - n), min(k, last - n) + 1):
        if merged[i + n] - merged[i] < window - _EPS:
            return False
    return True


def _earliest(slots: list[float], now: float, n: int, window: float) -> float:
    """The earliest time >= now at which one more slot fits this class alone."""
    for t in sorted({now, *(s + window for s in slots if s + window > now)}):
        if _window_ok(slots, t, n, window):
            return t
    return now  # unreachable: after the last slot + window there is always room


class Pacer:
    """Cross-process sliding-window pacer. Thread-safe."""

    def __init__(self, state_dir: str, margin: float = 1.03):
        if margin < 1.0:
            raise ValueError("margin must be >= 1.0")
        self.state_dir = os.fspath(state_dir)
        self.margin = float(margin)
        self._lock = threading.Lock()
        self._longest = max(per for _, per in PACING_CLASSES.values()) * self.margin
        self._memory: dict[str, list[float]] = {}
        #: False while the state dir cannot be used and pacing is per-process only.
        self.shared = True

    # -- state -----------------------------------------------------------------
    def _ensure_dir(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self):
        """Hold the thread lock and, when the state dir is usable, the file lock on the
        state file. Yields its descriptor (``None``: this process's memory is used)."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        path = os.path.join(self.state_dir, STATE_FILE)
        with self._lock:
            try:
                try:
                    fd = os.open(path, flags, 0o600)
                except FileNotFoundError:  # the state dir itself is missing
                    self._ensure_dir()
                    fd = os.open(path, flags, 0o600)
            except OSError:
                self.shared = False
                yield None
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self.shared = True
                yield fd
            finally:
                os.close(fd)  # closing releases the flock

    def _load(self, now: float, fd: int | None) -> dict[str, list[float]]:
        slots = self._memory
        if fd is not None:
            try:
                slots = json.loads(_read_all(fd))["slots"]
            except (OSError, ValueError, KeyError, TypeError):
                slots = {}  # missing or corrupt: start fresh
        if not isinstance(slots, dict):
            slots = {}
        state: dict[str, list[float]] = {}
        for name, times in slots.items():
            if name not in PACING_CLASSES or not isinstance(times, list):
                continue
            window = PACING_CLASSES[name][1] * self.margin
            keep = [
                float(t)
                for t in times
                if isinstance(t, int | float)
                and math.isfinite(t)
                # older than the window: irrelevant. Further ahead than the longest
                # window: a clock step or a corrupt entry, never a real reservation.
                and now - window < t <= now + self._longest
            ]
            if keep:
                state[name] = sorted(keep)
        return state

    def _save(self, state: dict[str, list[float]], fd: int | None) -> None:
        self._memory = state
        if fd is None:
            return
        data = json.dumps({"version": 1, "slots": state}, separators=(",", ":")).encode()
        try:
            old = os.fstat(fd).st_size
            # Padded to the old length: valid JSON whatever happens after this call.
            if os.pwrite(fd, data.ljust(old), 0) < max(len(data), old):
                raise OSError("short write")
            if old > len(data):
                os.ftruncate(fd, len(data))
        except OSError:
            # Disk full or the dir turned read-only: this process keeps pacing
            # from memory; the next call tries the file again.
            pass

    # -- public ----------------------------------------------------------------
    def acquire(self, classes: Sequence[str], deadline: float) -> float:
        """Reserve the earliest slot that satisfies every class in ``classes`` and
        ``global``, sleep until it, and return its wall-clock time.

        ``deadline`` is a ``time.monotonic()`` instant. If the slot would fall after
        it, nothing is reserved and :class:`Unavailable` (reason ``paced``) is
        raised without sleeping.
        """
        names = ["global"] + [c for c in dict.fromkeys(classes) if c != "global"]
        for name in names:
            if name not in PACING_CLASSES:
                raise ValueError(f"unknown pacing class {name!r}")
        limits = {
            name: (PACING_CLASSES[name][0], PACING_CLASSES[name][1] * self.margin) for name in names
        }
        wall_deadline = time.time() + (deadline - time.monotonic())
        slot = None
        while True:
            with self._locked() as fd:
                now = time.time()
                state = self._load(now, fd)
                if slot is not None:
                    # Woke late: the reserved slot no longer tells the truth about when
                    # this call goes out. Give it back, and record the real send time if
                    # the windows allow it; otherwise reserve again.
                    for name in names:
                        with contextlib.suppress(ValueError):
                            state.get(name, []).remove(slot)
                    if all(_window_ok(state.get(n, []), now, *limits[n]) for n in names):
                        self._insert(state, names, now)
                        self._save(state, fd)
                        return now
                slot = self._slot(state, limits, now)
                if slot > wall_deadline + _EPS:
                    self._save(state, fd)
                    binding = max(names, key=lambda c: _earliest(state.get(c, []), now, *limits[c]))
                    n, per = PACING_CLASSES[binding]
                    wait = max(1, math.ceil(slot - now))
                    raise Unavailable(
                        f"pacing: no {binding!r} slot before the deadline",
                        reason="paced",
                        hint=f"IBKR allows {n} call{'s' if n != 1 else ''} per {per:g} s for this "
                        f"endpoint; try again in {wait} s",
                    )
                self._insert(state, names, slot)
                self._save(state, fd)
            delay = slot - time.time()
            if delay > 0:
                time.sleep(delay)
            if time.time() - slot <= LATE:
                return slot

    @staticmethod
    def _insert(state: dict[str, list[float]], names, t: float) -> None:
        for name in names:
            state.setdefault(name, []).append(t)
            state[name].sort()

    @staticmethod
    def _slot(
        state: dict[str, list[float]], limits: dict[str, tuple[int, float]], now: float
    ) -> float:
        candidates = {now}
        for name, (_, window) in limits.items():
            candidates.update(s + window for s in state.get(name, []) if s + window > now)
        for t in sorted(candidates):
            if all(_window_ok(state.get(name, []), t, n, w) for name, (n, w) in limits.items()):
                return t
        return now  # unreachable: after every slot + its window there is room
