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
