"""The gateway facade: the only code path from ibgw to the network.

``Gateway.call(endpoint, ...)`` checks, in order: the endpoint is one the read
declared (or a core endpoint), the read-only policy allows its (method, path
template), every parameter matches its declared pattern, the final encoded request
passes the policy again, the session guard is clear, and the pacing slot is free.
Only then does the transport send. Answers are parsed as strict JSON; secrets in
them are harvested for redaction; HTTP outcomes become session states.
"""

from __future__ import annotations

import json
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from . import endpoints as core_endpoints
from .declarations import Endpoint, pacing_classes
from .errors import (
    IbgwError,
    ManualActionRequired,
    NotServed,
    PolicyRefused,
    SessionError,
    Unavailable,
    UsageError,
)
from .policy import check_request, is_denied
from .session import REASONS, SessionGuard, SessionStatus
from .transport import Request, Response, TransportError, claim_minter

SESSION_PATHS = {core_endpoints.AUTH_STATUS.path, core_endpoints.TICKLE.path}


def error_for(reason: str, **kw) -> IbgwError:
    """The exception for a session reason code, with its message and hint."""
    state, message, hint = REASONS[reason]
    kind = ManualActionRequired if state == "manual_action_required" else Unavailable
    return kind(kw.pop("message", message), reason=reason, hint=kw.pop("hint", hint))


_BUILTINS = []  # the plugin manager of a facade built without one (made on first use)


def _builtin_plugins():
    """A plugin manager holding only the built-in plugins. The plugin manager knows
    them by module name; this module never imports a plugin."""
    if not _BUILTINS:
        from .plugins import get_plugin_manager

        _BUILTINS.append(get_plugin_manager(load_entrypoints=False))
    return _BUILTINS[0]


def answer_too_large(path: str) -> Unavailable:
    """A gateway answer with more records, values or nesting than its endpoint family
    allows (``ibgw.jsonstrict.ANSWER_LIMITS``; docs/security.md)."""
    return Unavailable(
        f"the gateway's answer to {path} holds more records or nesting than ibgw accepts",
        reason="answer-too-large",
        hint="Narrow the request (fewer conids, a shorter period); the limits per endpoint "
        "family are in docs/security.md.",
    )


class Gateway:
    """One read's view of the gateway. Thread-safe: a read may run several calls
    in flight (the pacer keeps the rate)."""

    def __init__(
        self,
        transport,
        config,
        *,
        pacer=None,
        guard: SessionGuard | None = None,
        auditor=None,
        allowed: Iterable[Endpoint] | None = None,
        command: str = "",
        pm=None,
        needs_session: bool = True,
    ):
        self.transport = transport
        self.config = config
        self.pacer = pacer
        self.guard = guard
        self.auditor = auditor
        self.command = command
        self.pm = pm
        self.needs_session = needs_session
        self.allowed = (
            None
            if allowed is None
            else {e.key for e in allowed} | {e.key for e in core_endpoints.CORE}
        )
        # prerequisites already satisfied by this transport (shared by gateways of one process)
        self._primed = transport.__dict__.setdefault("_ibgw_primed", set())
        try:
            _adopt(transport)  # the send capability: the facade's from now on
        except PolicyRefused:
            pass  # not a ibgw.transport.Transport: every send through it is refused

    # -- public -------------------------------------------------------------
    def call(
        self,
        endpoint: Endpoint,
        *,
        path: Mapping | None = None,
        query: Mapping | None = None,
        body: Mapping | None = None,
        prerequisites: bool = True,
    ):
        """Send one declared request and return the parsed JSON answer (``None`` for 204)."""
        self._check_declared(endpoint)
        if endpoint.path not in SESSION_PATHS and self.needs_session and self.guard is not None:
            if self.guard.blocked():
                raise error_for("keepalive-expired")
        if prerequisites:
            self._prerequisites(endpoint)
        request = self._build(endpoint, path or {}, query or {}, body)
        return self._send(endpoint, request)

    def session_status(self) -> SessionStatus:
        """Classify the session through the ``ibgw_session_status`` hook (the built-in
        implementation is ``trylast``). A facade built without a plugin manager asks
        one holding only the built-in plugins."""
        pm = self.pm if self.pm is not None else _builtin_plugins()
        return pm.hook.ibgw_session_status(gateway=self)

    # -- checks -------------------------------------------------------------
    def _deny(self, endpoint: Endpoint, message: str, reason: str = "refused-by-policy"):
        if self.auditor is not None:
            self.auditor.denied(self.command, endpoint.method, endpoint.path, reason)
        raise PolicyRefused(message, reason=reason)

    def _check_declared(self, endpoint: Endpoint, _is_denied=is_denied) -> None:
        denied = _is_denied(endpoint.method, endpoint.path)
        if denied:
            self._deny(
                endpoint, f"refused by the read-only policy: {endpoint.method} {endpoint.path}"
            )
        if self.allowed is not None and endpoint.key not in self.allowed:
            self._deny(
                endpoint,
                f"refused: {endpoint.method} {endpoint.path} is not declared by this read",
                reason="undeclared-endpoint",
            )
        if endpoint.provenance == "undocumented" and not getattr(
            self.config, "allow_undocumented", True
        ):
            raise NotServed(
                f"{endpoint.method} {endpoint.path} is undocumented and allow_undocumented is off",
                reason="undocumented-disabled",
                hint="Set allow_undocumented = true to use endpoints outside IBKR's spec.",
            )

    def _prerequisites(self, endpoint: Endpoint) -> None:
        p = endpoint.path
        if p.startswith(("/iserver/marketdata/", "/iserver/account/")):
            self._prime("iserver-accounts", core_endpoints.ISERVER_ACCOUNTS)
        elif p.startswith("/portfolio/") and p not in (
            "/portfolio/accounts",
            "/portfolio/subaccounts",
        ):
            self._prime("portfolio-accounts", core_endpoints.PORTFOLIO_ACCOUNTS)

    def _prime(self, name: str, endpoint: Endpoint) -> None:
        """Make IBKR's prerequisite call once per transport, even when several
        threads of a read reach it at the same moment (each extra call would spend
        one of the gateway's 10 requests per second)."""
        if name in self._primed:
            return
        lock = self.transport.__dict__.setdefault("_ibgw_prime_lock", threading.Lock())
        with lock:
            if name not in self._primed:
                self.call(endpoint, prerequisites=False)
                self._primed.add(name)

    def _value(self, endpoint: Endpoint, name: str, value) -> str:
        pattern = endpoint.params.get(name)
        if pattern is None:
            raise PolicyRefused(
                f"refused: parameter '{name}' is not declared for {endpoint.path}",
                reason="undeclared-parameter",
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        if not re.fullmatch(pattern, text):
            raise UsageError(f"invalid value for {name}", reason="invalid-parameter")
        return text

    def _build(
        self,
        endpoint: Endpoint,
        path: Mapping,
        query: Mapping,
        body: Mapping | None,
        _check_request=check_request,
    ) -> Request:
        missing = [v for v in endpoint.path_vars if v not in path]
        if missing:
            raise UsageError(f"missing path parameter {missing[0]}", reason="invalid-parameter")
        final = endpoint.path
        for var in endpoint.path_vars:
            final = final.replace(
                "{" + var + "}", quote(self._value(endpoint, var, path[var]), safe="")
            )
        pairs = []
        for name, value in query.items():
            if value is None:
                continue
            values = value if isinstance(value, list | tuple) else [value]
            pairs.extend((name, self._value(endpoint, name, v)) for v in values)
        data = None
        if endpoint.method == "POST":
            payload = {}
            for name, value in (body or {}).items():
                if value is None:
                    continue
                self._check_body_value(endpoint, name, value)
                payload[name] = value
            data = json.dumps(payload, separators=(",", ":")).encode()
        elif body:
            raise PolicyRefused(f"refused: GET {endpoint.path} with a body", reason="body-on-get")
        try:
            _check_request(endpoint.method, final, tuple(pairs))
        except PolicyRefused as exc:  # e.g. a query that makes a read a side effect
            if self.auditor is not None:
                self.auditor.denied(self.command, endpoint.method, endpoint.path, exc.reason)
            raise
        deadline = time.monotonic() + float(getattr(self.config, "timeout", 15.0))
        return Request(endpoint.method, final, tuple(pairs), data, deadline, endpoint.path)

    def _check_body_value(self, endpoint: Endpoint, name: str, value) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                self._check_body_value(endpoint, f"{name}.{k}", v)
        elif isinstance(value, list | tuple):
            for item in value:
                self._check_body_value(endpoint, name, item)
        else:
            self._value(endpoint, name, value)

    # -- sending ------------------------------------------------------------
    def _send(self, endpoint: Endpoint, request: Request):
        if self.pacer is not None and getattr(self.transport, "paced", True):
            self.pacer.acquire(pacing_classes(endpoint), request.deadline)
        try:
            try:
                response = _send_checked(self.transport, request)
            except TransportError as exc:
                reason = exc.kind if exc.kind in REASONS else "gateway-down"
                raise error_for(reason) from None
            return self._interpret(endpoint, response, request.deadline)
        except SessionError:
            self._forget_session()
            raise

    def memo(self, name: str) -> dict:
        """A dict shared by every facade over this transport (one process), for what
        the core remembers per session (symbol searches); emptied with the session."""
        return self.transport.__dict__.setdefault("_ibgw_" + name, {})

    def mark_primed(self, name: str) -> None:
        """Record that a prerequisite (``iserver-accounts``, ``portfolio-accounts``)
        was satisfied by a call made another way."""
        self._primed.add(name)

    def _forget_session(self) -> None:
        """A session problem may mean a new brokerage session later (IBKR resets them
        nightly): what the old one was primed with (/iserver/accounts, symbol searches
        that strikes and info depend on) must be done again. Matters for the
        long-running MCP server, whose transport outlives sessions."""
        for name in ("_ibgw_primed", "_ibgw_symbols"):
            remembered = self.transport.__dict__.get(name)
            if remembered is not None:
                remembered.clear()

    #: the latest deadline of this gateway's calls: shaping the answer must end by it
    last_deadline: float | None = None

    def _interpret(self, endpoint: Endpoint, response: Response, deadline: float | None = None):
        """The parsed answer, or the error its status means. The parse is bounded by
        the endpoint family's :func:`ibgw.jsonstrict.limits_for` (``answer-too-large``)
        and by the call's deadline (``timeout``), which the runner's shaping keeps too."""
        from . import redact
        from .jsonstrict import DEADLINE, TOO_LARGE, MalformedJSON, limits_for, loads_strict

        if deadline is not None:
            self.last_deadline = max(self.last_deadline or deadline, deadline)
        status, body = response.status, response.body
        stripped = body.lstrip()[:512]
        if status == 204 or (200 <= status < 300 and not body.strip()):
            return None
        if 200 <= status < 300:
            if "html" in (response.content_type or "").lower() or stripped.startswith(b"<"):
                raise error_for("login-page")
            try:
                data = loads_strict(body, limits=limits_for(endpoint.path), deadline=deadline)
            except MalformedJSON as exc:
                if exc.reason == TOO_LARGE:
                    raise answer_too_large(endpoint.path) from None
                if exc.reason == DEADLINE:
                    raise error_for("timeout") from None
                raise error_for("malformed-response") from None
            redact.harvest(data)
            if isinstance(data, dict) and data.get("error") == "no session":
                raise error_for("no-session")
            return data
        if status == 401:
            raise error_for("not-logged-in")
        if status == 403:
            raise error_for("forbidden")
        if status == 404:
            if stripped.startswith(b"Access Denied"):
                raise error_for("ip-not-allowed")
            raise NotServed(
                f"this gateway build does not serve {endpoint.method} {endpoint.path}",
                reason="not-served",
                tried=[endpoint.key],
                hint="Run 'ibgw probe' to see which reads this gateway serves.",
            )
        if status == 400:
            if b"no bridge" in body or b"Init session first" in body:
                raise error_for("no-bridge")
            raise UsageError(
                f"the gateway rejected the request to {endpoint.path} (400)",
                reason="gateway-rejected",
                hint="Check the symbol, conid or account you gave.",
            )
        if status == 429:
            raise error_for("rate-limited")
        if status >= 500:
            raise error_for("gateway-error")
        if 300 <= status < 400:
            raise error_for("redirect-refused")
        raise error_for("unexpected-status")


# -- the hand-off to the transport ----------------------------------------------------
def _facade_sender():
    """``send_checked(transport, request)``: the only code that holds the transports'
    minters (in this closure). It mints the single-use ticket for that exact request
    (the facade built and checked it in ``_build``) and sends; the transport runs the
    read-only policy on it once more."""
    lock = threading.Lock()
    minters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def adopt(transport):
        """Claim ``transport``'s minter (once); the facade does it when it is built,
        before any plugin code runs with that transport."""
        mint = minters.get(transport)
        if mint is None:
            with lock:
                mint = minters.get(transport)
                if mint is None:
                    mint = minters[transport] = claim_minter(transport)
        return mint

    def send_checked(transport, request: Request) -> Response:
        # the transport redeems the ticket, then runs the policy on the request again
        return transport.send(request, adopt(transport)(request))

    return send_checked, adopt


_send_checked, _adopt = _facade_sender()
