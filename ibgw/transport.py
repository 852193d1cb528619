"""The transport interface shared by the live gateway and the fake backend.

The gateway facade (:mod:`ibgw.gateway`) builds a :class:`Request` only after the
read-only policy has passed it, and hands it to a transport. A transport returns a
:class:`Response` for any HTTP answer (whatever the status) and raises
:class:`TransportError` when there is no usable HTTP answer. It never returns or
raises anything that holds headers, cookies or the full URL.

**The send capability.** ``Transport.send(request, ticket)`` sends only a request
that came through the facade's checked path: the facade, after its checks, mints a
single-use *ticket* for that exact :class:`Request` object, and the transport
redeems it before anything else. Tickets are minted by a function created with the
transport (in a closure, not an attribute) and handed out once, to the facade
(:func:`claim_minter`); a plugin that reaches a transport and calls ``send`` with a
request of its own is refused (``PolicyRefused``, exit 6) before a byte leaves. The
transport then runs the read-only policy again on the request, with the policy
functions it took by reference when it was built. Every refusal is reported to the
running read (:func:`refused`), which audits it as ``denied``. What this does and
does not contain: docs/security.md, "Containment".
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

from .errors import PolicyRefused
from .policy import check_request, refused

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


# -- the send capability ----------------------------------------------------------------


class _Ticket:
    """One permission to send one request; carries nothing."""

    __slots__ = ("__weakref__",)

    def __repr__(self) -> str:
        return "<ticket>"


def _capabilities():
    lock = threading.Lock()
    unclaimed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    issued: weakref.WeakSet = weakref.WeakSet()

    def issue(transport):
        """A new transport's ``(mint, redeem)``; ``mint`` waits to be claimed."""
        pending: dict = {}

        def mint(request):
            ticket = _Ticket()
            with lock:
                pending[ticket] = request
            return ticket

        def redeem(ticket, request) -> bool:
            if type(ticket) is not _Ticket:
                return False
            with lock:
                expected = pending.pop(ticket, None)
            return expected is not None and expected is request

        with lock:
            unclaimed[transport] = mint
            issued.add(transport)
        return redeem

    def claim(transport):
        """The transport's minter, once: the facade claims it; later claims are refused."""
        with lock:
            mint = unclaimed.pop(transport, None)
            known = mint is not None or _known(transport)
        if not known:
            raise refused(
                "refused: the backend's transport was not built by ibgw.transport.Transport "
                "(it must subclass it and call super().__init__())",
                reason="unchecked-transport",
            )
        if mint is None:
            raise refused(
                "refused: this transport's send capability belongs to the gateway facade",
                reason="capability-claimed",
            )
        return mint

    def _known(transport) -> bool:
        try:
            return transport in issued
        except TypeError:  # not weak-referenceable: never issued
            return False

    return issue, claim


_issue, claim_minter = _capabilities()


class Transport:
    """Base class for transports. ``name`` is shown in ``ibgw doctor``; ``paced``
    says whether IBKR's pacing applies (true for anything that reaches a gateway
    over the network, false for the in-process fake).

    Subclasses call ``super().__init__()`` and implement :meth:`_deliver` (a
    subclass written before that, which overrides ``send(request)``, still works:
    its ``send`` becomes the delivery). ``send`` is set per instance here, so a
    subclass cannot skip the ticket and the policy check by overriding it."""

    name = "base"
    paced = True

    def __init__(self):
        # check_request is held by reference (imported with this module): rebinding
        # ibgw.policy's names later is refused, and would not reach this check anyway
        redeem = _issue(self)
        own_send = type(self).send
        deliver = self._deliver if own_send is Transport.send else own_send.__get__(self)

        def send(request: Request, ticket=None) -> Response:
            """Send ``request`` if ``ticket`` is the facade's ticket for it."""
            if not redeem(ticket, request):
                raise refused(
                    "refused: a request reached the transport without the gateway "
                    "facade's checks (plugins call ctx.call)",
                    reason="unchecked-request",
                    method=getattr(request, "method", ""),
                    path=getattr(request, "path", ""),
                )
            try:
                check_request(request.method, request.path, request.query)
            except PolicyRefused as exc:
                failure = exc
            else:
                return deliver(request)
            raise refused(failure.message, failure.reason, request.method, request.path)

        self.send = send

    def send(self, request: Request, ticket=None) -> Response:  # pragma: no cover
        raise refused("refused: this transport was not initialised", reason="unchecked-request")

    def _deliver(self, request: Request) -> Response:  # pragma: no cover - interface
        raise NotImplementedError

    def websocket_url(self) -> str | None:
        """The ``wss://`` (or ``ws://``) URL of the gateway's websocket, if any."""
        return None

    def close(self) -> None:
        pass
