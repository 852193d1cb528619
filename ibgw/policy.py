"""The read-only policy: which (method, path) ibgw may ever send.

``check_request(method, path, query)`` runs on the final, percent-encoded request
(the gateway facade calls it, and the live transport calls it again just before a
byte leaves). It raises :class:`ibgw.errors.PolicyRefused` unless all of these hold:

1. the method is exactly ``GET`` or ``POST``;
2. the path is hygienic: ASCII ``/seg/seg`` where a segment is letters, digits,
   ``-``, ``_``, ``~``, ``.`` or ``%20`` only, never empty, never ``.``/``..``, never
   starting or ending with a dot, no trailing ``/`` (so no dot segments, encoded
   slashes, double encoding, ``;`` parameters, backslashes, CR/LF or unicode);
3. no rule of :data:`DENY_RULES` matches (orders, replies, whatif, alerts and
   watchlist writes, FYI settings, account switching, logout, session init,
   re-authentication, unsubscribe, billed snapshots, ``/gw``, ``/clear``,
   ``/hmds/auth/init`` ...).
   Rules match a run of segments *anywhere* in the path, case-insensitively, and
   ignore a dotted suffix (``logout.json`` is ``logout``), so a server that routes
   more loosely than we parse still never sees a write;
4. no rule of :data:`QUERY_DENY_RULES` matches: a read path whose query turns it
   into a side effect (``GET /iserver/account/orders?force=true`` clears the
   gateway's order cache);
5. a POST path is one of :data:`READ_POSTS` exactly.

No plugin can change any of this: the tables are module constants and nothing
here reads configuration. :func:`is_denied` applies rules 1, 3 and 4 to an
endpoint *template* so the facade can reject a plugin that declares a denied
endpoint when the read is registered.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType

from .errors import PolicyRefused

ALLOWED_METHODS = frozenset({"GET", "POST"})

#: The only POST requests ibgw sends: reads that IBKR happens to define as POST.
READ_POSTS = frozenset(
    {
        "/iserver/auth/status",
        "/tickle",
        "/iserver/secdef/search",
        "/iserver/scanner/run",
        "/hmds/scanner",
        "/pa/performance",
        "/pa/transactions",
        "/pa/allperiods",
        "/pa/summary",
        "/iserver/contract/rules",
        "/trsrv/secdef",
        "/calendar/events",
    }
)

# Reason codes carried by PolicyRefused.reason.
BAD_METHOD = "bad-method"
BAD_PATH = "bad-path"
BAD_QUERY = "bad-query"
DENIED = "denied-endpoint"
POST_NOT_ALLOWED = "post-not-allowed"

MAX_PATH = 2048
MAX_QUERY_ITEMS = 100
MAX_QUERY_VALUE = 8192

_PATH = re.compile(r"(?:/(?:[A-Za-z0-9_~.\-]|%20)+)+")
_DOTS = re.compile(r"(?:^|/)\.|\.(?:/|$)|\.\.")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_OVERRIDE_NAMES = frozenset(
    {"_method", "method", "x-http-method-override", "x-http-method", "x-method-override"}
)


@dataclass(frozen=True)
class DenyRule:
    """One denied shape. ``pattern`` is a run of segments: a literal, ``*`` (any one
    segment) or ``prefix*`` (a segment starting with prefix). It matches anywhere in
    the path unless ``exact`` (then it must be the whole path). ``methods`` is
    ``None`` for every method, or ``"write"`` for every method except GET."""

    pattern: str
    reason: str
    methods: str | None = None
    exact: bool = False

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.pattern.strip("/").split("/"))

    def applies_to(self, method: str) -> bool:
        return self.methods is None or method != "GET"


_ORDERS = "orders are never placed, modified, cancelled or previewed"
DENY_RULES: tuple[DenyRule, ...] = (
    DenyRule("/iserver/account/*/order*", _ORDERS),
    DenyRule("/iserver/account/order*", _ORDERS, "write"),
    DenyRule("/iserver/orders", _ORDERS, "write"),
    DenyRule("/whatif", _ORDERS),
    DenyRule("/iserver/reply", "order replies are never sent"),
    DenyRule("/iserver/notification", "order notifications are never answered"),
    DenyRule("/iserver/questions", "order-question suppression is never changed"),
    DenyRule("/iserver/account/*/alert*", "alerts are never created, changed or deleted", "write"),
    DenyRule("/iserver/account/alert*", "alerts are never created, changed or deleted", "write"),
    DenyRule("/iserver/watchlist*", "watchlists are never created or deleted", "write"),
    DenyRule("/fyi", "FYI settings and delivery options are never changed", "write"),
    DenyRule("/iserver/account/allocation", "allocation groups are never changed", "write"),
    DenyRule("/fa", "advisor (FA) models and presets are never touched", "write"),
    DenyRule("/iserver/account", "the selected account is never switched", "write", exact=True),
    DenyRule("/dynaccount", "the selected account is never switched"),
    DenyRule("/logout", "ibgw never logs out"),
    DenyRule("/ssodh", "ibgw never initialises or takes over a brokerage session"),
    DenyRule("/iserver/auth/init", "ibgw never initialises or takes over a brokerage session"),
    DenyRule("/hmds/auth/init", "ibgw never initialises a historical-data (HMDS) session"),
    DenyRule("/reauthenticate", "ibgw never re-authenticates"),
    DenyRule("/unsubscribe*", "market-data unsubscribe closes the user's streams"),
    DenyRule("/regsnapshot", "regulatory snapshots are billed per call"),
    DenyRule("/gw", "the /gw/api/v1 account-management API is out of scope"),
    DenyRule("/clear", "the gateway-local /clear empties the gateway's session"),
    DenyRule("/invalidate", "caches are never invalidated"),
    DenyRule("/acesws", "account owner personal data is out of scope"),
    DenyRule("/oauth", "token endpoints are out of scope"),
    DenyRule("/oauth2", "token endpoints are out of scope"),
    DenyRule("/ws", "the websocket is not reachable over plain HTTP requests"),
)


@dataclass(frozen=True)
class QueryDenyRule:
    """A read path made a side effect by one query parameter. ``pattern`` is a run
    of segments as in :class:`DenyRule` (matched anywhere); ``param`` is compared
    case-insensitively, ignoring a ``[]`` suffix; every value except those in
    ``allowed`` (compared case-insensitively, blanks stripped) is refused, so
    ``force=TRUE``, ``force=1`` or ``force=yes`` are refused as well as ``force=true``."""

    pattern: str
    param: str
    reason: str
    allowed: tuple[str, ...] = ("false",)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.pattern.strip("/").split("/"))


QUERY_DENY_RULES: tuple[QueryDenyRule, ...] = (
    QueryDenyRule(
        "/iserver/account/orders",
        "force",
        "force=true clears the gateway's order cache (IBKR spec: 'clear cache of orders')",
    ),
)


# -- helpers -----------------------------------------------------------------


def _escape(text: str, limit: int = 96) -> str:
    """Printable-ASCII rendering of untrusted text: controls and non-ASCII escaped."""
    out = []
    for ch in text[:limit]:
        if " " <= ch < "\x7f" and ch != "\\":
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\")
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    if len(text) > limit:
        out.append("...")
    return "".join(out)


def _template_ish(path: str) -> str:
    """The path with identifier-like segments replaced by ``{id}`` (account ids,
    conids, symbols never appear in a refusal message)."""
    if not isinstance(path, str):
        return "<not a string>"
    parts = []
    for seg in path.split("/"):
        if (
            seg == ""
            or re.fullmatch(r"[a-z][a-z_\-]*[0-9]?", seg)
            or re.fullmatch(r"\{[A-Za-z_]\w*\}", seg)
        ):
            parts.append(seg)
        else:
            parts.append("{id}")
    return _escape("/".join(parts))


def _show_method(method) -> str:
    if isinstance(method, str) and re.fullmatch(r"[A-Za-z]{1,10}", method):
        return method
    return "'" + _escape(str(method) if isinstance(method, str) else "<not a string>", 16) + "'"


def _refuse(method, path, why: str, reason: str):
    raise PolicyRefused(
        f"refused by the read-only policy: {_show_method(method)} {_template_ish(path)} ({why})",
        reason=reason,
    )


def _norm_segment(seg: str) -> str:
    """Segment as a loose router might see it: case-folded, ``%20`` and surrounding
    blanks dropped, any ``.suffix`` or ``;param`` ignored."""
    seg = seg.replace("%20", " ").lower()
    for sep in (".", ";"):
        seg = seg.split(sep, 1)[0]
    return seg.strip()


def _rule_regex(rule: DenyRule) -> str:
    """The rule over "/seg/seg/.../", without the leading "/" (factored out below)."""
    parts = []
    for seg in rule.segments:
        if seg == "*":
            parts.append("[^/]*")
        elif seg.endswith("*"):
            parts.append(re.escape(seg[:-1]) + "[^/]*")
        else:
            parts.append(re.escape(seg))
    return "/".join(parts) + ("/$" if rule.exact else "/")


def _method_regex(method: str) -> re.Pattern:
    anywhere = [(i, r) for i, r in enumerate(DENY_RULES) if r.applies_to(method) and not r.exact]
    exact = [(i, r) for i, r in enumerate(DENY_RULES) if r.applies_to(method) and r.exact]
    alts = [f"/(?:{'|'.join(f'(?P<r{i}>{_rule_regex(r)})' for i, r in anywhere)})"]
    alts += [f"^/(?P<r{i}>{_rule_regex(r)})" for i, r in exact]
    return re.compile("|".join(alts))


# One regex per method over "/seg/seg/.../" (normalised segments): a match anywhere
# is a denied run of segments; the group name says which rule. The common leading
# "/" is factored out so the engine tries the alternatives only at segment starts.
_DENY_RE = {method: _method_regex(method) for method in ALLOWED_METHODS}


def _denied_rule(method: str, segs: list[str]) -> DenyRule | None:
    m = _DENY_RE[method].search("/" + "/".join(segs) + "/")
    return DENY_RULES[int(m.lastgroup[1:])] if m else None


def _segments(path: str) -> list[str]:
    return [_norm_segment(s) for s in path.split("/") if s]


# -- public ------------------------------------------------------------------


def is_denied(method: str, path: str) -> str | None:
    """Why ``(method, path)`` may never be sent, or ``None``.

    ``path`` may be a template (``/portfolio/{accountId}/ledger``); a ``{var}``
    segment matches only ``*`` in a rule. Path hygiene is not checked here (a
    template has braces); :func:`check_request` checks it on the final path.
    """
    if not isinstance(method, str) or method not in ALLOWED_METHODS:
        return "only GET and POST requests are ever sent"
    if not isinstance(path, str):
        return "the path is not a string"
    rule = _denied_rule(method, _segments(path))
    if rule is not None:
        return rule.reason
    if method == "POST" and path not in READ_POSTS:
        return "POST is allowed only for the read-only POST endpoints"
    return None


def check_request(method: str, path: str, query: Iterable | Mapping = ()) -> None:
    """Raise :class:`PolicyRefused` unless the final request is an allowed read."""
    if not isinstance(method, str) or method not in ALLOWED_METHODS:
        _refuse(method, path, "only GET and POST are sent", BAD_METHOD)
    segs = _check_path(method, path)
    _check_query(method, path, query)
    rule = _denied_rule(method, segs)
    if rule is not None:
        _refuse(method, path, rule.reason, DENIED)
    why = _query_denied(segs, query)
    if why is not None:
        _refuse(method, path, why, DENIED)
    if method == "POST" and path not in READ_POSTS:
        _refuse(
            method, path, "POST is allowed only for the read-only POST endpoints", POST_NOT_ALLOWED
        )


def _contains_run(segs: list[str], run: tuple[str, ...]) -> bool:
    n = len(run)
    return any(tuple(segs[i : i + n]) == run for i in range(len(segs) - n + 1))


def _query_denied(segs: list[str], query) -> str | None:
    """Why the query makes this read path a side effect, or ``None`` (the query
    was checked to be pairs of strings already)."""
    if not query:
        return None
    items = list(query.items() if isinstance(query, Mapping) else query)
    for rule in QUERY_DENY_RULES:
        if not _contains_run(segs, rule.segments):
            continue
        for name, value in items:
            base = name.lower()
            if base.endswith("[]"):
                base = base[:-2]
            if base == rule.param and value.strip().lower() not in rule.allowed:
                return rule.reason
    return None


def _check_path(method: str, path) -> list[str]:
    """Hygiene; returns the normalised segments."""
    if not isinstance(path, str):
        _refuse(method, path, "path is not a string", BAD_PATH)
    if len(path) > MAX_PATH or not _PATH.fullmatch(path):
        _refuse(method, path, "path must be /segment/... of A-Z a-z 0-9 - _ ~ . %20", BAD_PATH)
    if _DOTS.search(path):
        _refuse(method, path, "dot segment or dotted segment edge", BAD_PATH)
    segs = _segments(path)
    if "" in segs:
        _refuse(method, path, "blank path segment", BAD_PATH)
    return segs


def _check_query(method: str, path: str, query) -> None:
    if query is None:
        return
    items = query.items() if isinstance(query, Mapping) else query
    try:
        items = list(items)
    except TypeError:
        _refuse(method, path, "query is not a list of pairs", BAD_QUERY)
    if len(items) > MAX_QUERY_ITEMS:
        _refuse(method, path, "too many query parameters", BAD_QUERY)
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            _refuse(method, path, "query is not a list of pairs", BAD_QUERY)
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            _refuse(method, path, "query names and values must be strings", BAD_QUERY)
        if not _QUERY_NAME.fullmatch(name):
            _refuse(method, path, "query parameter name outside A-Z a-z 0-9 _ . - [ ]", BAD_QUERY)
        if name.lower() in _OVERRIDE_NAMES:
            _refuse(method, path, "method-override parameter", BAD_QUERY)
        if len(value) > MAX_QUERY_VALUE or _CONTROL.search(value):
            _refuse(method, path, "control characters or oversized query value", BAD_QUERY)


# -- the websocket ----------------------------------------------------------------
# The gateway's websocket (/v1/api/ws) carries subscriptions, and also order and
# P&L topics. Only ibgw's own market-depth subscription, its own clean-up of it and
# the keepalive are ever sent; every websocket message ibgw sends passes through
# check_ws_message first (the core's websocket, ``ReadContext.websocket``).

MAX_WS_SEND = 2048
WS_REFUSED = "ws-topic-refused"
_ACCOUNT = r"[A-Za-z0-9]{1,32}"
_CONID = r"[0-9]{1,12}"
_EXCH = r"[A-Z0-9.]{1,16}"
_SBD = re.compile(rf"sbd\+({_ACCOUNT})\+({_CONID})(?:\+{_EXCH})?")  # subscribe market depth
_UBD = re.compile(rf"ubd\+({_ACCOUNT})")  # unsubscribe market depth (account-wide)


def ws_topic(text) -> str:
    head = text[:3] if isinstance(text, str) else ""
    return head if re.fullmatch(r"[A-Za-z]{1,3}", head) else "?"


def check_ws_message(text, subscribed=None) -> tuple[str, str, str] | None:
    """Raise :class:`PolicyRefused` unless ``text`` is a message ibgw may send on the
    gateway's websocket; return what it does to the subscriptions.

    ``subscribed`` is the set of ``(account, conid)`` depth subscriptions this
    connection made (the caller remembers them; ``None`` is no subscription).
    Allowed, each matched in full (ASCII, no control characters, at most
    :data:`MAX_WS_SEND` characters):

    * ``sbd+ACCT+CONID[+EXCHANGE]``: subscribe market depth; returns
      ``("sbd", ACCT, CONID)``;
    * ``ubd+ACCT``: unsubscribe market depth, only as the clean-up of a
      subscription this connection made for that account (IBKR's ``ubd`` is
      account-wide: sent for any other account it could end another client's
      book); returns ``("ubd", ACCT, "")``;
    * ``tic``: the session keepalive; returns ``None``.

    Everything else is refused: orders (``sor``/``uor``), trades (``str``), P&L
    (``spl``/``upl``), market data (``smd``, and ``umd``, whose REST twin, the
    unsubscribe, is refused too: it ends the user's own streams), historical data
    (``smh``), echo, anything unknown, malformed or padded.
    """
    refused = PolicyRefused(
        f"refused by the read-only policy: websocket topic '{ws_topic(text)}' is never sent",
        reason=WS_REFUSED,
        hint="Only ibgw's own market-depth subscription, its clean-up and the keepalive are sent.",
    )
    if (
        not isinstance(text, str)
        or not text
        or len(text) > MAX_WS_SEND
        or not text.isascii()
        or any(c < " " or c == "\x7f" for c in text)
    ):
        raise refused
    if text == "tic":
        return None
    m = _SBD.fullmatch(text)
    if m:
        return ("sbd", m.group(1), m.group(2))
    m = _UBD.fullmatch(text)
    if m and subscribed and any(acct == m.group(1) for acct, _ in subscribed):
        return ("ubd", m.group(1), "")
    if m:
        raise PolicyRefused(
            "refused by the read-only policy: websocket topic 'ubd' is sent only to end "
            "a subscription this connection made",
            reason=WS_REFUSED,
            hint="An account-wide unsubscribe could end other clients' market depth.",
        )
    raise refused


# -- refusals reach the running read ---------------------------------------------------
# The runner sets a sink for the read it runs (a context variable: each read, and the
# threads of ctx.parallel, see their own); a refusal below the facade (the transport,
# the websocket, this module's seal) calls it, so the read is audited as denied even
# when plugin code swallows the exception.
_REFUSAL_SINK: ContextVar = ContextVar("ibgw_refusal_sink", default=None)


def refused(
    message: str,
    reason: str,
    method: str = "",
    path: str = "",
    *,
    template: str | None = None,
    auditor=None,
    command: str = "",
) -> PolicyRefused:
    """Report a containment refusal to the running read and return the exception to
    raise. ``path`` is reduced to a template-like form (no identifiers); ``template``
    is used as it is (ibgw's own words). With no read running, ``auditor`` (if
    given) records the ``denied`` record instead."""
    if template is None:
        template = _template_ish(path) if path else "?"
    method = str(method)[:10] or "?"
    sink = _REFUSAL_SINK.get()
    try:
        if sink is not None:
            sink(method, template, reason)
        elif auditor is not None:
            auditor.denied(command, method, template, reason)
    except Exception:  # noqa: BLE001 - reporting must not hide the refusal
        pass
    return PolicyRefused(message, reason=reason)


# -- the module itself ----------------------------------------------------------------
# The policy cannot be rebound at run time: ``ibgw.policy.is_denied = ...`` (or
# ``monkeypatch.setattr``) raises. Consumers (the facade, the transports, read
# registration) also hold the functions by reference, taken when they are built, so
# a name rebound through the module's ``__dict__`` does not reach them either. What
# this does not stop (in-process code can always do harm: ``ctypes``, ``gc``, editing
# a function's ``__code__``) is described in docs/security.md, "Containment".


class _SealedModule(type(re)):
    def __setattr__(self, name, value):
        raise refused(
            f"refused: ibgw.policy.{_escape(str(name), 40)} cannot be changed at run time",
            "policy-tampering",
            template="ibgw.policy",
        )

    def __delattr__(self, name):
        self.__setattr__(name, None)


_DENY_RE = MappingProxyType(_DENY_RE)
sys.modules[__name__].__class__ = _SealedModule
