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
            from .session import REASONS

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
