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

from .errors import LOGIN_HINT, MANUAL, REASONS, UNAVAILABLE, USABLE  # noqa: F401 - the table lives with the states


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
