"""Broker session states: classification, keepalive outcomes, and the shared guard.

Every outcome maps to exactly one of three states (``usable``,
``manual_action_required``, ``unavailable``) with a stable reason code and a
one-line hint. ibgw never competes, re-authenticates or logs out.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

from .errors import MANUAL, UNAVAILABLE, USABLE

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


@dataclass
class SessionStatus:
    state: str
    reason: str
    message: str
    hint: str
    build: str | None = None
    server: str | None = None

    @classmethod
    def of(cls, reason: str, build: str | None = None, server: str | None = None) -> SessionStatus:
        state, message, hint = REASONS[reason]
        return cls(state, reason, message, hint, build, server)

    @property
    def usable(self) -> bool:
        return self.state == USABLE

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class KeepaliveResult:
    outcome: str  # keepalive-success | keepalive-expired | keepalive-failed
    status: SessionStatus

    def as_dict(self) -> dict:
        d = {"outcome": self.outcome}
        d.update(self.status.as_dict())
        return d


def _server_info(data: dict) -> tuple[str | None, str | None]:
    info = data.get("serverInfo")
    if not isinstance(info, dict):
        return None, None
    build = info.get("serverVersion")
    name = info.get("serverName")
    return (build if isinstance(build, str) else None, name if isinstance(name, str) else None)


def classify_auth_status(data) -> SessionStatus:
    """Classify an ``/iserver/auth/status`` answer from the whole auth tuple."""
    if not isinstance(data, dict):
        return SessionStatus.of("malformed-response")
    if data.get("error") == "no session":
        return SessionStatus.of("no-session")
    build, server = _server_info(data)
    flags = {k: data.get(k) for k in ("authenticated", "connected", "competing", "established")}
    for key in ("authenticated", "connected", "competing"):
        if key in data and not isinstance(flags[key], bool):
            return SessionStatus.of("malformed-response")
    if "authenticated" not in data:
        return SessionStatus.of("malformed-response")
    if flags["competing"] is True:
        return SessionStatus.of("competing-session", build, server)
    if flags["authenticated"] is not True:
        reason = "not-authenticated" if flags["connected"] is True else "session-expired"
        return SessionStatus.of(reason, build, server)
    if flags["connected"] is False:
        return SessionStatus.of("session-expired", build, server)
    if flags["established"] is False:
        return SessionStatus.of("not-established", build, server)
    return SessionStatus.of("ok", build, server)


def classify_tickle(data) -> KeepaliveResult:
    """Classify a ``/tickle`` answer. The ``session`` value is a secret; it is
    never copied into the result."""
    if not isinstance(data, dict):
        return KeepaliveResult("keepalive-failed", SessionStatus.of("malformed-response"))
    if data.get("error") == "no session":
        return KeepaliveResult("keepalive-expired", SessionStatus.of("no-session"))
    auth = (
        (data.get("iserver") or {}).get("authStatus")
        if isinstance(data.get("iserver"), dict)
        else None
    )
    if not isinstance(auth, dict):
        if "error" in data:
            return KeepaliveResult("keepalive-failed", SessionStatus.of("gateway-error"))
        return KeepaliveResult("keepalive-expired", SessionStatus.of("not-authenticated"))
    status = classify_auth_status(auth)
    if status.usable:
        return KeepaliveResult("keepalive-success", status)
    if status.reason in ("malformed-response", "not-established"):
        return KeepaliveResult("keepalive-failed", status)
    return KeepaliveResult("keepalive-expired", status)


def status_from_error(exc) -> SessionStatus:
    """The session state implied by a gateway error (an ``IbgwError``)."""
    reason = getattr(exc, "reason", "unexpected-status")
    if reason in REASONS:
        return SessionStatus.of(reason)
    state = getattr(exc, "state", None) or UNAVAILABLE
    return SessionStatus(state, reason, getattr(exc, "message", str(exc)), getattr(exc, "hint", ""))


def observe_session(gateway, status: SessionStatus, session_token=None) -> bool:
    """Remember what a status check or keepalive saw on this transport, and when it
    shows a *new* brokerage session drop what the old one was primed with
    (``Gateway._forget_session``: the prerequisite calls and the symbol-search
    cache). Returns whether a reset was detected.

    A reset is seen without any read failing (IBKR resets sessions nightly; a user
    logs in again): the status goes from not authenticated to usable, or the
    ``/tickle`` ``session`` value changes while usable. That value is a secret: only
    its SHA-256 digest is kept, in memory, and never shown. Matters for the
    long-running MCP server, whose transport outlives sessions."""
    transport = getattr(gateway, "transport", None)
    if transport is None:
        return False
    seen = transport.__dict__.setdefault("_ibgw_session_seen", {})
    reset = False
    if status.usable:
        if seen.get("usable") is False:
            reset = True
        if isinstance(session_token, str) and session_token:
            import hashlib

            digest = hashlib.sha256(session_token.encode("utf-8", "replace")).hexdigest()
            if seen.get("session") not in (None, digest):
                reset = True
            seen["session"] = digest
        seen["usable"] = True
    elif status.state == MANUAL:
        # logged out, expired, competing: whatever comes next is a new session
        seen["usable"] = False
    # unavailable (gateway down, 5xx, timeout) says nothing about the session
    if reset:
        forget = getattr(gateway, "_forget_session", None)
        if forget is not None:
            forget()
    return reset


class SessionGuard:
    """Cross-process record that a keepalive found the session expired.

    While blocked, broker-backed reads in every process answer ``unavailable``
    (reason ``keepalive-expired``) without calling the gateway. The first status
    check that finds the session usable clears it.
    """

    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, "session-guard.json")

    def blocked(self) -> str | None:
        # Asked before every broker-backed call: a plain descriptor read, no file object.
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            data = json.loads(os.read(fd, 1 << 16))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        return data.get("reason") if isinstance(data, dict) else None

    def block(self, reason: str) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"reason": reason, "since": int(time.time())}, fh)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
