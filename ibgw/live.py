"""The live transport: a hardened ``requests`` session to the local gateway.

What it guarantees, whatever the environment or the gateway does:

* It connects only to the canonical ``gateway_url`` it was given. The session has
  ``trust_env = False`` and requests are prepared with ``requests.Request(...)
  .prepare()`` and handed straight to the transport adapter with ``proxies={}``:
  no ``HTTP(S)_PROXY``, no ``~/.netrc``, no ``REQUESTS_CA_BUNDLE``/
  ``CURL_CA_BUNDLE``, no session headers, no cookie jar, no redirect handling.
  (``Session.send`` is not used: even with ``allow_redirects=False`` it reads the
  whole body of a 3xx answer, unbounded, to compute ``Response.next``.)
* The read-only policy runs again on the request, then the *prepared* request is
  re-checked: method, scheme/host/port, the exact request target (also as urllib3
  will re-encode it) and the header set. Any disagreement is ``PolicyRefused``.
* Only ``Accept``, ``User-Agent`` and (POST) ``Content-Type`` are set by ibgw;
  the HTTP stack adds ``Host``, ``Content-Length`` and ``Accept-Encoding:
  identity`` (so the gateway never compresses).
* TLS: ``verify`` is always explicit; a pinned SHA-256 fingerprint uses urllib3's
  ``assert_fingerprint`` (a mismatch is ``TransportError(TLS)``).
* Time: every call ends by ``request.deadline``. Socket timeouts are bounded by
  the time left, the body is read with ``read1`` so the deadline is checked
  between chunks, and a watchdog thread shuts the socket down at the deadline so a
  gateway that drips headers, chunk sizes or a TLS handshake cannot hold a call.
* Size: bodies over :data:`MAX_BODY` are ``TransportError(TOO_LARGE)``; a 3xx is
  ``TransportError(REDIRECT)`` and is never followed (its body is not read).
* Containment: ``send`` needs the facade's ticket (:mod:`ibgw.transport`). Below it,
  the session refuses every request (ibgw never sends through it), the adapter
  sends only the prepared request this transport armed for the calling thread, and
  the connection writes only the request line it armed, after running the
  read-only policy (taken by reference when the transport was built) on the final
  method, path and query exactly as they go on the wire. A plugin calling
  ``transport.session.post``, ``transport._adapter.send`` or a connection pool
  directly is refused before a byte of HTTP leaves.
* Secrets: every ``Set-Cookie`` value goes to :func:`ibgw.redact.add_secret`; the
  session's cookie jar is cleared after every call. Errors carry ibgw's own words
  only, and are raised outside any ``except`` block so no exception chain leads
  back to the HTTP stack's exception (which holds the URL and query).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from http.client import HTTPException
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import __version__
from .errors import PolicyRefused
from .transport import (
    REDIRECT,
    REFUSED,
    RESET,
    TIMEOUT,
    TLS,
    TOO_LARGE,
    Request,
    Response,
    Transport,
    TransportError,
    refused,
)

MAX_BODY = 16 * 1024 * 1024
CHUNK = 64 * 1024
POOL_MAXSIZE = 8
USER_AGENT = f"ibgw/{__version__}"
# Headers requests may add on its own (none of them today with Request.prepare()).
_STACK_HEADERS = frozenset({"content-length", "accept-encoding", "connection"})
_MESSAGES = {
    REFUSED: "the gateway is not reachable (connection refused or closed without an answer)",
    TIMEOUT: "the gateway did not answer within the deadline",
    TLS: "the TLS connection to the gateway failed verification",
    RESET: "the connection to the gateway was reset mid-answer",
    TOO_LARGE: f"the gateway's answer exceeded {MAX_BODY // (1024 * 1024)} MiB",
    REDIRECT: "the gateway answered with a redirect, which is never followed",
}

# urllib3 logs every request line (path and query) at DEBUG; keep it quiet even
# when the application turns on debug logging.
logging.getLogger("urllib3").setLevel(logging.WARNING)


# -- deadline watchdog --------------------------------------------------------


class _Watch:
    __slots__ = ("deadline", "socks", "fired", "done")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.socks: list[socket.socket] = []
        self.fired = False
        self.done = False


def _shutdown(sock) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the SSL
    # object under the reading thread's feet. Shutting the fd down wakes a thread
    # blocked in recv/SSL_read with EOF.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError, TypeError):
        pass


class _Watchdog:
    """One daemon thread that shuts down the sockets of calls past their deadline."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = None

    def watch(self, deadline: float) -> _Watch:
        w = _Watch(deadline)
        with self._cond:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._heap = []
                self._thread = threading.Thread(target=self._run, name="ibgw-deadline", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._seq), w))
            if self._heap[0][2] is w:
                self._cond.notify()
        return w

    def attach(self, w: _Watch, sock) -> None:
        with self._cond:
            if w.done or sock is None:
                return
            w.socks.append(sock)
            if w.fired:
                _shutdown(sock)

    def finish(self, w: _Watch) -> bool:
        """Stop watching; True if the deadline fired first (the socket is dead)."""
        with self._cond:
            w.done = True
            w.socks = []
            return w.fired

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, w = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                w.fired = True
                for sock in w.socks:
                    _shutdown(sock)


_WATCHDOG = _Watchdog()
_current = threading.local()


def _refuse_line(method, url) -> None:
    raise refused(
        "refused: a connection not armed by the live transport", "unchecked-request", method, url
    )


class _WatchedMixin:
    """Registers the connection's socket with the current call's watch: the raw
    socket right after it is created (before any TLS handshake), and the live
    socket again before reading the answer (pooled connections skip connect).
    Writes only the request line its transport armed (``_ibgw_line``, set on the
    per-transport subclass); the base classes refuse every line."""

    _ibgw_line = staticmethod(_refuse_line)

    def putrequest(self, method, url, *args, **kwargs):
        self._ibgw_line(method, url)
        return super().putrequest(method, url, *args, **kwargs)

    def _new_conn(self):
        sock = super()._new_conn()
        w = getattr(_current, "watch", None)
        if w is not None:
            _WATCHDOG.attach(w, sock)
        return sock

    def getresponse(self, *args, **kwargs):
        w = getattr(_current, "watch", None)
        if w is not None:
            _WATCHDOG.attach(w, self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _HTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _make_gate(base_path: str):
    """``(arm, disarm, on_send, on_line)`` for one transport. ``arm(prep)`` allows the
    calling thread to send exactly that prepared request; ``on_send`` (the adapter,
    before any connection is opened) and ``on_line`` (the connection, before the
    request line is written) refuse anything else, and ``on_line`` runs the
    read-only policy on the final method, path and query. The policy function is
    bound here, when the transport is built, and the armed state lives in this
    closure."""
    from .policy import check_request

    local = threading.local()

    def final(method, target) -> None:
        target = str(target)
        path, sep, query = target.partition("?")
        failure = None
        if not path.startswith(base_path + "/"):
            failure = PolicyRefused(
                "refused: the request is not below the gateway's API root", reason="bad-path"
            )
        else:
            try:
                pairs = parse_qsl(query, keep_blank_values=True) if sep else []
                check_request(method, path[len(base_path) :], pairs)
            except PolicyRefused as exc:
                failure = exc
        if failure is not None:
            raise refused(failure.message, failure.reason, method, path[len(base_path) :])

    def arm(prep) -> None:
        local.prep, local.line = prep, (prep.method, prep.path_url)

    def disarm() -> None:
        local.prep = local.line = None

    def on_send(prep) -> None:
        if prep is None or getattr(local, "prep", None) is not prep:
            raise refused(
                "refused: the transport's adapter sends only the request the transport "
                "checked (plugins call ctx.call)",
                "unchecked-request",
                getattr(prep, "method", ""),
                str(getattr(prep, "path_url", "")).removeprefix(base_path),
            )
        # the policy runs on the request line itself, in on_line, before it is written

    def on_line(method, url) -> None:
        if getattr(local, "line", None) != (method, url):
            raise refused(
                "refused: the connection writes only the request line the transport armed",
                "unchecked-request",
                method,
                str(url).removeprefix(base_path),
            )
        final(method, url)

    return arm, disarm, on_send, on_line


class _Adapter(HTTPAdapter):
    """HTTPAdapter with watched connections and, optionally, a pinned certificate.
    ``on_send`` / ``on_line`` come from the transport's gate (:func:`_make_gate`)."""

    def __init__(self, fingerprint: str | None = None, *, on_send, on_line, **kwargs):
        self._fingerprint = fingerprint
        self._on_send = on_send
        http = type("_HTTPConnection", (_HTTPConnection,), {"_ibgw_line": staticmethod(on_line)})
        https = type("_HTTPSConnection", (_HTTPSConnection,), {"_ibgw_line": staticmethod(on_line)})
        self._pools = {
            "http": type("_HTTPPool", (_HTTPPool,), {"ConnectionCls": http}),
            "https": type("_HTTPSPool", (_HTTPSPool,), {"ConnectionCls": https}),
        }
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        if self._fingerprint:
            pool_kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)

    def send(self, request, *args, **kwargs):
        self._on_send(request)
        return super().send(request, *args, **kwargs)


class _SealedSession(requests.Session):
    """The transport's session: it only holds the mounted adapter. ibgw never sends
    through a session (see the module docstring), so every request is refused."""

    def request(self, method, url, *args, **kwargs):
        raise refused(
            "refused: the transport's session never sends (plugins call ctx.call)",
            "unchecked-request",
            method,
            urlsplit(str(url)).path,
        )

    def send(self, request, **kwargs):
        raise refused(
            "refused: the transport's session never sends (plugins call ctx.call)",
            "unchecked-request",
            getattr(request, "method", ""),
            urlsplit(str(getattr(request, "url", ""))).path,
        )

    def proxy_manager_for(self, proxy, **proxy_kwargs):  # pragma: no cover - never reached
        raise requests.exceptions.ProxyError("proxies are never used")


def _encode_target(target: str) -> str | None:
    try:
        from urllib3.util.url import _encode_target as enc
    except ImportError:  # pragma: no cover - private helper moved
        return target
    try:
        return enc(target)
    except Exception:
        return None


def _harvest(header_values) -> None:
    """Every Set-Cookie value is a secret from now on, wherever it appears."""
    # ibgw.redact ignores values too short or too trivial to be secrets; a folded
    # header (a=b, X=SECRET; Path=/) is split per cookie.
    from .redact import harvest_set_cookie

    harvest_set_cookie([str(h) for h in header_values])


class LiveTransport(Transport):
    """Talks to the Client Portal Gateway at ``config.gateway_url`` (canonical)."""

    name = "live"
    paced = True

    def __init__(self, config):
        super().__init__()
        url = str(config.gateway_url).rstrip("/")
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.query
            or parts.fragment
        ):
            from .errors import ConfigError

            raise ConfigError("gateway_url is not a canonical http(s) URL", reason="invalid-config")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        self._timeout = float(getattr(config, "timeout", 15.0) or 15.0)

        fingerprint = getattr(config, "tls_fingerprint", None) or None
        if fingerprint:
            fingerprint = fingerprint.replace(":", "").lower()
            self._verify: bool | str = False  # CERT_NONE, but the fingerprint must match
        elif not getattr(config, "verify_tls", True):
            self._verify = False
        else:
            self._verify = getattr(config, "ca_bundle", None) or True
        if self._verify is False and not fingerprint and self._scheme == "https":
            # verify_tls = false is allowed only for exact local hosts (see urlcheck);
            # urllib3 would otherwise warn on every call.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

        self._arm, self._disarm, on_send, on_line = _make_gate(self._base_path)
        session = _SealedSession()
        session.trust_env = False
        session.max_redirects = 0
        session.proxies = {}
        session.headers.clear()
        adapter = _Adapter(
            fingerprint,
            on_send=on_send,
            on_line=on_line,
            pool_connections=1,
            pool_maxsize=POOL_MAXSIZE,
            max_retries=0,
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self.session = session
        self._adapter = adapter

    # -- public -----------------------------------------------------------------
    def websocket_url(self) -> str | None:
        scheme = "wss" if self._scheme == "https" else "ws"
        return f"{scheme}://{self._netloc}{self._base_path}/ws"

    def close(self) -> None:
        self.session.close()

    def _deliver(self, request: Request) -> Response:
        """The ticket and the policy were checked by ``send`` (:class:`Transport`)."""
        method = request.method
        if method == "GET":
            if request.body is not None:
                raise PolicyRefused(
                    "refused: a GET request never carries a body", reason="body-on-get"
                )
            body = None
        else:
            body = request.body if request.body is not None else b"{}"
            if not isinstance(body, bytes):
                raise PolicyRefused("refused: a POST body must be bytes", reason="bad-body")
        pairs = request.query.items() if isinstance(request.query, Mapping) else request.query
        query = urlencode(list(pairs)) if pairs else ""
        target = self._base_path + request.path + ("?" + query if query else "")
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        prep = self._prepare(method, target, headers, body)
        self._recheck(prep, method, target, headers, body)

        remaining = request.remaining()
        if remaining <= 0:
            raise TransportError(TIMEOUT, _MESSAGES[TIMEOUT])
        kind, status, data, ctype = self._exchange(prep, request.deadline, remaining)
        if kind is not None:
            raise TransportError(kind, _MESSAGES[kind])
        return Response(status, data, ctype)

    # -- internals ----------------------------------------------------------------
    def _prepare(self, method: str, target: str, headers: dict, body):
        """The request exactly as checked: built directly rather than through
        ``requests.Request.prepare`` (URL re-parsing and re-encoding, cookie and hook
        set-up we do not use), with the ``Content-Length`` that ``prepare`` would add."""
        prep = requests.PreparedRequest()
        prep.method = method
        prep.url = self._origin + target
        prep.headers = requests.structures.CaseInsensitiveDict(headers)
        prep.body = body
        if body is not None:
            prep.headers["Content-Length"] = str(len(body))
        prep.hooks = {"response": []}
        return prep

    def _recheck(self, prep, method: str, target: str, headers: dict, body) -> None:
        def refuse(what: str):
            raise PolicyRefused(
                f"refused: the prepared request's {what} differs from the checked request",
                reason="prepared-mismatch",
            )

        if prep.method != method:
            refuse("method")
        parts = urlsplit(prep.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (
            (parts.scheme, parts.hostname, port) != (self._scheme, self._host, self._port)
            or parts.username is not None
            or parts.password is not None
            or parts.fragment
        ):
            refuse("origin")
        if prep.path_url != target or _encode_target(prep.path_url) != target:
            refuse("target")
        allowed = {k.lower(): v for k, v in headers.items()}
        for name, value in prep.headers.items():
            low = name.lower()
            if low in allowed:
                if value != allowed[low]:
                    refuse("header set")
            elif low not in _STACK_HEADERS:
                refuse("header set")
        if prep.body != body:
            refuse("body")

    def _exchange(self, prep, deadline: float, remaining: float):
        """Send and read; returns (kind, status, body, content_type) with ``kind``
        set on failure. Never raises the HTTP stack's exceptions."""
        kind = None
        resp = None
        status, data, ctype = 0, b"", ""
        watch = _WATCHDOG.watch(deadline)
        try:
            _current.watch = watch
            self._arm(prep)
            try:
                resp = self._adapter.send(
                    prep,
                    stream=True,
                    timeout=(min(remaining, self._timeout), remaining),
                    verify=self._verify,
                    cert=None,
                    proxies={},
                )
            except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
                kind = TIMEOUT
            except requests.exceptions.SSLError:
                kind = TLS
            except (
                requests.exceptions.RequestException,
                urllib3.exceptions.HTTPError,
                HTTPException,
                ValueError,
            ):
                kind = REFUSED
            except OSError:  # e.g. the CA bundle vanished
                kind = TLS if self._scheme == "https" else REFUSED
            finally:
                _current.watch = None
                self._disarm()
            if resp is not None:
                raw = resp.raw
                _harvest(
                    raw.headers.getlist("Set-Cookie") if hasattr(raw.headers, "getlist") else ()
                )
                status = resp.status_code
                ctype = _clean_ctype(raw.headers.get("Content-Type", ""))
                if 300 <= status < 400:
                    kind = REDIRECT
                else:
                    data, kind = _read_body(raw, deadline)
        finally:
            fired = _WATCHDOG.finish(watch)
            if fired:
                kind = TIMEOUT
            if resp is not None:
                _release(resp, reuse=kind is None)
            self._clear_jar()
        return kind, status, data, ctype

    def _clear_jar(self) -> None:
        jar = self.session.cookies
        if len(jar):
            try:
                from .redact import add_secret
            except ImportError:  # pragma: no cover
                add_secret = None
            for cookie in list(jar):
                if add_secret is not None and cookie.value:
                    add_secret(cookie.value)
            jar.clear()


def _clean_ctype(value: str) -> str:
    value = str(value)[:200]
    return "".join(ch for ch in value if " " <= ch < "\x7f")


def _read_body(raw, deadline: float):
    """Read the body in chunks: bounded size, deadline checked between chunks, and
    each socket read bounded by the time left. Returns (body, kind)."""
    length = raw.headers.get("Content-Length", "").strip()
    expected = int(length) if length.isdigit() else None
    if expected is not None and expected > MAX_BODY:
        return b"", TOO_LARGE
    conn = getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    chunks: list[bytes] = []
    total = 0
    kind = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                kind = TIMEOUT
                break
            if sock is not None:
                sock.settimeout(left)
            chunk = raw.read1(CHUNK, decode_content=False)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_BODY:
                kind = TOO_LARGE
                break
            chunks.append(chunk)
            if total == expected:
                break  # all of a framed body: no read for the end of it
    except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
        kind = TIMEOUT
    except (urllib3.exceptions.HTTPError, HTTPException, OSError, ValueError, AttributeError):
        kind = RESET
    if kind is not None:
        return b"", kind
    return b"".join(chunks), None


def _release(resp, reuse: bool) -> None:
    try:
        if reuse:
            resp.raw.release_conn()
        else:
            resp.raw.close()  # never pool a connection in an unknown state
            resp.raw.release_conn()
    except Exception:  # noqa: BLE001 - cleanup must not raise
        pass
