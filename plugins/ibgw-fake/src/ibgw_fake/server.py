"""A real loopback HTTP/HTTPS server that plays the Client Portal Gateway.

It serves the fixture router under ``/v1/api/...`` (``/v1/portal/...`` is
rewritten to ``/v1/api/...`` as the real gateway does), in a scenario that can
change at runtime, with IBKR's pacing limits enforced (429 beyond them). Any
HTTP client can be pointed at it: ``ibgw`` itself with the live backend, a
browser, ``curl``. It binds to loopback addresses only and never logs request
headers (nor anything else: it is silent).

Python API::

    with FakeGatewayServer(pm, scenario="connected", tls=True) as gw:
        gw.url          # https://localhost:PORT/v1/api
        gw.fingerprint  # sha256 of the certificate, lower-case hex
        gw.scenario = "no-bridge"
        gw.requests     # [(method, path, query dict), ...]
        gw.ws_messages  # text messages received on /v1/api/ws, in order (ibgw_fake.ws)
        gw.stats        # {"total": n, "429": n, "paths": {path: n}}
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from ibgw.errors import UsageError

from .pacing import ServerPacer
from .router import NOT_FOUND_BODY, FakeRequest, FakeRouter
from .scenarios import LOGIN_PAGE, REFUSED, ScenarioFault, chain, check_scenario

LOOPBACK_HOSTS = {"127.0.0.1": socket.AF_INET, "localhost": socket.AF_INET, "::1": socket.AF_INET6}
MAX_BODY = 1 << 20
DRIP_INTERVAL_S = 0.5
DRIP_CAP_S = 60.0
API_PREFIX = "/v1/api"
PORTAL_PREFIX = "/v1/portal"


def generate_self_signed(directory: str) -> tuple[str, str]:
    """Write a fresh self-signed certificate for ``localhost``, ``127.0.0.1`` and
    ``::1`` (and its private key, mode 0600) into ``directory``; return
    ``(cert_path, key_path)``. Needs the ``cryptography`` package."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ibgw fake gateway"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "fake-gateway-cert.pem")
    key_path = os.path.join(directory, "fake-gateway-key.pem")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def cert_fingerprint(cert_path: str) -> str:
    """SHA-256 of the DER form of the first certificate in a PEM file, lower-case hex."""
    with open(cert_path, encoding="ascii") as fh:
        pem = fh.read()
    begin = pem.index("-----BEGIN CERTIFICATE-----")
    end = pem.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem[begin:end])).hexdigest()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address, family, fake: FakeGatewayServer, ssl_context):
        self.address_family = family
        self.fake = fake
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    def get_request(self):
        sock, addr = self.socket.accept()
        # headers and body go out in separate writes: without this, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every answer
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr

    def handle_error(self, request, client_address):
        # a client that went away, a failed TLS handshake: nothing worth printing
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeClientPortalGW/1"
    timeout = 30

    def version_string(self):
        return self.server_version

    def setup(self):
        fake = self.server.fake
        fake._track(self.request, True)
        try:
            super().setup()
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()
        except Exception:
            fake._track(self.request, False)
            raise

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.fake._track(self.request, False)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        # silent: request lines carry query strings and must never reach a log
        pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- one request ------------------------------------------------------------------------

    def _read_body(self) -> tuple[bytes | None, int | None]:
        """``(body, error_status)``."""
        if self.headers.get("Transfer-Encoding"):
            return None, 411
        length = self.headers.get("Content-Length")
        if length is None:
            return (None, 411) if self.command in ("POST", "PUT", "PATCH") else (None, None)
        try:
            n = int(length)
        except ValueError:
            return None, 400
        if n < 0 or n > MAX_BODY:
            return None, 413
        return (self.rfile.read(n) if n else b""), None

    def _send(self, status: int, ctype: str, body: bytes, cookies: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype if ";" in ctype else f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (cookies or {}).items():
            self.send_header("Set-Cookie", f"{name}={value}; Path=/; Secure; HttpOnly")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _handle(self):
        fake: FakeGatewayServer = self.server.fake
        raw_path, _, query_string = self.path.partition("?")
        raw_path = raw_path.partition("#")[0]
        body, error = self._read_body()
        if error is not None:
            self.close_connection = True
            self._send(error, "text/plain", b"")
            return
        if fake._stopping.is_set():
            self.close_connection = True
            return
        if raw_path == PORTAL_PREFIX or raw_path.startswith(PORTAL_PREFIX + "/"):
            raw_path = API_PREFIX + raw_path[len(PORTAL_PREFIX) :]
        if raw_path in ("/", "/index.html"):
            self._send(200, "text/html", LOGIN_PAGE)
            return
        if not raw_path.startswith(API_PREFIX + "/"):
            self._send(404, "text/html", NOT_FOUND_BODY)
            return
        path = raw_path[len(API_PREFIX) :]
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        method = self.command.upper()
        scenario = fake.scenario
        fake._record(method, path, query)

        if chain(scenario, fake.router)[-1] == "gateway-down":
            self.close_connection = True  # accept, read, and hang up without an answer
            return
        upgrade = (self.headers.get("Upgrade") or "").lower()
        if method == "GET" and path == "/ws" and "websocket" in upgrade:
            from .ws import serve  # the websocket (market depth); the scenario applies there too

            serve(self, fake, scenario)
            return
        ticket = fake.pacer.admit(method, path) if fake.pacer is not None else None
        if fake.pacer is not None and ticket is None:
            fake._count_429()
            self._send(429, "text/plain", b"Too Many Requests")
            return
        try:
            if fake.latency_ms and fake._stopping.wait(fake.latency_ms / 1000.0):
                self.close_connection = True
                return
            request = FakeRequest(
                method=method,
                path=path,
                query=query,
                body=FakeRequest.parse_body(body),
                raw_body=body,
                scenario=scenario,
                deadline=None,
            )
            try:
                status, ctype, data, cookies = fake.router.handle(request)
            except ScenarioFault as fault:
                if fault.kind == REFUSED:
                    self.close_connection = True
                    return
                self._drip(fault.answer)
                return
            if status == 429:
                fake._count_429()
            self._send(status, ctype, data, cookies)
        finally:
            if ticket is not None:
                ticket.release()

    def _drip(self, answer):
        """Headers now, then the body one byte per 0.5 s: only an overall deadline
        stops a client that waits for the whole answer."""
        fake: FakeGatewayServer = self.server.fake
        self.close_connection = True
        body = answer.body or b"{}"
        self.send_response(answer.status)
        self.send_header("Content-Type", f"{answer.content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        started = time.monotonic()
        for i in range(len(body)):
            if fake._stopping.wait(DRIP_INTERVAL_S) or time.monotonic() - started > DRIP_CAP_S:
                return
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()


class FakeGatewayServer:
    """A fake Client Portal Gateway on a loopback port.

    ``pm``: the plugin manager whose plugins contribute fixtures (``None``: the
    core fixtures only). ``scenario`` and ``latency_ms`` (added to every
    request) can be changed while it runs. ``tls=True`` serves HTTPS with
    ``cert``/``key`` PEM files, or a freshly generated self-signed certificate
    for ``localhost``/``127.0.0.1``/``::1``. ``port=0`` picks a free port.
    ``host`` must be a loopback name: ``127.0.0.1``, ``localhost`` or ``::1``.
    ``pacing=False`` turns IBKR's pacing limits off (they are on by default).
    """

    def __init__(
        self,
        pm=None,
        scenario: str = "connected",
        latency_ms: int = 0,
        tls: bool = False,
        port: int = 0,
        host: str = "127.0.0.1",
        cert: str | None = None,
        key: str | None = None,
        pacing: bool = True,
    ):
        if host not in LOOPBACK_HOSTS:
            raise UsageError(
                f"host: the fake gateway listens on loopback only; use one of {', '.join(LOOPBACK_HOSTS)}"
            )
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise UsageError("port: must be a number from 0 to 65535")
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, int) or latency_ms < 0:
            raise UsageError("latency_ms: must be a whole number of milliseconds, 0 or more")
        if (cert is None) != (key is None):
            raise UsageError("tls: give both --cert and --key, or neither")
        if cert is not None and not tls:
            raise UsageError("tls: --cert and --key need --tls")
        self.router = FakeRouter(pm)
        self._scenario = check_scenario(scenario, self.router)
        self.latency_ms = latency_ms
        self.tls = tls
        self.host = host
        self.port = port
        self._cert, self._key = cert, key
        self.pacer = ServerPacer() if pacing else None
        self.cert_path: str | None = None
        self.fingerprint: str | None = None
        self.requests: list[tuple[str, str, dict]] = []
        self.ws_messages: list[str] = []  # text messages received on /v1/api/ws (see ws.py)
        self.stats: dict = {"total": 0, "429": 0, "paths": Counter()}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None

    # -- runtime settings -------------------------------------------------------------------

    @property
    def scenario(self) -> str:
        return self._scenario

    @scenario.setter
    def scenario(self, name: str) -> None:
        self._scenario = check_scenario(name, self.router)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1/api`` or ``https://localhost:PORT/v1/api``."""
        if self._httpd is None:
            raise RuntimeError("the fake gateway is not running")
        if self.host == "::1":
            host = "[::1]"
        else:
            host = "localhost" if self.tls else "127.0.0.1"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{API_PREFIX}"

    # -- bookkeeping ------------------------------------------------------------------------

    def _record(self, method: str, path: str, query: dict) -> None:
        with self._lock:
            self.requests.append((method, path, query))
            self.stats["total"] += 1
            self.stats["paths"][path] += 1

    def _count_429(self) -> None:
        with self._lock:
            self.stats["429"] += 1

    def _track(self, sock, opened: bool) -> None:
        with self._lock:
            if opened:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    def reset(self) -> None:
        """Forget logged requests, counters and pacing windows."""
        with self._lock:
            self.requests.clear()
            self.ws_messages.clear()
            self.stats.update({"total": 0, "429": 0, "paths": Counter()})
        if self.pacer is not None:
            self.pacer.reset()

    # -- lifecycle --------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        cert, key = self._cert, self._key
        if cert is None:
            self._tmpdir = tempfile.mkdtemp(prefix="ibgw-fake-gw-")
            cert, key = generate_self_signed(self._tmpdir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError, ValueError):
            raise UsageError("tls: cannot load the certificate and key (PEM files)") from None
        self.cert_path = cert
        self.fingerprint = cert_fingerprint(cert)
        return ctx

    def start(self) -> FakeGatewayServer:
        """Listen and serve in a background thread; returns ``self``."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        ctx = self._ssl_context()
        family = LOOPBACK_HOSTS[self.host]
        bind = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        try:
            self._httpd = _HTTPServer((bind, self.port), family, self, ctx)
        except OSError:
            self._cleanup_tmp()
            raise
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"ibgw-fake-gateway-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, hang up open connections and remove generated files."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self.cert_path = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> FakeGatewayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
