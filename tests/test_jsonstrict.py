"""Strict JSON: what a gateway answer may and may not be."""

from __future__ import annotations

import json
import sys
import time
import traceback

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibgw import jsonstrict as js
from ibgw.jsonstrict import MalformedJSON, loads_strict


def _reason(data: bytes, **kw) -> str:
    with pytest.raises(MalformedJSON) as info:
        loads_strict(data, **kw)
    return info.value.reason


BAD = [
    (b"", js.EMPTY),
    (b"   \r\n\t ", js.EMPTY),
    (b"\xef\xbb\xbf", js.EMPTY),  # a lone BOM
    (b"\xef\xbb\xbf  ", js.EMPTY),
    (b"<html><body><h1>Resource not found</h1></body></html>", js.HTML),
    (b"  \n<!DOCTYPE html><html>", js.HTML),
    (b"\xef\xbb\xbf<html>", js.HTML),
    (b"NaN", js.NON_FINITE),
    (b"[NaN]", js.NON_FINITE),
    (b'{"a": Infinity}', js.NON_FINITE),
    (b'{"a": -Infinity}', js.NON_FINITE),
    (b'{"a": [1, {"b": NaN}]}', js.NON_FINITE),
    (b"1e400", js.NON_FINITE),
    (b"[-1e400]", js.NON_FINITE),
    (b'{"price": 1.5e999}', js.NON_FINITE),
    (b'{"price": 2E+308}', js.NON_FINITE),
    (b'["1e999", 1.0e309]', js.NON_FINITE),
    (b"1" + b"0" * 400 + b".5", js.NON_FINITE),  # no exponent, 401 integer digits
    (b'{"a": "x", "b": [-9' + b"9" * 320 + b".0]}", js.NON_FINITE),
    (b'{"a": 1, "a": 2}', js.DUPLICATE),
    (b'{"a": {"b": 1, "b": 1}}', js.DUPLICATE),
    (b'[{"x": 1}, {"y": 1, "y": 2}]', js.DUPLICATE),
    (b'{"a": 1, "\\u0061": 2}', js.DUPLICATE),  # the same key spelled with an escape
    (b"\xff\xfe{}", js.UTF8),
    (b'{"a": "\xc0\x80"}', js.UTF8),  # overlong encoding
    (b'{"a": "\xed\xa0\x80"}', js.UTF8),  # a surrogate encoded as UTF-8
    (b'{"a": "\x80"}', js.UTF8),
    (b'"caf\xe9"', js.UTF8),  # latin-1
    (b'{"a": "\\ud800"}', js.SURROGATE),
    (b'["\\udc00x"]', js.SURROGATE),
    (b'{"\\ud800": 1}', js.SURROGATE),
    (b"{} x", js.TRAILING),
    (b"{}{}", js.TRAILING),
    (b'{"a": 1}garbage', js.TRAILING),
    (b"[1] ]", js.TRAILING),
    (b"[1,]", js.SYNTAX),
    (b'{"a": 1,}', js.SYNTAX),
    (b"{'a': 1}", js.SYNTAX),
    (b'{"a": 1', js.SYNTAX),
    (b'{"a": "unterminated', js.SYNTAX),
    (b'{"a": tru}', js.SYNTAX),
    (b"[01]", js.SYNTAX),
    (b'"\x01"', js.SYNTAX),  # raw control character in a string
    (b"\x00", js.SYNTAX),
    (b"//comment\n{}", js.SYNTAX),
    (b"1" * 5000, js.NUMBER),
    (b"[" * 65 + b"]" * 65, js.TOO_DEEP),
    (b'{"a":' * 65 + b"1" + b"}" * 65, js.TOO_DEEP),
    (b"[" * 100_000 + b"]" * 100_000, js.TOO_DEEP),
    (b"[" * 100_000, js.TOO_DEEP),
    (b"[[]," * 10 + b"[" * 70 + b"]" * 70 + b"]" * 1, js.TOO_DEEP),
]


@pytest.mark.parametrize(("data", "reason"), BAD, ids=[f"{r}:{d[:24]!r}" for d, r in BAD])
def test_rejected(data, reason):
    assert _reason(data) == reason


GOOD = [
    (b"{}", {}),
    (b"[]", []),
    (b"null", None),
    (b"0", 0),
    (b'"x"', "x"),
    (b' \n{"a": [1, 2.5, -3e2, true, false, null]}\n ', {"a": [1, 2.5, -300.0, True, False, None]}),
    (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),  # a BOM before JSON is tolerated
    (b'{"a": {"a": {"a": 1}}}', {"a": {"a": {"a": 1}}}),
    (b'[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
    (b'{"s": "\\ud83d\\ude00"}', {"s": "\U0001f600"}),
    (b'{"s": "caf\xc3\xa9"}', {"s": "caf\u00e9"}),
    (
        b'{"s": "[[[[{{{{", "t": "\\"[", "u": "\\\\", "v": "]]]}}"}',
        {"s": "[[[[{{{{", "t": '"[', "u": "\\", "v": "]]]}}"},
    ),
    (b'{"s": "\\\\\\"[["}', {"s": '\\"[['}),
    (b'{"a": "<html>"}', {"a": "<html>"}),
    (b"1e308", 1e308),
    (b"9" * 308 + b".5", float("9" * 308 + ".5")),  # the longest that does not overflow
    (b'["1e999", "0e5", 1.5]', ["1e999", "0e5", 1.5]),  # exponents inside strings only
    (b"[" + b"1" * 4000 + b"]", [int("1" * 4000)]),
]


@pytest.mark.parametrize(("data", "value"), GOOD, ids=[repr(d[:24]) for d, _ in GOOD])
def test_accepted(data, value):
    assert loads_strict(data) == value


def test_depth_boundary():
    for depth in (1, 2, 63, 64):
        assert loads_strict(b"[" * depth + b"]" * depth) is not None
        obj = b'{"a":' * depth + b"1" + b"}" * depth
        assert loads_strict(obj) is not None
    assert _reason(b"[" * 65 + b"]" * 65) == js.TOO_DEEP
    assert loads_strict(b"[" * 10 + b"]" * 10, max_depth=10) is not None
    assert _reason(b"[" * 11 + b"]" * 11, max_depth=10) == js.TOO_DEEP
    # brackets inside strings never count
    deep_string = b'{"a": "' + b"[" * 500 + b'\\"' + b"{" * 500 + b'"}'
    assert loads_strict(deep_string) == {"a": "[" * 500 + '"' + "{" * 500}


def test_deep_nesting_never_recursion_error():
    for data in (b"[" * 500_000, b'{"a":' * 200_000, b"[" * 2000 + b"]" * 2000):
        with pytest.raises(MalformedJSON):
            loads_strict(data)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100)
    try:
        with pytest.raises(MalformedJSON) as info:
            loads_strict(
                b"[" * 64 + b"]" * 64, max_depth=200
            )  # passes pre-scan, json recursion fails
        assert info.value.reason in (js.TOO_DEEP,)
    finally:
        sys.setrecursionlimit(old)


def test_error_never_carries_the_body():
    canary = b"CANARY-SECRET-4242"
    for data in (
        b'{"token": "' + canary + b'", "x": NaN}',
        b'{"a": "' + canary + b'"} trailing',
        b'{"token": "' + canary + b'", "token": 1}',
        b'{"a": "' + canary + b'" ',
        canary + b"\xff",
        b'{"a": "' + canary + b'", "n": 1e999}',
    ):
        with pytest.raises(MalformedJSON) as info:
            loads_strict(data)
        err = info.value
        text = "".join(traceback.format_exception(err)) + repr(err) + str(err)
        assert canary.decode() not in text
        assert err.__cause__ is None and err.__context__ is None
        assert not hasattr(err, "doc")


def test_position_reported_in_bytes():
    with pytest.raises(MalformedJSON) as info:
        loads_strict('{"é": 1} x'.encode())
    assert info.value.reason == js.TRAILING
    assert info.value.position == len('{"é": 1} '.encode())
    assert "at byte" in str(info.value)


def test_accepts_bytearray_and_memoryview_rejects_str():
    assert loads_strict(bytearray(b"[1]")) == [1]
    assert loads_strict(memoryview(b"[1]")) == [1]
    with pytest.raises(MalformedJSON):
        loads_strict("[1]")  # type: ignore[arg-type]


def test_malformed_is_a_value_error():
    assert issubclass(MalformedJSON, ValueError)


def _records(n: int) -> bytes:
    return json.dumps(
        [
            {
                "conid": 265598 + i,
                "symbol": "AAPL",
                "desc": 'APPLE INC "x" [NASDAQ] {y}',
                "last": i * 1.25,
                "fields": [1, 2, 3, {"a": None, "b": True, "c": "\\u00e9"}],
                "n": i,
            }
            for i in range(n)
        ]
    ).encode()


def test_five_megabytes_is_fast():
    body = _records(30_000)
    assert len(body) > 5_000_000
    start = time.perf_counter()
    json.loads(body)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    value = loads_strict(body)
    strict = time.perf_counter() - start
    assert len(value) == 30_000
    # generous bound for a loaded CI box; typically ~1.5x json.loads (~0.2 s)
    assert strict < max(2.0, 6 * plain), (strict, plain)


def test_adversarial_bracket_soup_is_bounded():
    # Every pass of the depth pre-scan removes one level: a wide, deep body costs at
    # most max_depth passes over its bracket skeleton.
    soup = b"[" + b",".join([b"[[]," * 70 + b"0" + b"]" * 70] * 17_000) + b"]"
    start = time.perf_counter()
    assert _reason(soup) == js.TOO_DEEP
    assert time.perf_counter() - start < 5.0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_property_roundtrip(value, indent, ascii_only):
    data = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    assert loads_strict(data) == json.loads(data)


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=200)
    | st.text(max_size=80).map(str.encode)
    | st.from_regex(rb'[\[\]{}",:0-9a-z\\ ]{0,60}', fullmatch=True)
)
def test_property_only_malformed_raised(data):
    try:
        loads_strict(data)
    except MalformedJSON as err:
        assert err.reason in {
            js.EMPTY,
            js.HTML,
            js.UTF8,
            js.NON_FINITE,
            js.DUPLICATE,
            js.TOO_DEEP,
            js.TRAILING,
            js.SYNTAX,
            js.SURROGATE,
            js.NUMBER,
        }


@settings(max_examples=200, deadline=None)
@given(
    depth=st.integers(min_value=1, max_value=130),
    wrap=st.sampled_from(["list", "dict"]),
    noise=st.text(alphabet='[]{}"\\x', max_size=6),
)
def test_property_depth_exact(depth, wrap, noise):
    leaf = json.dumps(noise)
    text = leaf
    for _ in range(depth):
        text = f"[{text}]" if wrap == "list" else f'{{"k": {text}}}'
    data = text.encode()
    if depth <= js.DEFAULT_MAX_DEPTH:
        assert loads_strict(data) == json.loads(data)
    else:
        assert _reason(data) == js.TOO_DEEP
