"""Errors that reach the user as one line and a documented exit code.

Messages are built only from parts ibgw chose (reason codes, endpoint templates,
counts); never from exception text of the HTTP stack, which can carry URLs, headers
or bodies. Every error carries the session state it implies, a stable reason code
and a one-line hint.
"""

from __future__ import annotations

USABLE = "usable"
MANUAL = "manual_action_required"
UNAVAILABLE = "unavailable"
STATES = (USABLE, MANUAL, UNAVAILABLE)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_MANUAL = 3
EXIT_UNAVAILABLE = 4
EXIT_NOT_SERVED = 5
EXIT_REFUSED = 6
EXIT_AUDIT = 7

EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_INTERNAL: "internal error",
    EXIT_USAGE: "usage or configuration error",
    EXIT_MANUAL: "manual_action_required: log in or refresh the login in the gateway page",
    EXIT_UNAVAILABLE: "unavailable: gateway down, unreachable, rate-limited or malformed",
    EXIT_NOT_SERVED: "not served by this gateway build, or not entitled",
    EXIT_REFUSED: "refused by the read-only policy",
    EXIT_AUDIT: "audit unavailable: no audit sink could record the call",
}

STATE_EXIT = {USABLE: EXIT_OK, MANUAL: EXIT_MANUAL, UNAVAILABLE: EXIT_UNAVAILABLE}


class IbgwError(Exception):
    """Base class. ``str()`` is the user-facing message, safe to print."""

    exit_code = EXIT_INTERNAL
    state: str | None = None
    default_reason = "internal-error"
    default_hint = ""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        hint: str | None = None,
        state: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.hint = self.default_hint if hint is None else hint
        if state is not None:
            self.state = state

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "reason": self.reason,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class UsageError(IbgwError):
    exit_code = EXIT_USAGE
    default_reason = "usage"


class ConfigError(IbgwError):
    exit_code = EXIT_USAGE
    default_reason = "invalid-config"


class SessionError(IbgwError):
    """The broker session is not usable; ``state`` says which way."""

    @classmethod
    def from_status(cls, status) -> SessionError:
        kind = ManualActionRequired if status.state == MANUAL else Unavailable
        return kind(status.message, reason=status.reason, hint=status.hint)


class ManualActionRequired(SessionError):
    exit_code = EXIT_MANUAL
    state = MANUAL
    default_reason = "not-authenticated"
    default_hint = "Log in through the gateway's web page (https://localhost:5000 by default)."


class Unavailable(SessionError):
    exit_code = EXIT_UNAVAILABLE
    state = UNAVAILABLE
    default_reason = "gateway-down"
    default_hint = "Start the Client Portal Gateway and check gateway_url."

    def __init__(self, message, *, reason=None, hint=None, state=None):
        if hint is None and reason not in (None, self.default_reason):
            # the hint of the reason code (a malformed answer is not a stopped gateway)
            entry = REASONS.get(reason)
            hint = entry[2] if entry else None
        super().__init__(message, reason=reason, hint=hint, state=state)


class NotServed(IbgwError):
    """The endpoint is not served by this gateway build, or the user is not entitled."""

    exit_code = EXIT_NOT_SERVED
    state = USABLE
    default_reason = "not-served"

    def __init__(self, message, *, tried=(), **kw):
        super().__init__(message, **kw)
        self.tried = list(tried)

    def as_dict(self) -> dict:
        d = super().as_dict()
        if self.tried:
            d["tried"] = self.tried
        return d


class PolicyRefused(IbgwError):
    """The read-only policy refused a request before any byte was sent."""

    exit_code = EXIT_REFUSED
    default_reason = "refused-by-policy"
    default_hint = "ibgw is read-only; this request is never sent."


class AuditUnavailable(IbgwError):
    exit_code = EXIT_AUDIT
    default_reason = "audit-unavailable"
    default_hint = "Fix the audit log location (see 'ibgw audit path'); nothing was sent."


# -- reason codes ------------------------------------------------------------------
LOGIN_HINT = "Log in (or refresh the login) in the gateway's web page, then run 'ibgw status'."

# reason -> (state, message, hint). Reason codes are stable: scripts may match on them.
REASONS: dict[str, tuple[str, str, str]] = {
    "ok": (USABLE, "The broker session is usable.", ""),
    "not-logged-in": (MANUAL, "The gateway has no logged-in session (HTTP 401).", LOGIN_HINT),
    "not-authenticated": (
        MANUAL,
        "The gateway is connected but the brokerage session is not authenticated.",
        LOGIN_HINT,
    ),
    "session-expired": (MANUAL, "The brokerage session has expired or was logged out.", LOGIN_HINT),
    "no-session": (MANUAL, "The gateway reports no session.", LOGIN_HINT),
    "competing-session": (
        MANUAL,
        "Another session (TWS, mobile or another browser) holds the brokerage session.",
        "Close the other session or log in again in the gateway page; ibgw never takes a session over.",
    ),
    "no-bridge": (
        MANUAL,
        "The gateway has no brokerage bridge (no bridge / Init session first).",
        LOGIN_HINT,
    ),
    "login-page": (MANUAL, "The gateway answered with its login page instead of data.", LOGIN_HINT),
    "ip-not-allowed": (
        MANUAL,
        "The gateway refused this client's address (404 Access Denied).",
        "Add this machine's address to ips.allow in the gateway's root/conf.yaml and restart it.",
    ),
    "forbidden": (MANUAL, "The gateway refused the request (HTTP 403).", LOGIN_HINT),
    "keepalive-expired": (
        UNAVAILABLE,
        "The last keepalive found the session expired; broker reads are paused.",
        LOGIN_HINT,
    ),
    "not-established": (
        UNAVAILABLE,
        "The brokerage session is still being established.",
        "Wait a few seconds and run 'ibgw status' again.",
    ),
    "gateway-down": (
        UNAVAILABLE,
        "The gateway is not reachable (connection refused or closed).",
        "Start the Client Portal Gateway and check gateway_url ('ibgw config show').",
    ),
    "timeout": (
        UNAVAILABLE,
        "The gateway did not answer within the deadline.",
        "Check that the gateway is running and not overloaded; see --timeout.",
    ),
    "tls-error": (
        UNAVAILABLE,
        "The TLS connection to the gateway failed verification.",
        "Check verify_tls, ca_bundle or tls_fingerprint ('ibgw config show').",
    ),
    "connection-reset": (
        UNAVAILABLE,
        "The connection to the gateway was reset mid-answer.",
        "Retry shortly; restart the gateway if it persists.",
    ),
    "response-too-large": (
        UNAVAILABLE,
        "The gateway's answer exceeded the size limit.",
        "Narrow the request.",
    ),
    "redirect-refused": (
        UNAVAILABLE,
        "The gateway answered with a redirect, which ibgw never follows.",
        "Check gateway_url: it must point at the gateway's /v1/api root.",
    ),
    "rate-limited": (
        UNAVAILABLE,
        "The gateway answered 429 Too Many Requests; ibgw does not retry.",
        "Wait at least 10 minutes: IBKR may hold this address in its penalty box.",
    ),
    "paced": (
        UNAVAILABLE,
        "IBKR's pacing limit for this endpoint does not allow another call yet.",
        "Try again later.",
    ),
    "gateway-error": (
        UNAVAILABLE,
        "The gateway or IBKR's backend answered with a server error.",
        "IBKR may be restarting (nightly maintenance); retry in a few minutes.",
    ),
    "malformed-response": (
        UNAVAILABLE,
        "The gateway's answer was not valid JSON of the expected shape.",
        "The gateway's answer could not be read; retry, and if it persists run 'ibgw doctor' "
        "and report the gateway build.",
    ),
    "unexpected-status": (
        UNAVAILABLE,
        "The gateway answered with an unexpected status.",
        "Run 'ibgw doctor' to check the gateway.",
    ),
}
