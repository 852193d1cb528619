"""A small JSON disk cache in the state directory (contract definitions, scanner
parameters, transaction reports, probe results). Values are ibgw's own parsed
records, never raw gateway answers, and pass redaction before they are written."""

from __future__ import annotations

import hashlib
import json
import os
import time


class DiskCache:
    def __init__(self, directory: str):
        self.directory = directory

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def get(self, key: str, max_age: float | None = None):
        """``(value, age_seconds)`` or ``None`` when missing, unreadable or too old."""
        try:
            with open(self._path(key), encoding="utf-8") as fh:
                entry = json.load(fh)
            age = time.time() - float(entry["t"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if max_age is not None and age > max_age:
            return None
        return entry.get("v"), max(age, 0.0)

    def set(self, key: str, value) -> None:
        from . import redact

        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        path = self._path(key)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"t": time.time(), "v": redact.data(value)}, fh)
        os.replace(tmp, path)


def age_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


# the pacer's refusal ("paced") or IBKR's 429: either way no new call may be made now
WINDOW_REASONS = ("paced", "rate-limited")


def once_per_window(ctx, key: str, window: float, fetch, *, rule: str, missing: str):
    """A report IBKR allows once per ``window`` seconds (``/pa/*``: 15 minutes).

    Within the window the cached report is returned, with a note saying how old it is;
    otherwise ``fetch()`` makes the call and its JSON-able report is cached. When the
    window forbids a new call (the pacer, or a 429 from IBKR), the last cached report
    is returned with a note, and with none cached the read is ``unavailable``.
    ``rule`` is the user's words for the limit ("IBKR allows one performance report
    per 15 minutes"); ``missing`` names what is not cached ("for 1M")."""
    from .errors import Unavailable

    cached = ctx.cache.get(key, window)
    if cached is not None:
        report, age = cached
        ctx.note(f"cached {age_text(age)} ago: {rule}")
        return report
    try:
        report = fetch()
    except Unavailable as exc:
        if exc.reason not in WINDOW_REASONS:
            raise
        stale = ctx.cache.get(key)
        if stale is None:
            raise Unavailable(
                f"{rule}, and none is cached {missing}", reason=exc.reason, hint=exc.hint
            ) from None
        report, age = stale
        ctx.note(f"{rule}: showing the report cached {age_text(age)} ago")
        return report
    ctx.cache.set(key, report)
    return report
