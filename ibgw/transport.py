"""The transport interface shared by the live gateway and the fake backend.

The gateway facade (:mod:`ibgw.gateway`) builds a :class:`Request` only after the
read-only policy has passed it, and hands it to a transport. A transport returns a
:class:`Response` for any HTTP answer (whatever the status) and raises
:class:`TransportError` when there is no usable HTTP answer. It never returns or
raises anything that holds headers, cookies or the full URL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# TransportError kinds, each mapped by the gateway to an ``unavailable`` reason.
REFUSED = "gateway-down"  # connection refused, DNS failure, host unreachable
TIMEOUT = "timeout"  # connect/read timeout or the per-call deadline passed
TLS = "tls-error"  # certificate or handshake failure, fingerprint mismatch
RESET = "connection-reset"  # reset or closed mid-answer
TOO_LARGE = "response-too-large"
REDIRECT = "redirect-refused"  # a 3xx: redirects are never followed


@dataclass(frozen=True)
class Request:
    """A policy-checked request. ``path`` is the final, percent-encoded path below
    the gateway's API root (``/iserver/secdef/search``); ``query`` is a list of
    ``(name, value)`` pairs; ``body`` is the JSON body for POST (``b"{}"`` when the
    read sends none) or ``None`` for GET. ``deadline`` is a ``time.monotonic()``
    instant after which the call must give up. ``template`` is the endpoint's path
    template, for routing and pacing."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    deadline: float = field(default_factory=lambda: time.monotonic() + 10.0)
    template: str = ""

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


class TransportError(Exception):
    """No usable HTTP answer. ``kind`` is one of the module constants; the message
    is ibgw's own words, never the HTTP stack's."""

    def __init__(self, kind: str, message: str = ""):
        super().__init__(message or kind)
        self.kind = kind


class Transport:
    """Base class for transports. ``name`` is shown in ``ibgw doctor``; ``paced``
    says whether IBKR's pacing applies (true for anything that reaches a gateway
    over the network, false for the in-process fake)."""

    name = "base"
    paced = True

    def send(self, request: Request) -> Response:  # pragma: no cover - interface
        raise NotImplementedError

    def websocket_url(self) -> str | None:
        """The ``wss://`` (or ``ws://``) URL of the gateway's websocket, if any."""
        return None

    def close(self) -> None:
        pass
