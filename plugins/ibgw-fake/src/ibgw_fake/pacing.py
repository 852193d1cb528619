"""IBKR's published pacing limits, enforced by the fake gateway server.

Reference §13: every client of a Client Portal Gateway gets 10 requests per
second in all; some endpoints have their own, tighter limits. Beyond a limit
the gateway answers 429 Too Many Requests. Each limit is a sliding window
over the admitted requests (rejected ones do not count), kept per endpoint
path; ``/iserver/marketdata/history`` allows 5 requests in flight at once.
IBKR's 10-minute penalty box is not reproduced: the next request that fits
the windows is answered again.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable

from ibgw.declarations import PACING_CLASSES

_ONE_PER_5S = (1, 5.0)  # /iserver/trades, /iserver/orders, pnl/partitioned (reference §13)

# (methods or None for any, path regex, limit, window seconds); first match wins
RULES: list[tuple[frozenset | None, re.Pattern, int, float]] = [
    (frozenset({"GET"}), re.compile(r"/iserver/marketdata/snapshot"), *PACING_CLASSES["snapshot"]),
    (frozenset({"GET"}), re.compile(r"/iserver/scanner/params"), *PACING_CLASSES["scanner-params"]),
    (frozenset({"POST"}), re.compile(r"/iserver/scanner/run"), *PACING_CLASSES["scanner-run"]),
    (None, re.compile(r"/iserver/(account/)?(trades|orders)"), *_ONE_PER_5S),
    (None, re.compile(r"/iserver/account/pnl/partitioned"), *_ONE_PER_5S),
    (None, re.compile(r"/portfolio/(accounts|subaccounts)"), *PACING_CLASSES["portfolio-accounts"]),
    (None, re.compile(r"/pa/.+"), *PACING_CLASSES["pa"]),
    (None, re.compile(r"/fyi/.+"), *PACING_CLASSES["fyi"]),
    (None, re.compile(r"/tickle"), *PACING_CLASSES["tickle"]),
    (None, re.compile(r"/sso/validate"), *PACING_CLASSES["sso-validate"]),
]
CONCURRENT = [(re.compile(r"/iserver/marketdata/history|/hmds/history"), 5)]
GLOBAL = PACING_CLASSES["global"]


class Ticket:
    """An admitted request; call :meth:`release` when its answer is sent."""

    def __init__(self, release: Callable[[], None] | None = None):
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class ServerPacer:
    """Sliding-window limits: ``admit(method, path)`` returns a :class:`Ticket`
    or ``None`` when the request must be answered 429."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, global_limit=GLOBAL):
        self.clock = clock
        self.global_limit = global_limit
        self._lock = threading.Lock()
        self._windows: dict[str, deque] = {}
        self._inflight: dict[str, int] = {}

    def limits(self, method: str, path: str) -> list[tuple[str, int, float]]:
        """``(bucket, limit, window)`` for each sliding window the request counts in."""
        out = [("*", *self.global_limit)]
        for methods, pattern, limit, window in RULES:
            if (methods is None or method in methods) and pattern.fullmatch(path):
                out.append((path, limit, window))
                break
        return out

    def _fits(self, bucket: str, limit: int, window: float, now: float) -> bool:
        times = self._windows.get(bucket)
        if times is None:
            return True
        while times and times[0] <= now - window:
            times.popleft()
        return len(times) < limit

    def admit(self, method: str, path: str) -> Ticket | None:
        method = method.upper()
        limits = self.limits(method, path)
        concurrent = next((n for p, n in CONCURRENT if p.fullmatch(path)), None)
        with self._lock:
            now = self.clock()
            if not all(self._fits(b, lim, win, now) for b, lim, win in limits):
                return None
            if concurrent is not None and self._inflight.get(path, 0) >= concurrent:
                return None
            for bucket, _lim, _win in limits:
                self._windows.setdefault(bucket, deque()).append(now)
            if concurrent is None:
                return Ticket()
            self._inflight[path] = self._inflight.get(path, 0) + 1

        def release():
            with self._lock:
                self._inflight[path] -= 1

        return Ticket(release)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._inflight.clear()
