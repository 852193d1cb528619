"""Bounds on gateway answers (issue 18, finding 5) and the output rules for gateway text,
unit by unit: the per-family limits, the deadline over parse and shape, control
characters and escape sequences, CSV formula cells."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from ibgw import output
from ibgw.declarations import Read
from ibgw.errors import Unavailable
from ibgw.jsonstrict import (
    DEFAULT_LIMITS,
    Limits,
    MalformedJSON,
    limits_for,
    loads_strict,
)
from ibgw.runner import _shape

SMALL = Limits(max_items=10, max_values=100, max_depth=4)


def reason(body: bytes, limits=SMALL, deadline=None) -> str | None:
    try:
        loads_strict(body, limits=limits, deadline=deadline)
    except MalformedJSON as exc:
        return exc.reason
    return None


def test_value_count_is_refused_before_parsing():
    assert reason(b"[" + b"1," * 100 + b"1]") == "too-large"
    assert reason(b"[" + b"{}," * 200 + b"{}]") == "too-large"
    assert reason(b"[" + b"1," * 8 + b"1]") is None


def test_commas_and_brackets_inside_strings_do_not_count():
    body = json.dumps(["," * 1000, "[{" * 500, 'a\\",' * 100]).encode()
    assert reason(body) is None


def test_one_long_array_is_refused_after_parsing():
    body = json.dumps({"a": [[1] * 11]}).encode()  # 11 items, 13 values
    assert reason(body) == "too-large"
    assert reason(json.dumps({"a": [[1] * 10]}).encode()) is None


def test_depth_follows_the_family_limit():
    assert reason(b"[[[[[]]]]]") == "too-deep"
    assert reason(b"[[[[]]]]") is None


def test_a_passed_deadline_stops_the_parse():
    assert reason(b"[1]", deadline=time.monotonic() - 1) == "deadline"
    assert reason(b"[1]", deadline=time.monotonic() + 60) is None


def test_limits_for_uses_the_longest_prefix():
    assert limits_for("/iserver/marketdata/snapshot").max_items == 1_000
    assert limits_for("/portfolio/{accountId}/positions/{pageId}").max_items == 1_000
    assert limits_for("/portfolio/accounts") == DEFAULT_LIMITS
    assert limits_for("/iserver/account/trades").max_items == 50_000


def test_legitimate_maxima_fit_their_family():
    snapshot = [{str(f): "1.0" for f in range(31, 121)} | {"conid": i} for i in range(100)]
    loads_strict(json.dumps(snapshot).encode(), limits=limits_for("/iserver/marketdata/snapshot"))
    page = [{f"k{i}": "v" for i in range(40)} for _ in range(100)]
    loads_strict(
        json.dumps(page).encode(), limits=limits_for("/portfolio/{accountId}/positions/{pageId}")
    )
    bars = {"data": [{"o": 1, "c": 2, "h": 3, "l": 0, "v": 9, "t": 1} for _ in range(1000)]}
    loads_strict(json.dumps(bars).encode(), limits=limits_for("/iserver/marketdata/history"))


def _read(**kw) -> Read:
    return Read(category="t", name="t", summary="t", fetch=lambda ctx: [], columns=("a",), **kw)


def test_shape_keeps_the_deadline():
    with pytest.raises(Unavailable) as info:
        _shape(_read(), [{"a": 1}], deadline=time.monotonic() - 1)
    assert info.value.reason == "timeout"
    assert _shape(_read(), [{"a": 1}], deadline=time.monotonic() + 60) == [{"a": 1}]


# -- gateway text in the output ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, clean",
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x9b2Jcleared", "cleared"),
        ("a\nb\tc\rd", "a b c d"),
        ("bell\x07nul\x00del\x7f", "bellnuldel"),
        ("plain Nestlé 株式", "plain Nestlé 株式"),
    ],
)
def test_clean_text(text, clean):
    assert output.clean_text(text) == clean


def test_table_cells_and_headers_lose_escapes():
    table = output.render([{"\x1b[2Jk": "\x1b]0;x\x07v", "n": 1}], fmt="table")
    assert "\x1b" not in table and "\x07" not in table
    assert table.splitlines()[0].split() == ["k", "n"]
    single = output.render([{"k": "\x1b[31mred"}], fmt="table", single=True)
    assert "\x1b" not in single and "red" in single


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1+2", "'+1+2"),
        ("-1+2", "'-1+2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=x", "'\t=x"),
        ("\r=x", "'\n=x"),
        ("a\rb", "a\nb"),
        ("-3.5", "-3.5"),
        ("+2", "+2"),
        ("-1e-3", "-1e-3"),
        (-3.5, "-3.5"),
        (-7, "-7"),
        ("AAPL", "AAPL"),
    ],
)
def test_csv_formula_cells_are_text_and_numbers_stay_numbers(value, cell):
    text = output.render([{"v": value}], fmt="csv")
    assert list(csv.reader(io.StringIO(text, newline="")))[1] == [cell]


def test_csv_headers_are_guarded_too():
    text = output.render([{"=HYPERLINK(1)": 1}], fmt="csv")
    assert text.splitlines()[0] == "'=HYPERLINK(1)"


def test_error_lines_lose_escapes():
    exc = Unavailable("the gateway said \x1b[2J\x1b]0;owned\x07hi", reason="x", hint="")
    assert output.error_text(exc, "table") == "ibgw: the gateway said hi\n"


def test_json_error_carries_deferred_warnings(monkeypatch):
    monkeypatch.setattr(output, "DEFERRED_WARNINGS", ["plugin x: Cookie: abc=def"])
    text = output.json_error({"state": None, "reason": "r", "message": "m", "hint": ""})
    error = json.loads(text)
    assert error["error"]["warnings"] == ["plugin x: Cookie: [redacted]"]


def test_json_output_escapes_del_and_c1_controls():
    text = output.render([{"a": "x\x9b2J\x7fy\x1b[0m"}], fmt="json")
    assert not any(ch in text for ch in "\x9b\x7f\x1b")
    assert json.loads(text) == [{"a": "x\x9b2J\x7fy\x1b[0m"}]  # the same value
