"""Scenarios: how the whole fake gateway behaves, one named state at a time.

Each scenario reproduces what a real Client Portal Gateway answers in one
situation (see the endpoint reference §1.3). The answers that differ only in
their JSON (auth status, tickle, ``/iserver/accounts`` while competing) are
scenario-restricted routes in ``ibgw_fake/fixtures/scenarios.json``; the
behaviour that applies to every path is here.

Fixtures may declare more scenarios (``base`` + ``hide``); ``scenario_names``
and ``describe`` list both kinds.
"""

from __future__ import annotations

import json

from ibgw.errors import UsageError

from .router import FakeAnswer, FakeRequest, FakeRouter, dump_json

SCENARIOS = {
    "connected": "Healthy gateway: authenticated, connected, not competing (the default).",
    "keepalive-success": "Healthy gateway; tickle keeps the session alive.",
    "missing-session": "Gateway up, never logged in: every proxied call answers HTTP 401.",
    "expired-session": "SSO session expired: auth/status says not authenticated, not "
    "connected; tickle and everything else answer 401.",
    "keepalive-expired": "Brokerage session timed out: tickle and auth/status say not "
    "authenticated (still connected); /iserver/* answers 400 'no bridge'.",
    "competing-session": "Another login competes: auth/status says competing; "
    "/iserver/accounts answers {}.",
    "no-bridge": "No brokerage bridge: /iserver/* (auth/status too) answers 400 'no bridge'; "
    "/portfolio/* still answers.",
    "gateway-down": "Gateway not running: the connection is refused (in-process) or closed "
    "without an answer (server).",
    "rate-limited": "IBKR's penalty box: every call answers 429 Too Many Requests.",
    "malformed-response": "Every call answers 200 application/json with truncated JSON.",
    "slow-gateway": "Answers never complete: in-process calls time out at their deadline; "
    "the server drips the body one byte per 0.5 s.",
    "login-page": "Every call answers 200 text/html: the gateway's login page.",
    "access-denied": "Caller IP not allowed: every call answers 404 text/plain 'Access Denied'.",
    "server-error": "IBKR side restarting: every call answers 503 Service Unavailable.",
    "documented-only": "Healthy gateway that serves only documented endpoints: routes marked "
    "undocumented answer 404 Resource not found.",
}

# built-in scenarios that behave like another one (plus their own twist)
BUILTIN_BASES = {"keepalive-success": "connected", "documented-only": "connected"}

REFUSED = "refused"
SLOW = "slow"

NO_BRIDGE = dump_json({"error": "Bad Request: no bridge", "statusCode": 400})
SERVICE_UNAVAILABLE = dump_json({"error": "Service Unavailable", "statusCode": 503})
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Client Portal Login</title></head>"
    b'<body><form id="loginform" method="post" action="/sso/Login">'
    b"<h1>Client Portal Login</h1><p>Please log in to continue.</p>"
    b'<input name="user" type="text"><input name="password" type="password">'
    b'<button type="submit">login</button></form></body></html>'
)
TRUNCATED_FALLBACK = b'{"truncat'


class ScenarioFault(Exception):
    """The scenario gives no HTTP answer. ``kind`` is :data:`REFUSED` or
    :data:`SLOW`; ``answer`` is the answer a healthy gateway would have sent
    (the server drips it in ``slow-gateway``)."""

    def __init__(self, kind: str, answer: FakeAnswer | None = None):
        super().__init__(kind)
        self.kind = kind
        self.answer = answer


def scenario_names(router: FakeRouter | None = None) -> list[str]:
    """Built-in scenario names, then those declared by the router's fixtures."""
    names = list(SCENARIOS)
    if router is not None:
        names += sorted(n for n in router.scenarios if n not in SCENARIOS)
    return names


def describe(router: FakeRouter | None = None) -> dict[str, str]:
    """Scenario name -> one-line description, built-ins first."""
    out = dict(SCENARIOS)
    if router is not None:
        for name, custom in sorted(router.scenarios.items()):
            base = f"(based on {custom.base})"
            out.setdefault(name, f"{custom.description} {base}".strip())
    return out


def chain(name: str, router: FakeRouter | None = None) -> tuple[str, ...]:
    """``name`` followed by the scenarios it is based on, ending with the built-in
    whose behaviour applies. Raises :class:`ibgw.errors.UsageError` when unknown."""
    custom = router.scenarios if router is not None else {}
    out = [name]
    while True:
        cur = out[-1]
        if cur in custom:
            nxt = custom[cur].base
        elif cur in SCENARIOS:
            nxt = BUILTIN_BASES.get(cur)
            if nxt is None:
                return tuple(out)
        else:
            raise UsageError(
                f"scenario: unknown scenario {cur}; choose one of {', '.join(scenario_names(router))}"
            )
        if nxt in out:  # the router drops cyclic declarations; this is a guard
            raise UsageError(f"scenario: scenario {name} is based on itself")
        out.append(nxt)


def check_scenario(name: str, router: FakeRouter | None = None) -> str:
    """``name`` when it is a known scenario, else :class:`ibgw.errors.UsageError`."""
    if not isinstance(name, str) or not name:
        raise UsageError(
            f"scenario: a scenario name is required; choose one of {', '.join(scenario_names(router))}"
        )
    chain(name, router)
    return name


def _truncate(body: bytes) -> bytes:
    cut = body[: len(body) // 2]
    try:
        json.loads(cut)
    except (ValueError, UnicodeDecodeError):
        return cut if cut else TRUNCATED_FALLBACK
    return TRUNCATED_FALLBACK


def _empty(status: int) -> FakeAnswer:
    return FakeAnswer(status, "text/plain", b"", {})


def respond(router: FakeRouter, request: FakeRequest) -> FakeAnswer:
    """What the fake gateway answers to ``request`` in ``request.scenario``.

    Raises :class:`ScenarioFault` where there is no HTTP answer."""
    names = chain(request.scenario, router)
    behaviour = names[-1]
    path = request.path
    iserver = path == "/iserver" or path.startswith("/iserver/")
    auth_status = path == "/iserver/auth/status"

    if behaviour == "gateway-down":
        raise ScenarioFault(REFUSED)
    if behaviour == "slow-gateway":
        raise ScenarioFault(SLOW, router.route(request, ("connected",)))
    if behaviour == "rate-limited":
        return FakeAnswer(429, "text/plain", b"Too Many Requests", {})
    if behaviour == "login-page":
        return FakeAnswer(200, "text/html", LOGIN_PAGE, {})
    if behaviour == "access-denied":
        return FakeAnswer(404, "text/plain", b"Access Denied", {})
    if behaviour == "server-error":
        return FakeAnswer(503, "application/json", SERVICE_UNAVAILABLE, {})
    if behaviour == "missing-session":
        return _empty(401)
    if behaviour == "expired-session" and not auth_status:
        return _empty(401)
    if behaviour == "keepalive-expired" and iserver and not auth_status:
        return FakeAnswer(400, "application/json", NO_BRIDGE, {})
    if behaviour == "no-bridge" and iserver:
        return FakeAnswer(400, "application/json", NO_BRIDGE, {})
    if behaviour == "malformed-response":
        answer = router.route(request, names)
        return FakeAnswer(200, "application/json", _truncate(answer.body), {})
    return router.route(request, names)
