"""Rendering: the table and JSON a user sees are exactly what tabulate and
``json.dumps(indent=2)`` print, whichever way ibgw builds them.

For large outputs ibgw lays out plain tables itself and C-encodes flat JSON records
(see ``ibgw.output``); these tests hold both to the reference output on adversarial
cells: whitespace of every kind, ``True``/``False`` text, control characters, ANSI
codes, line breaks, tabulate's separating-line marker, wide characters, quotes,
backslashes, lone surrogates, NaN.
"""

from __future__ import annotations

import json
import re
import types

import pytest
import tabulate as tabulate_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibgw import output


def _clean(value):
    return output.clean_text(value) if isinstance(value, str) else value


def reference_table(records, columns=()) -> str:
    """What ``render(fmt="table")`` printed before it had a layout of its own, with
    gateway text cleaned of control characters and escape sequences first."""
    if not records:
        return "(no rows)\n"
    cols = output._columns(records, columns)
    rows = [[_clean(output._cell(r.get(c))) for c in cols] for r in records]
    headers = [_clean(c) for c in cols]
    return (
        tabulate_module.tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
        + "\n"
    )


def reference_json(data) -> str:
    """``json.dumps(indent=2)``, with DEL and C1 controls escaped (``\\u009b``)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False)
    return re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


TRICKY_TEXT = [
    "",
    " ",
    "  padded  ",
    "\u00a0nbsp\u00a0",
    "\u2003em space",
    "\u3000ideographic",
    "True",
    "False",
    " True ",
    "None",
    "1,234.5",
    "-0",
    "Nestlé",
    "株式会社",
    "\U0001f600 emoji",
    "tab\there",
    "line\nbreak",
    "cr\rreturn",
    "\x01",
    " \x01 ",
    "\x1b[31mred\x1b[0m",
    "\x7fdel",
    "\x85nel",
    "\u2028sep",
    "zero\u200bwidth",
    "combining e\u0301",
    "a" * 70,
]
cell_values = st.one_of(
    st.sampled_from(TRICKY_TEXT),
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),
    st.sampled_from([0.0, -0.0, 1e15, -1e15, 999999999999999.9, 1e-7, 123456.1234567]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["k", "é"]), st.integers(), max_size=2),
)
column_names = st.one_of(
    st.sampled_from(["conid", "description", "x", "a b", " pad ", "Ünï", "列", "True"]),
    st.text(min_size=1, max_size=8),
)
record_lists = st.lists(
    st.dictionaries(column_names, cell_values, max_size=5), min_size=1, max_size=12
)

# Without control characters most tables take ibgw's own layout.
plain_cell_values = st.one_of(
    st.sampled_from([t for t in TRICKY_TEXT if t.isprintable() or t.isspace()] + ["\u2028"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cc",)), max_size=12),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)
plain_column_names = st.one_of(
    st.sampled_from(["conid", "description", "a b", " pad ", "Ünï", "列", "True", "\u2028"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cc",)), min_size=1, max_size=8),
)
plain_record_lists = st.lists(
    st.dictionaries(plain_column_names, plain_cell_values, max_size=5), min_size=1, max_size=12
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_lists)
def test_table_is_what_tabulate_prints(records):
    assert output.render(records, fmt="table") == reference_table(records)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=plain_record_lists)
def test_plain_table_is_what_tabulate_prints(records):
    assert output.render(records, fmt="table") == reference_table(records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_lists, data=st.data())
def test_table_with_declared_columns_is_what_tabulate_prints(records, data):
    names = sorted({k for r in records for k in r}) + ["missing"]
    columns = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    assert output.render(records, columns, fmt="table") == reference_table(records, columns)


def test_positions_like_table_is_laid_out_by_ibgw_and_matches_tabulate():
    records = [
        {
            "conid": 1_000_000 + i,
            "description": f"S{i:05d}" if i % 7 else None,
            "asset_class": "STK",
            "position": float(i * 3 - 50),
            "mkt_price": 12.3456789 * i,
            "currency": "USD",
            "strike": None,
        }
        for i in range(300)
    ]
    cols = ["conid", "description", "asset_class", "position", "mkt_price", "currency"]
    laid_out = output._plain_table(records, cols)
    assert laid_out is not None  # the common case takes ibgw's own layout...
    assert laid_out + "\n" == reference_table(records, cols)  # ...which is tabulate's


def test_wide_characters_are_left_to_tabulate_when_it_measures_them(monkeypatch):
    # With wcwidth installed tabulate counts a CJK character as two columns.
    def wcswidth(s):
        return sum(2 if ord(ch) >= 0x1100 else 1 for ch in s)

    monkeypatch.setattr(tabulate_module, "wcwidth", types.SimpleNamespace(wcswidth=wcswidth))
    monkeypatch.setattr(tabulate_module, "WIDE_CHARS_MODE", True)
    records = [{"name": "株式会社", "n": 1}, {"name": "ab", "n": 22}]
    out = output.render(records, fmt="table")
    assert out == reference_table(records)
    assert out.splitlines()[2] == "株式会社  1"  # two columns per character
    plain = [{"name": "ascii only", "n": 1}]
    assert output.render(plain, fmt="table") == reference_table(plain)


# -- JSON ----------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.text(),
    st.sampled_from(['"', "\\", '\\"', "\x00", "\x1f", "\u2028", "\ud800", "é", "\U0001f600"]),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**30),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e300, 5e-324, 1e16, 0.1]),
)
json_keys = st.one_of(st.text(max_size=6), st.sampled_from(['"', "\\", "\n", "é", "a: b"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_keys, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.dictionaries(json_keys, json_scalars, max_size=6), max_size=8))
def test_json_of_flat_records_is_what_json_dumps_prints(records):
    assert output.render(records, fmt="json") == reference_json(records)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.dictionaries(json_keys, json_values, max_size=4), max_size=5))
def test_json_of_nested_records_is_what_json_dumps_prints(records):
    assert output.render(records, fmt="json") == reference_json(records)


@settings(max_examples=100, deadline=None)
@given(record=st.dictionaries(json_keys, json_scalars, max_size=6))
def test_single_json_record_is_what_json_dumps_prints(record):
    assert output.render([record], fmt="json", single=True) == reference_json(record)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_json_refuses_nan_and_infinity_as_before(bad):
    records = [{"a": 1.5}, {"a": bad}]
    with pytest.raises(ValueError) as fast:
        output.render(records, fmt="json")
    with pytest.raises(ValueError) as slow:
        reference_json(records)
    assert str(fast.value) == str(slow.value)


def test_json_of_other_values_still_goes_through_str():
    import datetime

    records = [{"when": datetime.date(2026, 1, 2), "n": 1}]
    assert output.render(records, fmt="json") == reference_json(records)
    assert '"when": "2026-01-02"' in output.render(records, fmt="json")
