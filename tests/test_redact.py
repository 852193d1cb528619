"""Redaction: secret keys, harvested values, patterns, home paths, logging.

SECURITY.md section 1: nothing secret ever leaves. Every test plants a unique value in a
secret slot and checks that it does not come out.
"""

from __future__ import annotations

import http.client
import json
import logging
import string
import warnings

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ibgw import redact
from ibgw.logs import install_logging
from ibgw.redact import REDACTED, RedactionFailed, Redactor


@pytest.fixture(autouse=True)
def _fresh_redactor():
    redact.reset()
    yield
    redact.reset()


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (
        list(root.handlers),
        root.level,
        logging.lastResort,
        http.client.HTTPConnection.debuglevel,
        logging.getLogRecordFactory(),
    )
    levels = {
        n: logging.getLogger(n).level
        for n in ("ibgw", "urllib3", "requests", "http.client", "urllib3.connectionpool")
    }
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.lastResort = saved[2]
    http.client.HTTPConnection.debuglevel = saved[3]
    logging.setLogRecordFactory(saved[4])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


KEY_NAMES = [k for k in redact.BUILTIN_KEYS if not k.endswith("*")] + [
    "XYZAB",
    "XYZAB_AM.LOGIN",
    "xyzab.anything",
]


def _variants(key: str) -> list[str]:
    return sorted({key, key.upper(), key.lower(), key.title(), key[:1].upper() + key[1:]})


# -- keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEY_NAMES)
def test_every_secret_key_is_redacted_in_any_case_and_nesting(key):
    canary = f"CANARY-{abs(hash(key)) % 10**8:08d}-value"
    for variant in _variants(key):
        doc = {
            "outer": [{"inner": {variant: canary}}, {variant: {"deep": [canary, 123456789]}}],
            variant: canary,
        }
        out = redact.data(doc)
        dumped = json.dumps(out)
        assert canary not in dumped, variant
        assert "123456789" not in dumped
        assert out[variant] == REDACTED
        assert out["outer"][0]["inner"][variant] == REDACTED
        assert out["outer"][1][variant] == REDACTED


def test_the_one_key_list_is_what_the_default_plugin_registers():
    from ibgw.default_plugins import redaction

    seen = {}

    def register(keys=(), patterns=()):
        seen["keys"], seen["patterns"] = tuple(keys), tuple(patterns)

    redaction.ibgw_redaction_rules(register=register)
    assert seen["keys"] == redact.BUILTIN_KEYS
    assert seen["patterns"] == redact.BUILTIN_PATTERNS
    # Registering them again through the hook adds nothing.
    before = len(redact.REDACTOR._patterns), set(redact.REDACTOR._keys)
    redact.register(keys=seen["keys"], patterns=seen["patterns"])
    assert (len(redact.REDACTOR._patterns), set(redact.REDACTOR._keys)) == before


def test_plugin_rules_load_through_the_plugin_manager_each_isolated():
    from ibgw.default_plugins import redaction
    from ibgw.hookspecs import hookimpl
    from ibgw.plugins import PluginManager

    class Extra:
        @hookimpl
        def ibgw_redaction_rules(self, register):
            register(keys=["brokerPin"], patterns=[r"PIN-\d{6}"])

    class Broken:
        @hookimpl
        def ibgw_redaction_rules(self, register):
            register(patterns=["(unclosed"])

    pm = PluginManager()
    pm.register(redaction, name="redaction")
    pm.register(Broken(), name="broken")
    pm.register(Extra(), name="extra")
    failed = redact.load_plugin_rules(pm)
    assert failed == ["broken"]
    assert redact.data({"BrokerPIN": "1234-5678"}) == {"BrokerPIN": REDACTED}
    assert "PIN-123456" not in redact.text("your PIN-123456 ok")


def test_keys_themselves_are_scrubbed_and_values_not_under_secret_keys_survive():
    redact.add_secret("sess-abcdef-123")
    out = redact.data({"sess-abcdef-123": {"price": 1.5, "symbol": "AAPL", "ok": True, "n": None}})
    assert out == {REDACTED: {"price": 1.5, "symbol": "AAPL", "ok": True, "n": None}}


def test_data_is_a_deep_copy():
    doc = {"a": [{"session": "abcdefgh"}]}
    out = redact.data(doc)
    assert doc == {"a": [{"session": "abcdefgh"}]}
    assert out == {"a": [{"session": REDACTED}]}


# -- harvested values --------------------------------------------------------------------

AUTH_STATUS = {
    "session": "4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
    "ssoExpires": 512345,
    "collission": False,
    "userId": 123456789,
    "hmds": {"error": "no bridge"},
    "iserver": {
        "authStatus": {
            "authenticated": True,
            "competing": False,
            "connected": True,
            "message": "",
            "MAC": "98:F2:B3:23:BF:A0",
            "serverInfo": {"serverName": "JifN19053", "serverVersion": "Build 10.25.0p"},
            "hardware_info": "a1b2c3d4|98:F2:B3:23:BF:A0",
        }
    },
}
ACCOUNTS = {"accounts": ["U1234567"], "sessionId": "64f1ab2c.0000001f", "isPaper": False}


def test_harvested_values_disappear_from_free_text_json_and_csv():
    redact.harvest(AUTH_STATUS)
    redact.harvest(ACCOUNTS)
    secrets = [
        "4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
        "123456789",
        "98:F2:B3:23:BF:A0",
        "a1b2c3d4|98:F2:B3:23:BF:A0",
        "64f1ab2c.0000001f",
    ]
    free = (
        "gateway said: session 4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c for user 123456789 "
        "on 98:f2:b3:23:bf:a0 (sid=64f1ab2c.0000001f)"
    )
    as_json = json.dumps({"note": free, "echo": AUTH_STATUS, "list": [123456789, "x123456789y"]})
    csv_text = "user,session\n123456789,4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c\n"
    url = "https://localhost:5000/v1/api/x?s=4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c&u=123456789"
    for text in (free, as_json, csv_text, url, repr(AUTH_STATUS)):
        out = redact.text(text)
        for s in secrets:
            assert s.lower() not in out.lower(), (s, out)
        assert REDACTED in out
    data = redact.data({"echo": free, "uid": 123456789, "nested": [{"x": "64f1ab2c.0000001f"}]})
    assert data == {"echo": redact.text(free), "uid": REDACTED, "nested": [{"x": REDACTED}]}
    # unrelated content survives
    assert "serverName" in redact.text(as_json)


def test_url_encoded_and_json_escaped_forms_are_removed():
    secret = 'a/b c"d+e&f=g'
    redact.add_secret(secret)
    from urllib.parse import quote, quote_plus

    for form in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]):
        out = redact.text(f"before {form} after")
        assert form not in out and REDACTED in out


@pytest.mark.parametrize(
    "value", ["", "a", "abc", "true", "False", "null", "0", "0000", "None", "  ", None, True, 0, 12]
)
def test_trivial_values_are_not_remembered(value):
    redact.add_secret(value)
    assert redact.REDACTOR._secrets == set()
    assert redact.text("true null 0000 abc 12") == "true null 0000 abc 12"


def test_overlapping_secrets_leave_no_fragment():
    redact.add_secret("abcd1234")
    redact.add_secret("1234wxyz")
    out = redact.text("xxabcd1234wxyzxx")
    assert out == f"xx{REDACTED}xx"


def test_reset_forgets_harvested_values_but_keeps_builtins():
    redact.add_secret("remember-me-1234")
    redact.reset()
    assert "remember-me-1234" in redact.text("remember-me-1234")
    assert redact.data({"Cookie": "x=1"}) == {"Cookie": REDACTED}


def test_harvest_text_remembers_cookie_values_from_headers():
    redact.harvest_text("Set-Cookie: x-sess-uuid=0.34467b5c.1695377857.47099b9d; secure; HttpOnly")
    assert "0.34467b5c.1695377857.47099b9d" not in redact.text(
        "later: 0.34467b5c.1695377857.47099b9d"
    )


# -- patterns ------------------------------------------------------------------------------

PATTERN_CASES = [
    (
        "Set-Cookie: x-sess-uuid=0.34467b5c.1695377857.47099b9d; secure; HttpOnly",
        "0.34467b5c.1695377857.47099b9d",
    ),
    ("cookie: JSESSIONID=ZZTOPSECRET42; USERID=99887766", "ZZTOPSECRET42"),
    ("request failed with JSESSIONID=ABCDEF0123456789 in the jar", "ABCDEF0123456789"),
    ("jar has x-sess-uuid=0.aa11bb22.1695377857.cc33dd44 now", "0.aa11bb22.1695377857.cc33dd44"),
    (
        'Cookie: api={"session":"SESSIONVALUE0123456789abcdefABCD"}',
        "SESSIONVALUE0123456789abcdefABCD",
    ),
    ('ws cookie api={"session":"SESSIONVALUE0123456789abcdefABCD"} sent', "SESSIONVALUE0123456789"),
    ('Authorization: OAuth oauth_consumer_key="KEY", oauth_signature="SIGSIGSIG"', "SIGSIGSIG"),
    (
        "{'Authorization': 'Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig', 'Accept': '*/*'}",
        "eyJhbGciOiJIUzI1NiJ9",
    ),
    ('{"Cookie": "cp=CPVAL1234; api=APIVAL5678"}', "CPVAL1234"),
    ("GET /v1/api/ws?oauth_token=TOKENVALUE99&x=1", "TOKENVALUE99"),
    ("url ?bearer_token=BTOKEN123456", "BTOKEN123456"),
    ("url ?access_token=ATOKEN123456#frag", "ATOKEN123456"),
    ("url ?token=PLAINTOKEN42&y=2", "PLAINTOKEN42"),
    ("device MAC 98:f2:b3:23:bf:a0 seen", "98:f2:b3:23:bf:a0"),
    ("device MAC 98-F2-B3-23-BF-A0 seen", "98-F2-B3-23-BF-A0"),
    ("XYZAB_AM.LOGIN=LOGINCOOKIE77; XYZAB=XYZCOOKIE88", "LOGINCOOKIE77"),
    ("XYZAB_AM.LOGIN=LOGINCOOKIE77; XYZAB=XYZCOOKIE88", "XYZCOOKIE88"),
    ("password=hunter2hunter2 user", "hunter2hunter2"),
]


@pytest.mark.parametrize(("text", "secret"), PATTERN_CASES)
def test_patterns_remove_secrets_without_harvesting(text, secret):
    out = redact.text(text)
    assert secret not in out
    assert REDACTED in out


def test_patterns_leave_ordinary_text_alone():
    text = "AAPL 187.23 at 12:34:56 on 2026-04-01, conid 265598, build 10.25.0p"
    assert redact.text(text) == text


# -- home directory ---------------------------------------------------------------------


def test_home_directory_is_shortened(monkeypatch):
    monkeypatch.setenv("HOME", "/home/alice")
    out = redact.text("config at /home/alice/.config/ibgw/config.toml and /home/alice")
    assert out == "config at ~/.config/ibgw/config.toml and ~"
    assert redact.text("/home/alice2/x and /home/alicex") == "/home/alice2/x and /home/alicex"
    assert redact.text("saved in /home/alice.") == "saved in ~."


def test_root_home_is_not_shortened(monkeypatch):
    monkeypatch.setenv("HOME", "/")
    monkeypatch.setattr("os.path.expanduser", lambda p: "/")
    assert redact.text("/etc/hosts") == "/etc/hosts"


# -- property: a planted canary never survives --------------------------------------------

CANARY_ALPHABET = string.ascii_letters + string.digits + "-_.:/=+%@"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    canary=st.text(alphabet=CANARY_ALPHABET, min_size=6, max_size=40),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    repeat=st.integers(1, 3),
)
def test_planted_canary_is_removed_from_any_surrounding_text(canary, before, after, repeat):
    assume(canary.strip(".:-0") and canary.lower() not in REDACTED)
    assume(canary.lower() not in redact._TRIVIAL)
    r = Redactor()
    r.add_secret(canary)
    text = before + (canary + after) * repeat
    out = r.text(text)
    assert canary not in out
    out_json = json.dumps(r.data({"k": text, canary: [text]}))
    assert canary not in out_json


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.text(alphabet=CANARY_ALPHABET, min_size=6, max_size=30),
        st.integers(min_value=100000, max_value=10**12),
    ),
    key=st.sampled_from(["session", "userId", "MAC", "sessionId", "USER_NAME", "IP", "XYZAB"]),
    noise=st.text(max_size=40),
)
def test_harvested_value_is_removed_from_every_output_form(value, key, noise):
    assume(str(value).lower() not in REDACTED and str(value).strip(".:-0"))
    assume(str(value).lower() not in redact._TRIVIAL)
    r = Redactor()
    r.harvest({"a": [{"b": {key: value}}]})
    s = str(value)
    for text in (f"{noise}{s}{noise}", json.dumps({"x": f"{noise}{s}"}), f"{noise},{s}\n"):
        assert s not in r.text(text)


# -- fail closed -------------------------------------------------------------------------


def test_safe_text_fails_closed_without_the_secret(monkeypatch):
    r = Redactor()
    r.add_secret("very-secret-value-123")

    def boom(s):
        raise ValueError(f"cannot redact {s}")

    monkeypatch.setattr(r, "text", boom)
    with pytest.raises(RedactionFailed) as info:
        r.safe_text("very-secret-value-123")
    assert "very-secret-value-123" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_safe_data_fails_closed(monkeypatch):
    monkeypatch.setattr(redact.REDACTOR, "_data", lambda *a: 1 / 0)
    with pytest.raises(RedactionFailed):
        redact.safe_data({"a": 1})


def test_text_is_fast_on_large_outputs():
    import time

    redact.harvest(AUTH_STATUS)
    big = json.dumps(
        [{"conid": i, "desc": "some company name inc", "price": 123.45} for i in range(3000)]
    )
    start = time.perf_counter()
    out = redact.text(big)
    elapsed = time.perf_counter() - start
    assert out == big
    assert elapsed < 1.0  # ~15 ms on the dev machine for 200 kB


# -- logging ------------------------------------------------------------------------------

SECRET = "LOGCANARY-7f3a9e21-session"


def test_debug_logging_never_emits_a_secret(capsys, restore_logging):
    install_logging(debug=True)
    redact.add_secret(SECRET)
    log = logging.getLogger("ibgw.test")
    log.debug("value %s in args", SECRET)
    log.info("dict args %(s)s", {"s": SECRET})
    log.warning("in the message " + SECRET)
    log.debug("header Cookie: JSESSIONID=NOTHARVESTED99")
    try:
        try:
            raise KeyError(SECRET)
        except KeyError as inner:
            raise RuntimeError(f"request failed for session={SECRET}") from inner
    except RuntimeError:
        log.exception("failed: %s", SECRET)
    log.error("stack", stack_info=True)
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "NOTHARVESTED99" not in err
    assert "RuntimeError" in err and "KeyError" in err and "Traceback" in err
    assert err.count(REDACTED) >= 6
    assert "value [redacted] in args" in err


def test_other_handlers_see_redacted_records_too(restore_logging):
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append((record.getMessage(), record.exc_text or "", str(record.args)))

    logging.getLogger().addHandler(Collect())
    install_logging(debug=True)
    redact.add_secret(SECRET)
    try:
        raise ValueError(SECRET)
    except ValueError:
        logging.getLogger("ibgw.test").exception("boom %s", SECRET)
    assert seen and all(SECRET not in part for entry in seen for part in entry)
    assert "ValueError" in seen[-1][1]


def test_non_debug_logging_hides_debug_and_still_redacts(capsys, restore_logging):
    install_logging(debug=False)
    redact.add_secret(SECRET)
    log = logging.getLogger("ibgw.test")
    log.debug("debug %s", SECRET)
    log.warning("warn %s", SECRET)
    err = capsys.readouterr().err
    assert "debug" not in err and SECRET not in err and "warn [redacted]" in err


def test_logging_error_in_a_record_is_withheld_not_printed(capsys, restore_logging):
    install_logging(debug=True)
    redact.add_secret(SECRET)
    logging.getLogger("ibgw.test").error("%d " + SECRET, "not-a-number")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "withheld" in err


def test_http_stack_debug_output_stays_off(capsys, restore_logging):
    http.client.HTTPConnection.debuglevel = 1
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.DEBUG)
    install_logging(debug=True)
    assert http.client.HTTPConnection.debuglevel == 0
    for name in ("urllib3", "urllib3.connectionpool", "requests", "http.client"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    logging.getLogger("urllib3.connectionpool").debug(
        'https://localhost:5000 "GET /v1/api/x?token=QQQTOKEN HTTP/1.1" 200 None'
    )
    assert logging.getLogger("ibgw.live").isEnabledFor(logging.DEBUG)
    # a warning from the HTTP stack goes through the redacting handler
    logging.getLogger("urllib3.connectionpool").warning(
        "Retrying with Cookie: JSESSIONID=JAR123456"
    )
    err = capsys.readouterr().err
    assert "QQQTOKEN" not in err and "JAR123456" not in err
    assert "Retrying" in err


def test_python_warnings_are_redacted(capsys, restore_logging):
    install_logging(debug=False)
    redact.add_secret(SECRET)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"insecure request to session {SECRET}", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert SECRET not in err and "insecure request" in err


def test_install_logging_twice_keeps_one_handler(restore_logging):
    install_logging(debug=True)
    install_logging(debug=False)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_ibgw", False)]
    assert len(ours) == 1
    assert not logging.getLogger("ibgw").isEnabledFor(logging.DEBUG)


def test_redact_imports_only_the_standard_library():
    import subprocess
    import sys

    code = (
        "import sys, ibgw; before=set(sys.modules); import ibgw.redact; "
        "new={m.split('.')[0] for m in set(sys.modules)-before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'ibgw'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
