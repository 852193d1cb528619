"""Option-contract vocabulary shared by plugins: IBKR's ``MMMYY`` months, rights,
strikes as they travel in queries, and the snapshot poll interval.

Light on purpose (stdlib only at module top): plugin fetch modules import it.
"""

from __future__ import annotations

import re

from .errors import UsageError
from .parse import number

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTH_RE = re.compile(r"([A-Z]{3})([0-9]{2})")
FAKE_POLL_INTERVAL = 0.05  # the fake backend fills a snapshot on the second call


def parse_month(value) -> str:
    """``APR26`` from ``apr26``; a usage error for anything that is not MMMYY."""
    text = str(value or "").strip().upper()
    m = MONTH_RE.fullmatch(text)
    if m is None or m.group(1) not in MONTHS:
        raise UsageError("month: expected MMMYY such as APR26", reason="invalid-month")
    return text


def month_key(month: str) -> tuple[int, int]:
    """(year, month) for sorting ``MMMYY`` months; unknown months sort last."""
    m = MONTH_RE.fullmatch(month)
    if m is None or m.group(1) not in MONTHS:
        return (9999, 99)
    return 2000 + int(m.group(2)), MONTHS.index(m.group(1)) + 1


def expiry_month(month: str) -> str | None:
    """``2026-04`` for ``APR26``."""
    year, mon = month_key(month)
    return None if year == 9999 else f"{year:04d}-{mon:02d}"


def parse_right(value) -> list[str]:
    """``["C", "P"]`` for no value, else the one right asked for (C/CALL, P/PUT)."""
    if value is None:
        return ["C", "P"]
    text = str(value).strip().upper()
    if text in ("C", "CALL"):
        return ["C"]
    if text in ("P", "PUT"):
        return ["P"]
    raise UsageError("right: expected C or P", reason="invalid-right")


def strike_text(strike: float) -> str:
    """How a strike travels in a query: ``500``, ``142.5``."""
    if float(strike).is_integer():
        return str(int(strike))
    return f"{strike:.4f}".rstrip("0").rstrip(".")


def strike_list(values) -> list[float]:
    """Sorted positive strikes from a strikes answer (numbers or strings)."""
    out = set()
    for v in values if isinstance(values, list) else []:
        n = number(v)
        if n is not None and n > 0:
            out.add(round(n, 4))
    return sorted(out)


def text_value(value) -> str | None:
    """A non-empty string from a gateway value that may be a string or a number."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def join_limited(values, limit: int = 12) -> str:
    """``a, b, c, ... (40 in all)`` for error messages listing what is available."""
    values = list(values)
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def poll_interval(ctx, live: float) -> float:
    """Seconds between snapshot polls: ``live`` on a gateway, near zero on the
    in-process fake (which fills a snapshot on its second call)."""
    return FAKE_POLL_INTERVAL if getattr(ctx.config, "backend", "live") == "fake" else live


def poll_snapshot(
    ctx,
    conids,
    fields: str,
    settled,
    *,
    interval: float,
    polls: int | None = None,
    deadline: float | None = None,
    keep=(),
) -> dict[int, dict]:
    """Field values per conid from ``/iserver/marketdata/snapshot``, past IBKR's
    pre-flight: the first call for a conid often answers only some fields (or none), so
    the conids not yet ``settled(values)`` are asked again, ``interval`` seconds apart,
    until every one is settled, ``polls`` calls were made, or the next call would pass
    ``deadline`` (``time.monotonic()``). Values are kept by numeric field id (and the
    keys in ``keep``); an empty value never overwrites one that arrived. ``ctx.call``
    paces every call. A non-list answer is ``malformed-response``."""
    import time

    from .endpoints import SNAPSHOT
    from .errors import Unavailable
    from .parse import integer

    values: dict[int, dict] = {c: {} for c in conids}
    pending = list(values)
    calls = 0
    while pending:
        if calls:
            if polls is not None and calls >= polls:
                break
            if deadline is not None and time.monotonic() + interval > deadline:
                break
            time.sleep(interval)
        calls += 1
        data = ctx.call(SNAPSHOT, query={"conids": ",".join(map(str, pending)), "fields": fields})
        if data is not None and not isinstance(data, list):
            raise Unavailable(
                "unexpected answer from /iserver/marketdata/snapshot", reason="malformed-response"
            )
        for entry in data or []:
            if not isinstance(entry, dict):
                continue
            conid = integer(entry.get("conid"))
            if conid not in values:
                continue
            got = values[conid]
            for key, value in entry.items():
                if isinstance(key, str) and (key.isdigit() or key in keep):
                    if value not in (None, ""):
                        got[key] = value
        pending = [c for c in pending if not settled(values[c])]
    return values
