"""Redaction of large answers: the batch paths remove exactly what the value-by-value
paths remove.

``Redactor.harvest`` walks an answer level by level, ``Redactor.data`` proves a list of
flat records clean from its distinct keys and values at once, and ``Redactor.text``
skips the slow MAC pattern on long texts whose sketch shows no MAC. These tests plant
secrets everywhere those shortcuts look (and where they do not) and compare with the
reference walks.
"""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ibgw import redact
from ibgw.redact import REDACTED, Redactor

MAC = redact.BUILTIN_PATTERNS[-1]


@pytest.fixture
def home_is_root(monkeypatch):
    # The same for every example: "/root/..." values are shortened to "~/...".
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setattr("os.path.expanduser", lambda p: "/root" if p == "~" else p)


@pytest.fixture(autouse=True)
def _fresh_redactor():
    redact.reset()
    yield
    redact.reset()


# -- harvest ------------------------------------------------------------------------------


def reference_harvest(r: Redactor, obj, secret=False, depth=0):
    """The recursive walk harvest replaced: every value under a secret key, containers
    deeper than 200 levels not visited."""
    if depth > 200:
        return
    containers = (dict, list, tuple, set, frozenset)
    if isinstance(obj, dict):
        for key, value in obj.items():
            inner = secret or r.is_secret_key(key)
            if isinstance(value, containers):
                reference_harvest(r, value, inner, depth + 1)
            elif inner and value is not None and not isinstance(value, bool):
                r.add_secret(value)
    elif isinstance(obj, containers):
        for value in obj:
            if isinstance(value, containers):
                reference_harvest(r, value, secret, depth + 1)
            elif secret and value is not None and not isinstance(value, bool):
                r.add_secret(value)
    elif secret and obj is not None and not isinstance(obj, bool):
        r.add_secret(obj)


keys = st.sampled_from(
    ["session", "USER_NAME", "MAC", "xyzab.x", "conid", "desc", "price", "a", "sessionId", 7]
)
leaves = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.: ", max_size=12),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
trees = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4)
        | st.tuples(inner, inner)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=trees)
def test_harvest_remembers_what_the_recursive_walk_remembers(obj):
    fast, slow = Redactor(), Redactor()
    fast.harvest(obj)
    reference_harvest(slow, obj)
    assert fast._secrets == slow._secrets


def test_harvest_of_a_positions_like_answer_finds_the_one_secret_row():
    rows = [{"acctId": "U1", "conid": i, "conExchMap": [], "name": f"N{i}"} for i in range(500)]
    rows[321]["sessionId"] = "planted-session-4f5a6b7c"
    rows[400]["conExchMap"] = [{"userId": 987654321}]
    redact.harvest(rows)
    text = redact.text("x planted-session-4f5a6b7c y 987654321 z")
    assert "planted-session" not in text and "987654321" not in text
    assert redact.text("N321 U1") == "N321 U1"


def test_harvest_stops_at_the_same_depth_as_before():
    def chain(depth, leaf):
        obj = leaf
        for _ in range(depth):
            obj = [obj]
        return obj

    obj = {"a": chain(150, {"session": "shallow-secret-1"}), "b": chain(260, {"ip": "deep-2"})}
    fast, slow = Redactor(), Redactor()
    fast.harvest(obj)
    reference_harvest(slow, obj)
    assert fast._secrets == slow._secrets
    assert "shallow-secret-1" in fast._secrets


# -- data ----------------------------------------------------------------------------------

CANARY = "CanaryValue-7f3a9e21"
# Mostly clean records with one kind of trouble at a time, so that both the proof and
# the walk it falls back to get exercised.
clean_values = st.one_of(
    st.sampled_from(["USD", "STK", "", "Nestlé", "98:F2:B3:23:BF", "-5", -5, True, None]),
    st.text(max_size=10),
    st.integers(),
    st.floats(),
)
planted_values = st.sampled_from(
    [
        CANARY,
        f"pre {CANARY} post",
        CANARY.lower(),
        CANARY.upper(),
        f"é {CANARY}",
        "98:F2:B3:23:BF:A0",
        "mac 98-f2-b3-23-bf-a0 here",
        "Cookie: abc=def",
        "token=abcdef123",
        "/root/private/file",
        "api.nn=1",
        123456789,
        123456789.0,
        "123456789",
    ]
)
clean_keys = st.sampled_from(["conid", "desc", "price", "ccy", "é"])
planted_keys = st.sampled_from(["session", CANARY, "Token", "xyzab9", "/root"])


@st.composite
def record_lists(draw):
    records = draw(
        st.lists(st.dictionaries(clean_keys, clean_values, max_size=5), min_size=1, max_size=10)
    )
    trouble = draw(st.sampled_from(["none", "value", "key"]))
    if trouble != "none":
        row = draw(st.integers(0, len(records) - 1))
        key = draw(planted_keys if trouble == "key" else clean_keys)
        records[row][key] = draw(planted_values if trouble == "value" else clean_values)
    return records


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(records=record_lists(), learnt=st.booleans())
def test_data_of_flat_records_equals_the_walk(records, learnt, home_is_root):
    r = Redactor()
    if learnt:
        r.add_secret(CANARY)
        r.add_secret(123456789)
    out = r.data(records)
    assert out == r._data(records, 0)
    assert out is not records and all(a is not b for a, b in zip(out, records, strict=True))
    if learnt:
        assert CANARY.lower() not in json.dumps(out, ensure_ascii=False).lower()


def test_records_without_secrets_come_back_as_equal_copies():
    redact.add_secret("s3cr3t-session-value")
    records = [{"conid": i, "desc": f"S{i:05d}", "px": i / 7, "ok": True} for i in range(2000)]
    out = redact.data(records)
    assert out == records
    out[0]["desc"] = "changed"
    assert records[0]["desc"] == "S00000"


@pytest.mark.parametrize(
    "planted, expected",
    [
        ({"desc": "has s3cr3t-session-value inside"}, {"desc": f"has {REDACTED} inside"}),
        ({"n": 987654321}, {"n": REDACTED}),
        ({"n": 987654321.0}, {"n": 987654321.0}),  # str() differs: not the secret
        ({"where": "at 98:F2:B3:23:BF:A0"}, {"where": f"at {REDACTED}"}),
        ({"session": "anything"}, {"session": REDACTED}),
        ({"s3cr3t-session-value": 1}, {REDACTED: 1}),
        ({"desc": "é s3cr3t-session-value"}, {"desc": f"é {REDACTED}"}),
        ({"nested": {"session": "x1234"}}, {"nested": {"session": REDACTED}}),
    ],
)
def test_one_secret_in_a_large_list_is_found(planted, expected):
    redact.add_secret("s3cr3t-session-value")
    redact.add_secret(987654321)
    records = [{"conid": i, "desc": f"S{i:05d}", "px": i / 7} for i in range(3000)]
    records[1234] = planted
    out = redact.data(records)
    assert out[1234] == expected
    assert out[:1234] == records[:1234] and out[1235:] == records[1235:]


# -- long texts ----------------------------------------------------------------------------


mac_pieces = st.sampled_from(
    ["98", "F2", "b3", ":", "-", " ", "\n", "0", "x", "é", "98:F2:B3:23:BF:A0", "aa-bb-cc-dd-ee-ff"]
)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(mac_pieces, min_size=1, max_size=400), fill=st.integers(0, 600))
def test_long_texts_lose_exactly_the_mac_addresses_the_pattern_finds(pieces, fill):
    text = "".join(pieces) + " " * fill
    expected = re.sub(MAC, REDACTED, text)
    assert redact.text(text) == expected
    redact.add_secret("some-learnt-secret")  # the full pass, not only the quick check
    assert redact.text(text + " some-learnt-secret") == expected + " " + REDACTED


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet=st.characters(max_codepoint=127), min_size=300, max_size=3000),
    after=st.text(max_size=3000),
    sep=st.sampled_from([":", "-"]),
)
def test_a_mac_address_planted_in_a_long_text_never_survives(before, after, sep):
    mac = sep.join(["98", "F2", "b3", "23", "BF", "A0"])
    edge = string.hexdigits + ":-"  # a hex digit or separator next to it makes no MAC
    assume(before[-1] not in edge and not (after and after[0] in edge))
    assert mac not in redact.text(before + mac + after)


@settings(max_examples=200, deadline=None)
@given(
    canary=st.text(
        alphabet=string.ascii_letters + string.digits + "-_.=/", min_size=6, max_size=30
    ),
    before=st.text(min_size=300, max_size=3000),
    after=st.text(max_size=3000),
)
def test_a_secret_planted_in_a_long_text_never_survives(canary, before, after):
    assume(canary.strip(".:-0") and canary.lower() not in REDACTED)
    assume(canary.lower() not in redact._TRIVIAL)
    r = Redactor()
    r.add_secret(canary)
    assert canary not in r.text(before + canary + after)


def test_the_case_twins_are_every_character_a_pattern_matches_to_an_ascii_letter():
    import sys

    letters = re.compile("(?i)[a-z]")
    twins = {chr(c) for c in range(128, sys.maxunicode + 1) if letters.match(chr(c))}
    assert twins == {twin for twin, _ in redact._CASE_TWINS}
    for twin, letter in redact._CASE_TWINS:
        assert {a for a in string.ascii_letters if re.fullmatch(f"(?i){a}", twin)} == {
            letter,
            letter.upper(),
        }


def without_shortcuts(r: Redactor) -> Redactor:
    """The same rules and secrets with every pattern run on every text."""
    r._literals = [None] * len(r._patterns)
    r._sketches = [None] * len(r._patterns)
    r._quick = None
    return r


text_pieces = st.sampled_from(
    [
        "cookie: abc=def",
        "COOK\u0130E: abc=def",
        "Set-Coo\u212aie: x=y",
        "\u017fecret=abcdef",
        "to\u212aen=abcdefgh",
        "AUTHORIZATION: Bearer abcdefgh12",
        'api={"session":"x"}',
        "JSESSIONID=abc123",
        "98:F2:B3:23:BF:A0",
        "98-f2-b3-23-bf-a0",
        "planted-secret-value",
        "PLANTED-SECRET-VALUE",
        "/root/x",
        "é",
        "ı",
        "İ",
        " ",
        "\n",
        "=",
        ":",
        "x" * 50,
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(text_pieces, max_size=40), fill=st.sampled_from([0, 300]))
def test_text_removes_what_every_pattern_run_everywhere_removes(pieces, fill):
    text = "".join(pieces) + "." * fill
    fast, slow = Redactor(), without_shortcuts(Redactor())
    for r in (fast, slow):
        r.add_secret("planted-secret-value")
    assert fast.text(text) == slow.text(text)
    assert fast.data([{"k": text}, {"k": "plain"}]) == slow._data([{"k": text}, {"k": "plain"}], 0)
