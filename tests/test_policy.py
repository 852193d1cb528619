"""The read-only policy: every non-read in IBKR's spec is refused, reads pass, and the
usual parser tricks never reach a denied endpoint."""

from __future__ import annotations

import json
import posixpath
import re
import unicodedata
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibgw import policy
from ibgw.errors import PolicyRefused
from ibgw.policy import DENY_RULES, READ_POSTS, check_request, is_denied

SPEC = Path(__file__).resolve().parents[2] / "shared/reference/ibkr-cpapi-openapi-2.29.0.json"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options", "trace")

# GET paths of the spec that have side effects or are out of scope (SECURITY.md §3,
# cpapi-endpoints.md §14): refused even though they are GET.
GET_SIDE_EFFECTS = {
    "/iserver/marketdata/unsubscribeall",
    "/acesws/{accountId}/signatures-and-owners",
}

SAMPLES = {
    "accountId": "DU1234567",
    "accountid": "U7654321",
    "conid": "265598",
    "orderId": "1876543210",
    "replyId": "a12b34c5-6789",
    "alertId": "9876",
    "pageId": "0",
    "typecode": "BA",
    "deviceId": "dev1",
    "notificationID": "12345",
    "searchPattern": "AAPL",
}


def _load_spec():
    with open(SPEC, encoding="utf-8") as fh:
        return json.load(fh)


def _concrete(template: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: SAMPLES.get(m.group(1), "X1"), template)


def _spec_pairs():
    spec = _load_spec()
    for path, ops in spec["paths"].items():
        for method in ops:
            if method in METHODS:
                yield method.upper(), path


def _is_read(method: str, template: str) -> bool:
    if method == "GET":
        return template not in GET_SIDE_EFFECTS and not template.startswith("/gw/")
    return method == "POST" and template in READ_POSTS


SPEC_PAIRS = sorted(set(_spec_pairs()))
NON_READS = [(m, p) for m, p in SPEC_PAIRS if not _is_read(m, p)]
READS = [(m, p) for m, p in SPEC_PAIRS if _is_read(m, p)]


def _refused(method, path, query=()) -> PolicyRefused:
    with pytest.raises(PolicyRefused) as info:
        check_request(method, path, query)
    return info.value


def test_spec_walk_counts():
    # The figures published in the docs come from here; the spec has 167 pairs.
    assert len(SPEC_PAIRS) == 167
    assert len(NON_READS) >= 90
    print(
        f"spec pairs: {len(SPEC_PAIRS)}, non-reads refused: {len(NON_READS)}, reads allowed: {len(READS)}"
    )


@pytest.mark.parametrize(("method", "template"), NON_READS, ids=[f"{m} {p}" for m, p in NON_READS])
def test_every_spec_non_read_is_refused(method, template):
    err = _refused(method, _concrete(template))
    assert err.exit_code == 6
    # The template itself is denied at registration time too.
    assert is_denied(method, template) is not None


@pytest.mark.parametrize(("method", "template"), READS, ids=[f"{m} {p}" for m, p in READS])
def test_every_spec_read_passes(method, template):
    check_request(method, _concrete(template), (("conids", "265598,8314"), ("period", "1d")))
    assert is_denied(method, template) is None


def test_read_posts_are_in_the_spec_or_documented_undocumented():
    spec_posts = {p for m, p in SPEC_PAIRS if m == "POST"}
    # /hmds/scanner, /pa/summary, /trsrv/secdef (POST) and /calendar/events are
    # legacy or undocumented reads (cpapi-endpoints.md §14).
    assert READ_POSTS - spec_posts == {
        "/hmds/scanner",
        "/pa/summary",
        "/trsrv/secdef",
        "/calendar/events",
    }


# -- the explicit denylist ------------------------------------------------------------

DENIED = [
    ("POST", "/iserver/account/DU1/orders"),
    ("GET", "/iserver/account/DU1/orders"),
    ("POST", "/iserver/account/DU1/orders/whatif"),
    ("POST", "/iserver/account/DU1/order/whatif"),
    ("POST", "/iserver/account/DU1/order/123"),
    ("POST", "/iserver/account/DU1/order"),
    ("GET", "/iserver/account/DU1/order/123"),
    ("POST", "/iserver/account/orders"),
    ("POST", "/iserver/account/orders/fagroup"),
    ("POST", "/iserver/orders"),
    ("POST", "/iserver/reply/abc-123"),
    ("GET", "/iserver/reply/abc-123"),
    ("POST", "/iserver/notification"),
    ("GET", "/iserver/notification"),
    ("POST", "/iserver/questions/suppress"),
    ("POST", "/iserver/questions/suppress/reset"),
    ("GET", "/iserver/questions/suppress/reset"),
    ("POST", "/iserver/account/DU1/alert"),
    ("POST", "/iserver/account/DU1/alert/activate"),
    ("POST", "/iserver/account/alert/1"),
    ("POST", "/iserver/watchlist"),
    ("POST", "/iserver/watchlists"),
    ("POST", "/fyi/settings/BA"),
    ("POST", "/fyi/deliveryoptions/device"),
    ("POST", "/fyi/disclaimer/BA"),
    ("POST", "/fyi/notifications/1"),
    ("POST", "/iserver/account"),
    ("POST", "/iserver/dynaccount"),
    ("GET", "/iserver/dynaccount"),
    ("GET", "/logout"),
    ("POST", "/logout"),
    ("POST", "/iserver/auth/ssodh/init"),
    ("GET", "/iserver/auth/ssodh/init"),
    ("POST", "/iserver/auth/init"),
    ("GET", "/iserver/reauthenticate"),
    ("POST", "/iserver/reauthenticate"),
    ("GET", "/iserver/marketdata/unsubscribeall"),
    ("POST", "/iserver/marketdata/unsubscribe"),
    ("GET", "/iserver/marketdata/265598/unsubscribe"),
    ("GET", "/md/regsnapshot"),
    ("GET", "/gw/api/v1/accounts"),
    ("GET", "/gw/api/v1/echo/https"),
    ("GET", "/clear"),
    ("POST", "/clear"),
    ("POST", "/portfolio/DU1/positions/invalidate"),
    ("GET", "/portfolio/DU1/positions/invalidate"),
    ("POST", "/fa/model/list"),
    ("GET", "/acesws/DU1/signatures-and-owners"),
    ("POST", "/oauth/request_token"),
    ("POST", "/oauth2/api/v1/token"),
    ("GET", "/oauth/live_session_token"),
    ("GET", "/ws"),
    ("POST", "/iserver/account/allocation/group"),
    ("POST", "/portfolio/allocation"),
    ("POST", "/iserver/marketdata/snapshot"),
    ("POST", "/portfolio/accounts"),
]


@pytest.mark.parametrize(("method", "path"), DENIED, ids=[f"{m} {p}" for m, p in DENIED])
def test_denylist(method, path):
    err = _refused(method, path)
    assert err.reason in (policy.DENIED, policy.POST_NOT_ALLOWED)
    assert is_denied(method, path) is not None


# -- method spellings ------------------------------------------------------------------

ODD_METHODS = [
    "get",
    "Get",
    "post",
    "GET ",
    " GET",
    "GET\r\n",
    "G\u0415T",
    "PUT",
    "PATCH",
    "DELETE",
    "HEAD",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "",
    "GET\x00",
    "GETS",
    "POST\t",
    "ＧＥＴ",
    "GE",
    None,
    b"GET",
    1,
]


@pytest.mark.parametrize("method", ODD_METHODS, ids=[repr(m) for m in ODD_METHODS])
def test_odd_methods_refused(method):
    err = _refused(method, "/iserver/accounts")
    assert err.reason == policy.BAD_METHOD
    assert "\r" not in str(err) and "\n" not in str(err) and str(err).isascii()


# -- path tricks -----------------------------------------------------------------------

TRICKS = [
    "/iserver/./account/1/orders",
    "/iserver/../logout",
    "/iserver/%2e%2e/logout",
    "/iserver/%2E%2E/logout",
    "/iserver/.%2e/logout",
    "/iserver/%2e./logout",
    "/iserver/accounts/..",
    "/iserver/accounts/.",
    "/./logout",
    "/../logout",
    "/..",
    "/.",
    "/iserver%2flogout",
    "/iserver%2Flogout",
    "/iserver%252flogout",
    "/iserver%252Flogout",
    "/iserver/..%2flogout",
    "/iserver/..%2Flogout",
    "/iserver/%2e%2e%2flogout",
    "/iserver/%252e%252e/logout",
    "/iserver%5clogout",
    "/iserver%5c..%5clogout",
    "/iserver\\..\\logout",
    "/iserver/..\\logout",
    "/iserver%00/accounts",
    "/iserver/accounts%00",
    "/iserver/accounts\x00",
    "/logout;x=1",
    "/iserver/accounts;/../../logout",
    "/iserver;jsessionid=1/accounts",
    "/iserver/accounts;",
    "//logout",
    "/iserver//accounts",
    "/iserver///accounts",
    "/iserver/accounts/",
    "/",
    "",
    "logout",
    "iserver/accounts",
    "/iserver/accounts?x=1",
    "/iserver/accounts#frag",
    "/iserver/accounts\r\nX-Method-Override: DELETE",
    "/iserver/accounts\r\n",
    "/iserver/accounts\n",
    "/iserver/accounts\rGET /logout",
    "/iserver/accounts%0d%0aX: y",
    "/iserver/accounts%0D%0A",
    "/iserver/accounts HTTP/1.1\r\nHost: x",
    "/iserver/ accounts",
    "/iserver/\taccounts",
    "/ｌogout",
    "/ＬＯＧＯＵＴ",
    "/iserver/account/1/orders\u2024",
    "/iserver/account/1/orders\u2025",
    "/iserver/account/1/ordersǃ",
    "/iserver/accounts\u200b",
    "/iserver/ac\u0441ounts",
    "/iserver/accounts\ufeff",
    "/logout\u3002",
    "/logout.",
    "/logout..",
    "/logout...",
    "/iserver/account/1/orders.",
    "/iserver/reauthenticate.",
    "/logout.json",
    "/logout.html",
    "/LOGOUT",
    "/Logout",
    "/iserver/ReAuthenticate",
    "/iserver/Account/DU1/Orders",
    "/iserver/account/DU1/ORDERS",
    "/iserver/marketdata/UnsubscribeAll",
    "/GW/api/v1/accounts",
    "/iserver/%20logout",
    "/%20logout%20",
    "/iserver/accounts/%20",
    "/iserver/accounts/%20%20",
    "/iserver/%20./accounts",
    "/iserver/%20../accounts",
    "/iserver/accounts/%25",
    "/iserver/accounts/%41",
    "/iserver/accounts%3b",
    "/iserver/accounts%3f",
    "/iserver/accounts%23",
    "/v1/api/logout",
    "/portfolio/DU1/../../logout",
    "/portfolio/..%2f..%2flogout/positions/0",
    "/portfolio/DU1%2f..%2f..%2flogout/positions/0",
    "/portfolio/DU1/positions/0/../../../../iserver/account/DU1/orders",
    "/iserver/contract/265598/..%252f..%252flogout/info",
    "/iserver/contract/1/info/logout",
    "/iserver/account/search/logout",
    "/iserver/account/search/orders",
    "/portfolio/DU1/iserver/account/DU1/orders",
    "/iserver/secdef/search/reauthenticate",
    "/portfolio/DU1/ledger/gw",
    "/iserver/contract/unsubscribeall/info",
    "/iserver/accounts/.hidden",
    "/iserver/accounts/..hidden",
    "/iserver/accounts/a..b",
    "/iserver/accounts:443",
    "/iserver/accounts@evil",
    "/iserver/accounts&x",
    "/iserver/accounts=x",
    "/iserver/accounts+x",
    "/iserver/accounts'",
    '/iserver/accounts"',
    "/iserver/accounts<script>",
    "/iserver/accounts{x}",
    "/iserver/account/{accountId}/summary",
    "/iserver/accounts|x",
    "/iserver/accounts`",
    "/iserver/accounts$",
    "/iserver/accounts!",
    "/iserver/accounts*",
    "/iserver/accounts,",
    "/iserver/accounts(x)",
    "/iserver/accounts[0]",
    "/iserver/accounts^",
    "/" + "a" * 3000,
    "/iserver/accounts\x7f",
    "/iserver/accounts\x1b[31m",
    "/iserver/accounts\u0085",
    "/iserver/accounts\u2028",
]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", TRICKS, ids=[repr(t)[1:-1][:60] for t in TRICKS])
def test_path_tricks_refused(method, path):
    err = _refused(method, path)
    message = str(err)
    assert (
        message.isascii() and "\r" not in message and "\n" not in message and "\x00" not in message
    )
    assert len(message) < 300


ODD_PATH_TYPES = [None, b"/iserver/accounts", 1, ["/iserver/accounts"], object()]


@pytest.mark.parametrize("path", ODD_PATH_TYPES, ids=[type(p).__name__ for p in ODD_PATH_TYPES])
def test_non_string_paths_refused(path):
    _refused("GET", path)
    assert is_denied("GET", path) is not None


# Identifiers a plugin might substitute into an allowed template: raw, and encoded
# the way the gateway facade encodes path values (quote(value, safe="")).
HOSTILE_IDS = [
    "..",
    ".",
    "a/../../logout",
    "../logout",
    "%2e%2e",
    "%2f",
    "%252f",
    "DU1\r\nX: y",
    "DU1\n",
    "DU1\x00",
    "ＤＵ１",
    "DU1\u2024",
    "DU1;x=1",
    "DU1?x=1",
    "DU1#x",
    "",
    " ",
    "DU1/",
    "DU1\\..\\logout",
    "logout",
    "..;",
    "DU1.",
    ".DU1",
    "reauthenticate",
    "gw",
    "a/b",
    "x/../../iserver/account/DU1/orders",
    "DU1%00",
    "DU1\t",
]
TEMPLATES = ["/portfolio/{}/ledger", "/iserver/account/{}/summary", "/iserver/contract/{}/info"]


@pytest.mark.parametrize("ident", HOSTILE_IDS, ids=[repr(i)[1:-1] for i in HOSTILE_IDS])
@pytest.mark.parametrize("template", TEMPLATES)
def test_hostile_identifiers_refused_encoded(template, ident):
    _refused("GET", template.format(quote(ident, safe="")))


RAW_IDS = [
    i for i in HOSTILE_IDS if i != "a/b"
]  # a raw "/" is a new segment: the facade encodes it


@pytest.mark.parametrize("ident", RAW_IDS, ids=[repr(i)[1:-1] for i in RAW_IDS])
@pytest.mark.parametrize("template", TEMPLATES)
def test_hostile_identifiers_refused_raw(template, ident):
    _refused("GET", template.format(ident))


# -- queries ----------------------------------------------------------------------------

BAD_QUERIES = [
    (("symbol", "AAPL\r\nX-Evil: 1"),),
    (("symbol", "AAPL\n"),),
    (("symbol", "AAPL\x00"),),
    (("symbol", "\x85"),),
    (("sym\r\nbol", "AAPL"),),
    (("", "AAPL"),),
    (("a b", "x"),),
    (("_method", "DELETE"),),
    (("X-HTTP-Method-Override", "PUT"),),
    (("symbol", None),),
    (("symbol", 1),),
    (("symbol",),),
    ("symbol=AAPL",),
    (("symbol", "x" * 9000),),
    tuple(("a", "b") for _ in range(101)),
]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=[repr(q)[:40] for q in BAD_QUERIES])
def test_bad_queries_refused(query):
    err = _refused("GET", "/iserver/secdef/search", query)
    assert err.reason == policy.BAD_QUERY
    assert str(err).isascii() and "\n" not in str(err)


def test_good_queries_pass():
    check_request(
        "GET", "/iserver/secdef/search", (("symbol", "BRK B"), ("name", "true"), ("conids", "1,2"))
    )
    check_request("GET", "/iserver/secdef/search", {"symbol": "Ünïcode & = ? # / %"})
    check_request("GET", "/iserver/accounts", None)
    check_request("GET", "/iserver/account/search/BRK%20B")
    check_request("GET", "/iserver/secdef/search", [["symbol", "AAPL"]])


def test_refusal_message_names_method_and_template_not_ids():
    err = _refused("POST", "/iserver/account/DU7654321/orders")
    assert "POST" in str(err)
    assert "/iserver/account/{id}/orders" in str(err)
    assert "DU7654321" not in str(err)
    assert err.reason == policy.DENIED


def test_is_denied_templates():
    assert is_denied("POST", "/iserver/account/{accountId}/orders")
    assert is_denied("GET", "/iserver/marketdata/{conid}/unsubscribe")
    assert is_denied("DELETE", "/iserver/account/{accountId}/order/{orderId}")
    assert is_denied("POST", "/portfolio/{accountId}/positions/invalidate")
    assert is_denied("post", "/tickle")  # exact spelling only
    assert is_denied("GET", "/portfolio/{accountId}/positions/{pageId}") is None
    assert is_denied("POST", "/iserver/secdef/search") is None
    assert is_denied("GET", "/iserver/account/{accountId}/alerts") is None


def test_rules_are_immutable_module_constants():
    assert isinstance(DENY_RULES, tuple) and isinstance(READ_POSTS, frozenset)
    with pytest.raises((AttributeError, TypeError)):
        READ_POSTS.add("/logout")  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        DENY_RULES[0].pattern = "/nothing"  # type: ignore[misc]


# -- property-based ----------------------------------------------------------------------

# Single segments and runs that must never reach the gateway, however spelled.
DENIED_WORDS = [
    "logout",
    "reauthenticate",
    "ssodh",
    "unsubscribeall",
    "unsubscribe",
    "regsnapshot",
    "gw",
    "clear",
    "invalidate",
    "acesws",
    "oauth",
    "oauth2",
    "ws",
    "whatif",
    "dynaccount",
]
DENIED_RUNS = [
    ("account", "*", "orders"),
    ("account", "*", "order"),
    ("iserver", "reply"),
    ("iserver", "notification"),
    ("iserver", "questions"),
]
SEGMENT_POOL = [
    "iserver",
    "account",
    "accounts",
    "portfolio",
    "DU1",
    "265598",
    "orders",
    "order",
    "info",
    "secdef",
    "search",
    "ledger",
    "positions",
    "0",
    "reply",
    "questions",
    "notification",
    "auth",
    "status",
    "tickle",
    "marketdata",
    "snapshot",
    "contract",
    "summary",
    "x",
    "md",
    ".",
    "..",
    "",
    "%2e",
    "%2e%2e",
    "%2f",
    "%252f",
    "%20",
    ";x=1",
    "\\",
    "\r\n",
    "\x00",
    *DENIED_WORDS,
    *(w.upper() for w in DENIED_WORDS),
    *(w + ".json" for w in DENIED_WORDS),
    *(w + "." for w in DENIED_WORDS),
    *(w + ";p" for w in DENIED_WORDS),
    *("%20" + w for w in DENIED_WORDS),
    *(w.replace("o", "\uff4f") for w in DENIED_WORDS),
]


def _naive_segments(path: str) -> list[str]:
    """What a sloppy server might make of the path."""
    prev = None
    while prev != path:
        prev, path = path, unquote(path)
    path = unicodedata.normalize("NFKC", path).replace("\\", "/")
    path = posixpath.normpath("/" + path)
    segs = []
    for seg in path.lower().split("/"):
        seg = re.split(r"[.;]", seg, maxsplit=1)[0].strip()
        if seg:
            segs.append(seg)
    return segs


def _contains_denied(segs: list[str]) -> bool:
    if any(s in DENIED_WORDS or s.startswith("unsubscribe") for s in segs):
        return True
    for run in DENIED_RUNS:
        for i in range(len(segs) - len(run) + 1):
            if all(r == "*" or r == segs[i + j] for j, r in enumerate(run)):
                return True
    return False


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(st.sampled_from(SEGMENT_POOL) | st.text(max_size=6), min_size=0, max_size=8),
    method=st.sampled_from(["GET", "POST"]),
    sep=st.sampled_from(["/", "/", "/", "//", "\\", "%2f"]),
)
def test_property_denied_sequences_always_refused(segments, method, sep):
    path = "/" + sep.join(segments)
    try:
        check_request(method, path)
        allowed = True
    except PolicyRefused as err:
        allowed = False
        assert str(err).isascii() and "\n" not in str(err) and "\r" not in str(err)
    if allowed:
        assert not _contains_denied(_naive_segments(path)), path
        assert path.isascii() and ".." not in path and "%2" not in path.lower()
        if method == "POST":
            assert path in READ_POSTS


@settings(max_examples=400, deadline=None)
@given(
    method=st.one_of(st.text(max_size=8), st.sampled_from(["GET", "POST"])),
    path=st.one_of(st.text(max_size=40), st.from_regex(r"/[a-z/.%0-9]{0,30}", fullmatch=True)),
    query=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3),
)
def test_property_only_policy_refused_ever_raised(method, path, query):
    try:
        check_request(method, path, tuple(query))
    except PolicyRefused as err:
        assert str(err).isascii()
        assert "\n" not in str(err) and "\r" not in str(err)
    reason = is_denied(method, path)
    assert reason is None or isinstance(reason, str)
