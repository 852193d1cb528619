"""Parsing the gateway's loosely typed values (shared by plugins).

Snapshot fields arrive as strings: ``"1,300"``, ``"24.6%"``, ``"C168.42"`` (prior
close), ``"H12.5"`` (halted), ``"1.2M"``. Conids and strikes arrive as strings or
numbers depending on the endpoint and build.
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9}


def number(value) -> float | None:
    """A float from a gateway value, or ``None`` when absent or not a number."""
    if value.__class__ is float:  # the common case first
        return value if value - value == 0.0 else None  # inf - inf and nan - nan are nan
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the float range
            return None
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip().replace(",", "")
    if text[:1] in ("C", "H"):
        text = text[1:]
    scale = 1.0
    if text.endswith("%"):
        text = text[:-1]
    elif text[-1:].upper() in _SUFFIX:
        scale = _SUFFIX[text[-1].upper()]
        text = text[:-1]
    if not _NUMBER.fullmatch(text):
        return None
    result = float(text) * scale
    return result if math.isfinite(result) else None


def integer(value) -> int | None:
    n = number(value)
    return None if n is None else int(round(n))


def price_flag(value) -> str | None:
    """``"prior-close"`` or ``"halted"`` for ``C``/``H`` prefixed last prices."""
    if isinstance(value, str) and value[:1] in ("C", "H"):
        return "prior-close" if value[0] == "C" else "halted"
    return None
