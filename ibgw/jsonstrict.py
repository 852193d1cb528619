"""Strict JSON for gateway answers.

``loads_strict(data)`` accepts exactly one RFC 8259 JSON text in UTF-8 and raises
:class:`MalformedJSON` with a short reason code for everything else: an empty body,
an HTML page, invalid UTF-8, ``NaN``/``Infinity`` (and numbers that overflow to
infinity), duplicate object keys at any level, nesting deeper than ``max_depth``,
unpaired surrogate escapes, over-long integers, trailing data. A leading UTF-8 BOM
is ignored (a body that is only a BOM is ``empty``).

The error never carries the body (``json.JSONDecodeError.doc`` holds all of it) and
is raised outside the ``except`` block, so no exception chain leads back to it.

Bounds (:class:`Limits`, per endpoint family in :data:`ANSWER_LIMITS`): besides the
depth, ``max_values`` caps the number of JSON values (array elements and object members,
counted from the commas and brackets outside strings) *before* anything is built, and
``max_items`` caps the length of any one array right after parsing, before the answer is
shaped; both raise :class:`MalformedJSON` with reason ``too-large``. ``deadline`` (a
``time.monotonic()`` instant) is checked between the stages (reason ``deadline``).
A 16 MiB ``[{},{},...]`` is rejected from its byte skeleton in milliseconds.

The depth check runs before parsing and without recursion: escaped quotes are
dropped, ``bytes.translate`` deletes every byte but quotes and brackets, string
contents are dropped with one regular expression, and matched innermost pairs are
peeled off one level per pass (``max_depth`` passes at most, each a C-speed
``re.sub`` over a skeleton that is usually a small fraction of the body).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass

__all__ = [
    "MalformedJSON",
    "loads_strict",
    "DEFAULT_MAX_DEPTH",
    "Limits",
    "ANSWER_LIMITS",
    "limits_for",
]

DEFAULT_MAX_DEPTH = 64

EMPTY = "empty"
HTML = "html"
UTF8 = "invalid-utf8"
NON_FINITE = "non-finite-number"
DUPLICATE = "duplicate-key"
TOO_DEEP = "too-deep"
TRAILING = "trailing-data"
SYNTAX = "syntax"
SURROGATE = "unpaired-surrogate"
NUMBER = "number-too-long"
TOO_LARGE = "too-large"
DEADLINE = "deadline"


@dataclass(frozen=True)
class Limits:
    """What one gateway answer may hold: records in any one array, JSON values in
    all, nesting depth."""

    max_items: int
    max_values: int
    max_depth: int = 32


# Per endpoint family (longest matching path-template prefix wins), from IBKR's
# documented maxima (shared/reference/cpapi-endpoints.md, OpenAPI v2.29.0) with ten
# times headroom or more; everything else gets DEFAULT_LIMITS. A legitimate answer
# near the 16 MiB body cap holds far fewer values than these (a position is ~40
# values in ~1 KiB), while 16 MiB of ``[{},{},...]`` is 5.6 million.
DEFAULT_LIMITS = Limits(max_items=10_000, max_values=500_000)
ANSWER_LIMITS: dict[str, Limits] = {
    # snapshot: at most 100 conids per request (reference: marketdata snapshot)
    "/iserver/marketdata/snapshot": Limits(max_items=1_000, max_values=200_000),
    # history: at most 1,000 bars per request
    "/iserver/marketdata/history": Limits(max_items=10_000, max_values=200_000),
    # positions: pages of 100
    "/portfolio/{accountId}/positions": Limits(max_items=1_000, max_values=200_000),
    # scanner: at most 50 results
    "/iserver/scanner/run": Limits(max_items=1_000, max_values=100_000),
    # secdef by conid: at most 200 conids per request
    "/trsrv/secdef": Limits(max_items=2_000, max_values=200_000),
    # trades of up to 7 days; transaction history
    "/iserver/account/trades": Limits(max_items=50_000, max_values=2_000_000),
    "/pa/transactions": Limits(max_items=50_000, max_values=2_000_000),
}


def limits_for(template: str) -> Limits:
    """The :class:`Limits` for the endpoint path template ``template``."""
    best, length = DEFAULT_LIMITS, -1
    for prefix, limits in ANSWER_LIMITS.items():
        if template.startswith(prefix) and len(prefix) > length:
            best, length = limits, len(prefix)
    return best


_BOM = b"\xef\xbb\xbf"
_WS = b" \t\r\n"
_STRING = re.compile(rb'"[^"]*"')
_NOT_SKELETON = bytes(b for b in range(256) if b not in b'[]{}",')
_PAIRS = re.compile(rb"\[\]|\{\}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# A float overflows to infinity only with an exponent (always right after a digit in
# JSON) or with more than 308 integer digits. ``_NUMBER_SKETCH`` keeps digits (as ``0``)
# and ``e``/``E`` (as ``e``) and blanks everything else, so a body whose sketch has no
# ``0e`` and no run of 309 ``0`` cannot overflow, and is parsed without calling
# ``_float`` for each of its numbers.
_NUMBER_SKETCH = bytes(
    ord("0") if b in b"0123456789" else ord("e") if b in b"eE" else ord(" ") for b in range(256)
)
_LONG_DIGITS = b"0" * 309


class MalformedJSON(ValueError):
    """The body is not acceptable JSON. ``reason`` is a stable code; ``str()`` is
    the code and, where useful, a byte offset (never any of the body)."""

    def __init__(self, reason: str, position: int | None = None):
        self.reason = reason
        self.position = position
        super().__init__(reason if position is None else f"{reason} at byte {position}")


class _Reject(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _constant(name: str):
    raise _Reject(NON_FINITE)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Reject(NON_FINITE)
    return value


def _pairs(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Reject(DUPLICATE)
    return result


def _skeleton(data: bytes) -> bytes:
    """The brackets and commas of ``data`` that are outside strings."""
    # Escaped backslashes, then escaped quotes (backslash runs pair up from the
    # left, so this order is exact for valid JSON); then only quotes, brackets and
    # commas are kept, and what lies between two quotes was inside a string.
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Dropping adjacent quotes first (an empty string, or the gap between two
    # strings) leaves only strings that hold brackets or commas for the regex.
    skeleton = data.translate(None, _NOT_SKELETON).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = _STRING.sub(b"", skeleton)
    return skeleton


def _count_values(skeleton: bytes) -> int:
    """An upper bound of the number of values below the top level: one per comma,
    one more per container that is not empty."""
    openers = skeleton.count(b"[") + skeleton.count(b"{")
    return skeleton.count(b",") + openers


def _too_deep(data: bytes, max_depth: int, skeleton: bytes | None = None) -> bool:
    if skeleton is None:
        skeleton = _skeleton(data)
    if b"," in skeleton:
        skeleton = skeleton.replace(b",", b"")
    if not skeleton:
        return False
    for level in range(max_depth):
        # After `level` passes the remaining depth is (depth - level): a run of
        # more openers than the levels still allowed is too deep already.
        if level % 4 == 0 and re.search(rb"[\[{]{%d}" % (max_depth - level + 1), skeleton):
            return True
        skeleton, count = _PAIRS.subn(b"", skeleton)
        if not skeleton or not count:
            # Empty: depth <= max_depth. No pair removed: unbalanced brackets, a
            # syntax error that json.loads reports.
            return False
    return True


def _has_lone_surrogate(obj) -> bool:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _longest_array(obj, limit: int) -> bool:
    """True if some array in ``obj`` has more than ``limit`` elements (level by
    level, each container visited once, no recursion)."""
    level = [obj]
    while level:
        nxt = []
        for item in level:
            if type(item) is list:
                if len(item) > limit:
                    return True
                nxt.extend(x for x in item if type(x) is list or type(x) is dict)
            elif type(item) is dict:
                nxt.extend(x for x in item.values() if type(x) is list or type(x) is dict)
        level = nxt
    return False


def loads_strict(
    data: bytes,
    max_depth: int = DEFAULT_MAX_DEPTH,
    *,
    limits: Limits | None = None,
    deadline: float | None = None,
) -> object:
    """Parse one JSON text from ``data`` or raise :class:`MalformedJSON`. With
    ``limits`` its depth replaces ``max_depth`` and its counts bound the answer;
    ``deadline`` is a ``time.monotonic()`` instant."""
    reason, position, result = _parse(data, max_depth, limits, deadline)
    if reason is not None:
        raise MalformedJSON(reason, position)
    return result


def _parse(data, max_depth: int, limits: Limits | None = None, deadline: float | None = None):
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        return SYNTAX, None, None
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    head = data.lstrip(_WS)[:1]
    if not head:
        return EMPTY, None, None
    if head == b"<":
        return HTML, None, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return UTF8, exc.start, None
    if limits is not None:
        max_depth = limits.max_depth
    skeleton = _skeleton(data)
    if limits is not None and _count_values(skeleton) > limits.max_values:
        return TOO_LARGE, None, None
    if _too_deep(data, max_depth, skeleton):
        return TOO_DEEP, None, None
    del skeleton
    if deadline is not None and time.monotonic() > deadline:
        return DEADLINE, None, None
    reason = position = None
    sketch = data.translate(_NUMBER_SKETCH)
    parse_float = _float if b"0e" in sketch or _LONG_DIGITS in sketch else None
    try:
        result = json.loads(
            text, parse_constant=_constant, parse_float=parse_float, object_pairs_hook=_pairs
        )
    except _Reject as exc:
        reason = exc.reason
    except json.JSONDecodeError as exc:
        reason = TRAILING if exc.msg == "Extra data" else SYNTAX
        position = len(text[: exc.pos].encode("utf-8"))
    except RecursionError:
        reason = TOO_DEEP
    except ValueError:  # int digits beyond sys.get_int_max_str_digits()
        reason = NUMBER
    if reason is not None:
        return reason, position, None
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(result):
        return SURROGATE, None, None
    if limits is not None and _longest_array(result, limits.max_items):
        return TOO_LARGE, None, None
    if deadline is not None and time.monotonic() > deadline:
        return DEADLINE, None, None
    return None, None, result
