"""The gateway's websocket, read-only: the core route plugins use (``ctx.websocket()``).

A plugin never opens the websocket itself, never sees its credential and never
touches the transport. :func:`open_for` (behind :meth:`ibgw.runner.ReadContext.websocket`)
does it inside the core, through the read's gateway facade:

1. ``/iserver/accounts`` once (the brokerage prerequisite for market data);
2. ``/tickle``: its ``iserver.authStatus`` must say the brokerage session is usable,
   and its ``session`` is the websocket credential (a secret: it only ever goes
   into the ``api`` cookie of the upgrade request);
3. the websocket URL the transport names (``Transport.websocket_url()``; the
   in-process fake backend starts a loopback fake gateway for it);
4. the connection (:class:`GatewaySocket`), wrapped in a :class:`Websocket` handle
   that holds it in closures. Every message goes through
   :func:`ibgw.policy.check_ws_message` with the connection's own subscriptions
   remembered (``ubd`` only ends a subscription this connection made); a refusal
   raises ``PolicyRefused`` (exit 6) before a byte is sent and is audited as
   ``denied``. Closing the handle unsubscribes what is still subscribed.

:class:`GatewaySocket` connects the way the live transport connects to the REST API:

* only to that canonical host and port, with a socket of its own: no proxy from
  the environment, no redirect (``websockets`` follows none with a given socket);
* TLS as configured: ``verify_tls = false`` only where the configuration allowed
  it (exact local hosts), else the CA bundle (or certifi's, like ``requests``,
  so ``SSL_CERT_FILE`` changes nothing); with a pinned fingerprint the handshake
  runs without chain checks and the SHA-256 of the peer certificate must match
  before the upgrade request — which carries the credential — is written;
* the credential is the cookie ``api={"session":"<tickle session>"}`` (reference
  §1.4, as ibind sends it in gateway mode). The session value is checked to be a
  plain token (no header injection), put in that one header, and never formatted
  into any message, note or log line; the ``websockets`` logger is kept below
  DEBUG so it never logs the handshake headers;
* every wait is bounded by the read's deadline; failures become the session
  states of :mod:`ibgw.session` with ibgw's own words, raised outside ``except``
  blocks so no exception chain leads back to the websocket library's objects.

``websockets`` (a dependency of the plugins that stream, e.g. ibgw-depth) is
imported inside :meth:`GatewaySocket.open`, never at module top.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import socket
import ssl
import time
from urllib.parse import urlsplit

from .errors import NotServed, PolicyRefused, Unavailable
from .policy import check_ws_message
from .policy import ws_topic as _topic

MAX_MESSAGE = 1 << 20
CLOSE_TIMEOUT_S = 2.0
SESSION_RE = re.compile(r"[A-Za-z0-9._~\-]{8,256}")

log = logging.getLogger("ibgw.websocket")  # --debug: topics and states only, never headers
_quiet = logging.getLogger("ibgw_websocket_library")
_quiet.setLevel(logging.WARNING)  # websockets logs handshake headers (the cookie) at DEBUG


class WsFailure(Exception):
    """Internal: how the websocket failed (a session reason code, or ``not-served``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _to_error(reason: str):
    from .gateway import error_for

    if reason == "not-served":
        return NotServed(
            "this gateway does not serve the websocket (/v1/api/ws)",
            reason="not-served",
            hint="Market depth needs the gateway's websocket; check the gateway build.",
        )
    return error_for(reason)


def _status_reason(status: int, body: bytes) -> str:
    """The session reason for an HTTP answer to the upgrade request."""
    if status == 401:
        return "not-logged-in"
    if status == 403:
        return "forbidden"
    if status == 404:
        return "ip-not-allowed" if body.lstrip().startswith(b"Access Denied") else "not-served"
    if status == 429:
        return "rate-limited"
    if status >= 500:
        return "gateway-error"
    if 300 <= status < 400:
        return "redirect-refused"
    if 200 <= status < 300:
        return "login-page" if body.lstrip()[:1] == b"<" else "unexpected-status"
    if status == 400:
        return (
            "no-bridge"
            if b"no bridge" in body or b"Init session first" in body
            else "unexpected-status"
        )
    return "unexpected-status"


def _ca_file(config) -> str | None:
    if getattr(config, "ca_bundle", None):
        return config.ca_bundle
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return None
    return certifi.where()


def tls_context(config) -> tuple[ssl.SSLContext, str | None]:
    """``(context, pinned_fingerprint)`` following the live transport's rules."""
    fingerprint = getattr(config, "tls_fingerprint", None) or None
    if fingerprint:
        fingerprint = fingerprint.replace(":", "").lower()
    if fingerprint or not getattr(config, "verify_tls", True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        cafile = _ca_file(config)
        ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx, fingerprint


class GatewaySocket:
    """One websocket connection to the gateway (core-internal: plugins get a
    :class:`Websocket`), used as a context manager.

    ``url`` is the transport's ``ws://``/``wss://`` URL; ``session`` the tickle
    session (a secret); ``deadline`` a ``time.monotonic()`` instant bounding
    :meth:`open` and every :meth:`recv` that passes no shorter timeout.
    """

    def __init__(self, url: str, config, session: str, deadline: float):
        self.url = url
        self.config = config
        self._session = session
        self.deadline = deadline
        self._conn = None
        self._cm = None

    # -- opening -------------------------------------------------------------------
    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _socket(self, host: str, port: int, secure: bool):
        """A connected (and, for wss, verified) socket; raises WsFailure."""
        left = self._left()
        if left <= 0:
            raise WsFailure("timeout")
        reason = None
        sock = None
        try:
            sock = socket.create_connection((host, port), timeout=left)
        except TimeoutError:
            reason = "timeout"
        except OSError:
            reason = "gateway-down"
        if reason is not None:
            raise WsFailure(reason)
        if not secure:
            return sock
        ctx, fingerprint = tls_context(self.config)
        tls = None
        try:
            sock.settimeout(max(0.01, self._left()))
            tls = ctx.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            reason = "timeout"
        except (ssl.SSLError, ssl.CertificateError, ValueError):
            reason = "tls-error"
        except OSError:
            reason = "connection-reset"
        if reason is None and fingerprint:
            der = tls.getpeercert(binary_form=True) or b""
            if not der or not hmac.compare_digest(hashlib.sha256(der).hexdigest(), fingerprint):
                reason = "tls-error"
        if reason is not None:
            _close_quietly(tls or sock)
            raise WsFailure(reason)
        return tls

    def open(self) -> GatewaySocket:
        """Connect, verify, and upgrade; raises the session error on failure."""
        reason = None
        try:
            self._open()
        except WsFailure as failure:
            reason = failure.reason
        if reason is not None:
            log.debug("websocket: not opened (%s)", reason)
            self.close()
            raise _to_error(reason)
        log.debug("websocket: open (%s)", urlsplit(self.url).scheme)
        return self

    def _open(self) -> None:
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        from . import __version__

        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise WsFailure("not-served")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        if not SESSION_RE.fullmatch(self._session or ""):
            raise WsFailure("malformed-response")
        sock = self._socket(parts.hostname, port, secure)
        sock.settimeout(None)  # websockets bounds its own waits
        cookie = "api=" + json.dumps({"session": self._session}, separators=(",", ":"))
        # TLS (if any) is already up and verified on ``sock``: websockets speaks
        # plain ws:// over it, so it never wraps, re-verifies or redirects.
        uri = f"ws://{parts.netloc}{parts.path}"
        reason = None
        try:
            self._cm = connect(
                uri,
                sock=sock,
                additional_headers=[("Cookie", cookie)],
                user_agent_header=f"ibgw/{__version__}",
                compression=None,
                open_timeout=max(0.01, self._left()),
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=MAX_MESSAGE,
                proxy=None,
                logger=_quiet,
            )
            self._conn = self._cm.__enter__()
        except InvalidStatus as exc:
            response = getattr(exc, "response", None)
            status = int(getattr(response, "status_code", 0) or 0)
            body = bytes(getattr(response, "body", b"") or b"")
            reason = _status_reason(status, body)
        except TimeoutError:
            reason = "timeout"
        except InvalidHandshake as exc:
            # closed without an answer is how a stopping gateway looks (as for REST)
            closed = isinstance(exc.__cause__, EOFError | ConnectionError)
            reason = "gateway-down" if closed else "malformed-response"
        except (OSError, EOFError):
            reason = "connection-reset"
        except ValueError as exc:
            # websockets refuses to follow a redirect on a given socket with a
            # ValueError caused by the 3xx answer: redirects are never followed
            cause = exc.__cause__
            status = getattr(getattr(cause, "response", None), "status_code", 0)
            reason = "redirect-refused" if 300 <= int(status or 0) < 400 else "malformed-response"
        except Exception:  # noqa: BLE001 - any other library failure: one state, no traceback
            reason = "malformed-response"
        finally:
            del cookie
        if reason is not None:
            self._cm = None
            _close_quietly(sock)
            raise WsFailure(reason)

    # -- talking ---------------------------------------------------------------------
    def send(self, text: str) -> None:
        """Send one message. Only :class:`Websocket` calls this, after the policy."""
        reason = None
        try:
            self._conn.send(text)
        except Exception:  # noqa: BLE001 - any failure of the socket is a reset
            reason = "connection-reset"
        if reason is not None:
            raise _to_error(reason)
        log.debug("websocket: sent %s", _topic(text))

    def recv(self, timeout: float | None = None):
        """The next message as parsed JSON, or ``None`` when ``timeout`` (default:
        the time left before the deadline) passes first. A closed connection
        raises ``connection-reset``; a message that is not strict JSON raises
        ``malformed-response``."""
        from websockets.exceptions import ConnectionClosed

        from .jsonstrict import MalformedJSON, loads_strict

        wait = self._left() if timeout is None else timeout
        if wait <= 0:
            return None
        reason = None
        message = None
        try:
            message = self._conn.recv(timeout=wait)
        except TimeoutError:
            return None
        except ConnectionClosed:
            reason = "connection-reset"
        except Exception:  # noqa: BLE001 - a broken frame, a reset socket
            reason = "connection-reset"
        if reason is None:
            data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
            try:
                parsed = loads_strict(data)
            except MalformedJSON:
                parsed, reason = None, "malformed-response"
        if reason is not None:
            log.debug("websocket: receive failed (%s)", reason)
            raise _to_error(reason)
        topic = parsed.get("topic") if isinstance(parsed, dict) else None
        log.debug("websocket: received %s", _topic(topic) if isinstance(topic, str) else "?")
        return parsed

    def close(self) -> None:
        cm, self._cm, self._conn = self._cm, None, None
        if cm is not None:
            log.debug("websocket: closing")
            try:
                cm.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing must not raise
                pass

    def __enter__(self) -> GatewaySocket:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _close_quietly(sock) -> None:
    if sock is None:
        return
    try:
        sock.close()
    except OSError:
        pass


# -- what plugins get ------------------------------------------------------------------


class Websocket:
    """The gateway's websocket as a plugin sees it (from ``ctx.websocket()``).

    ``send(text)`` sends one message the websocket policy allows (see
    :func:`ibgw.policy.check_ws_message`), ``recv(timeout=None)`` returns the next
    message as parsed JSON or ``None`` when the timeout (default: the time left
    before the deadline) passes, ``close()`` unsubscribes what this connection still
    has subscribed and closes. Use it as a context manager. The connection lives in
    this object's closures; nothing here reaches the socket, the credential or the
    transport."""

    __slots__ = ("send", "recv", "close", "deadline")

    def __init__(self, sock: GatewaySocket, on_refused):
        subscribed: set[tuple[str, str]] = set()
        self.deadline = sock.deadline

        def send(text) -> None:
            try:
                effect = check_ws_message(text, frozenset(subscribed))
            except PolicyRefused as exc:
                failure = exc
            else:
                failure = None
            if failure is not None:
                raise on_refused(_topic(text), failure)
            sock.send(text)
            if effect is not None and effect[0] == "sbd":
                subscribed.add((effect[1], effect[2]))
            elif effect is not None and effect[0] == "ubd":
                subscribed.difference_update({s for s in subscribed if s[0] == effect[1]})

        def recv(timeout: float | None = None):
            return sock.recv(timeout=timeout)

        def close() -> None:
            for account in sorted({acct for acct, _ in subscribed}):
                try:
                    send(f"ubd+{account}")
                except Exception:  # noqa: BLE001 - the connection may already be gone
                    break
            sock.close()

        self.send, self.recv, self.close = send, recv, close

    def __enter__(self) -> Websocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _session_secret(gateway) -> str:
    """The tickle ``session`` (the websocket credential) after checking that the
    brokerage session is usable. The value is returned, never shown."""
    from .endpoints import TICKLE
    from .errors import SessionError
    from .session import classify_tickle

    answer = gateway.call(TICKLE)
    result = classify_tickle(answer)
    if result.outcome != "keepalive-success":
        raise SessionError.from_status(result.status)
    session = answer.get("session") if isinstance(answer, dict) else None
    if not isinstance(session, str) or not session:
        raise Unavailable(
            "the gateway's keepalive answer carried no websocket session",
            reason="malformed-response",
            hint="Retry; if it persists, run 'ibgw doctor' and report the gateway build.",
        )
    return session


def _url_of(transport) -> str:
    url = transport.websocket_url()
    if url is None and callable(getattr(transport, "start_websocket", None)):
        url = transport.start_websocket()  # the in-process fake: a loopback fake gateway
    if not url:
        raise NotServed(
            "this backend has no websocket",
            reason="not-served",
            hint="Streamed data comes over the gateway's websocket only.",
        )
    return url


def open_for(gateway, config, timeout: float | None = None) -> Websocket:
    """Open the gateway's websocket for a read, through its facade ``gateway``
    (core-internal: plugins call ``ctx.websocket()``)."""
    from .endpoints import ISERVER_ACCOUNTS
    from .policy import refused

    gateway._prime("iserver-accounts", ISERVER_ACCOUNTS)
    session = _session_secret(gateway)
    url = _url_of(gateway.transport)
    wait = float(timeout or getattr(config, "timeout", 15.0) or 15.0)
    sock = GatewaySocket(url, config, session, time.monotonic() + wait)
    del session

    def on_refused(topic: str, failure: PolicyRefused) -> PolicyRefused:
        log.debug("websocket: refused %s", topic)
        return refused(
            failure.message,
            failure.reason,
            "WS",
            template=f"/ws {topic}",
            auditor=gateway.auditor,
            command=gateway.command,
        )

    sock.open()
    return Websocket(sock, on_refused)
