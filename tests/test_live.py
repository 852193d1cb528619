"""The live transport against real loopback servers: what leaves the machine, what
comes back, and how every fault ends (a TransportError kind, in bounded time, with
nothing of the URL, query or cookies in it)."""

from __future__ import annotations

import hashlib
import os
import socket
import socketserver
import ssl
import statistics
import struct
import subprocess
import sys
import threading
import time
import traceback
from types import SimpleNamespace

import pytest
import requests
import responses
import trustme

import ibgw
from ibgw import live, redact
from ibgw.errors import PolicyRefused
from ibgw.gateway import _send_checked
from ibgw.live import MAX_BODY, LiveTransport
from ibgw.transport import (
    REDIRECT,
    REFUSED,
    RESET,
    TIMEOUT,
    TLS,
    TOO_LARGE,
    Request,
    TransportError,
)

QUERY_CANARY = "QCANARY7731"
COOKIE_CANARY = "CKCANARY5518aa"
ALLOWED_HEADERS = {
    "host",
    "accept",
    "user-agent",
    "accept-encoding",
    "content-type",
    "content-length",
}


# -- a raw loopback HTTP server ---------------------------------------------------------


class Seen:
    def __init__(self, method, target, headers, body):
        self.method, self.target, self.headers, self.body = method, target, headers, body

    def header(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class RawServer:
    """A threaded TCP server that parses requests itself and lets each test write any
    bytes back (``behaviour(sock, seen) -> keep_alive``). Records every connection and
    request exactly as received."""

    def __init__(self, behaviour, tls: ssl.SSLContext | None = None):
        self.behaviour = behaviour
        self.tls = tls
        self.seen: list[Seen] = []
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer.connections += 1
                sock = self.request
                sock.settimeout(10)
                if outer.tls is not None:
                    try:
                        sock = outer.tls.wrap_socket(sock, server_side=True)
                    except (OSError, ssl.SSLError):
                        return
                buf = b""
                try:
                    while True:
                        while b"\r\n\r\n" not in buf:
                            data = sock.recv(65536)
                            if not data:
                                return
                            buf += data
                        head, buf = buf.split(b"\r\n\r\n", 1)
                        lines = head.decode("latin-1").split("\r\n")
                        method, target, _ = lines[0].split(" ", 2)
                        headers = [
                            tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]
                        ]
                        length = int(
                            dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                        )
                        while len(buf) < length:
                            buf += sock.recv(65536)
                        body, buf = buf[:length], buf[length:]
                        seen = Seen(method, target, headers, body)
                        outer.seen.append(seen)
                        if not outer.behaviour(sock, seen):
                            return
                except (OSError, ValueError):
                    return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, scheme="http", host="127.0.0.1"):
        return f"{scheme}://{host}:{self.port}/v1/api"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def respond(status=200, body=b'{"ok": true}', headers=(), reason="OK"):
    def behaviour(sock, seen):
        head = [
            f"HTTP/1.1 {status} {reason}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        head += list(headers)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return True

    return behaviour


def _write_quietly(sock, data):
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def drip_body(sock, seen):
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
    )
    for _ in range(999):
        time.sleep(0.1)
        if not _write_quietly(sock, b" "):
            break
    return False


def drip_headers(sock, seen):
    sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(500):
        time.sleep(0.1)
        if not _write_quietly(sock, b"a"):
            break
    return False


def drip_chunk_size(sock, seen):
    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(500):
        time.sleep(0.1)
        if not _write_quietly(sock, b"0"):
            break
    return False


def pause_body(sock, seen):
    sock.sendall(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"a": '
    )
    time.sleep(1.3)  # longer than any per-read cap would allow, well within the deadline
    sock.sendall(b'"xyz"}')
    return True


def slow_answer(sock, seen):
    time.sleep(4)
    return False


def reset_mid_body(sock, seen):
    sock.sendall(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a": [1, 2'
    )
    time.sleep(0.1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return False


def close_mid_body(sock, seen):
    sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"a": [1, 2')
    return False


def close_without_answer(sock, seen):
    return False


def huge_declared(sock, seen):
    sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
    _write_quietly(sock, b" " * 65536)
    return False


def huge_chunked(sock, seen):
    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    for _ in range(MAX_BODY // len(chunk) + 64):
        if not _write_quietly(sock, b"%x\r\n%s\r\n" % (len(chunk), chunk)):
            break
    _write_quietly(sock, b"0\r\n\r\n")
    return False


def huge_unframed(sock, seen):
    sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    chunk = b" " * 65536
    for _ in range(MAX_BODY // len(chunk) + 64):
        if not _write_quietly(sock, chunk):
            break
    return False


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def server_factory():
    servers = []

    def make(behaviour, tls=None):
        srv = RawServer(behaviour, tls)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca):
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def tls_context(server_cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    return ctx


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def secrets_seen(monkeypatch):
    seen = []
    monkeypatch.setattr(redact, "add_secret", seen.append)
    return seen


def config(url, **kw):
    base = dict(
        gateway_url=url, verify_tls=True, ca_bundle=None, tls_fingerprint=None, timeout=10.0
    )
    base.update(kw)
    return SimpleNamespace(**base)


def get(path="/iserver/accounts", query=(), deadline=5.0):
    return Request("GET", path, tuple(query), None, time.monotonic() + deadline)


def _fails(transport, request, kind, within: float | None = None) -> TransportError:
    start = time.monotonic()
    with pytest.raises(TransportError) as info:
        _send_checked(transport, request)
    elapsed = time.monotonic() - start
    err = info.value
    assert err.kind == kind, (err.kind, kind)
    if within is not None:
        assert elapsed < within, elapsed
    _assert_clean(err)
    return err


def _assert_clean(err: BaseException):
    text = "".join(traceback.format_exception(err)) + repr(err) + str(err) + repr(err.args)
    for secret in (QUERY_CANARY, COOKIE_CANARY, "symbol=", "?", "127.0.0.1", "/v1/api"):
        assert secret not in text, secret
    assert err.__cause__ is None
    assert err.__context__ is None


# -- what goes out ------------------------------------------------------------------


def test_server_sees_exactly_the_path_and_only_allowed_headers(server_factory):
    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    resp = _send_checked(
        t, get("/iserver/secdef/search", (("symbol", "BRK B"), ("name", "true"), ("x", "a&b=c/é")))
    )
    assert (
        resp.status == 200
        and resp.body == b'{"ok": true}'
        and resp.content_type == "application/json"
    )
    _send_checked(t, Request("POST", "/iserver/auth/status", (), b"{}", time.monotonic() + 5))
    _send_checked(t, get("/iserver/account/search/BRK%20B"))
    get_seen, post_seen, enc_seen = srv.seen
    assert get_seen.method == "GET"
    assert (
        get_seen.target
        == "/v1/api/iserver/secdef/search?symbol=BRK+B&name=true&x=a%26b%3Dc%2F%C3%A9"
    )
    assert get_seen.body == b""
    assert {k.lower() for k, _ in get_seen.headers} == {
        "host",
        "accept",
        "user-agent",
        "accept-encoding",
    }
    assert get_seen.header("Accept") == ["application/json"]
    assert get_seen.header("User-Agent") == [f"ibgw/{ibgw.__version__}"]
    assert get_seen.header("Accept-Encoding") == ["identity"]
    assert post_seen.method == "POST" and post_seen.target == "/v1/api/iserver/auth/status"
    assert post_seen.body == b"{}"
    assert {k.lower() for k, _ in post_seen.headers} == ALLOWED_HEADERS
    assert post_seen.header("Content-Type") == ["application/json"]
    assert enc_seen.target == "/v1/api/iserver/account/search/BRK%20B"
    for seen in srv.seen:
        assert not seen.header("Cookie") and not seen.header("Authorization")
        assert not seen.header("X-HTTP-Method-Override")


def test_post_without_body_sends_empty_object(server_factory):
    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    _send_checked(t, Request("POST", "/tickle", (), None, time.monotonic() + 5))
    assert srv.seen[0].body == b"{}" and srv.seen[0].header("Content-Length") == ["2"]


def test_sequential_reads_reuse_one_connection(server_factory):
    # The body is read up to its Content-Length and no further; the connection must
    # still go back to the pool in a clean state and serve the next request.
    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    for _ in range(5):
        assert _send_checked(t, get()).status == 200
    assert srv.connections == 1 and len(srv.seen) == 5


def test_keep_alive_and_concurrency(server_factory):
    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    results = []

    def run():
        for _ in range(10):
            results.append(_send_checked(t, get()).status)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert results == [200] * 80
    assert srv.connections <= 16  # connections are pooled and reused


def test_status_and_body_pass_through(server_factory):
    srv = server_factory(
        respond(503, b"<html>down</html>", ("Content-Type: text/html\r\nX: y",), "Unavailable")
    )
    resp = _send_checked(LiveTransport(config(srv.url())), get())
    assert resp.status == 503 and resp.body == b"<html>down</html>"
    assert not hasattr(resp, "headers")


# -- the environment changes nothing ----------------------------------------------------


def test_environment_proxies_netrc_and_ca_bundles_have_no_effect(
    server_factory, tls_context, ca_file, tmp_path, monkeypatch
):
    proxy = server_factory(respond(200, b'{"proxy": true}'))
    srv = server_factory(respond())
    tls_srv = server_factory(respond(), tls_context)
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(
        "machine 127.0.0.1 login user password NETRCCANARY\nmachine localhost login u password NETRCCANARY\n"
        "default login u password NETRCCANARY\n"
    )
    netrc.chmod(0o600)
    proxy_url = f"http://127.0.0.1:{proxy.port}"
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.setenv(name, proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, ca_file)

    assert _send_checked(LiveTransport(config(srv.url())), get()).body == b'{"ok": true}'
    assert (
        srv.seen
        and not srv.seen[0].header("Authorization")
        and not srv.seen[0].header("Proxy-Authorization")
    )
    # REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE/SSL_CERT_FILE name a CA that would trust the
    # server; ignoring them means verification fails.
    _fails(LiveTransport(config(tls_srv.url("https"))), get(), TLS, within=5)
    assert proxy.connections == 0 and proxy.seen == []
    # a bare requests.Session would have used the proxy and the .netrc password
    # (a check that the environment set up here is effective at all)
    assert requests.Session().get(srv.url() + "/iserver/accounts").json() == {"proxy": True}
    assert proxy.seen and proxy.seen[0].header("Authorization")


# -- faults -------------------------------------------------------------------------------


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused():
    t = LiveTransport(config(f"http://127.0.0.1:{_free_port()}/v1/api"))
    _fails(t, get("/iserver/secdef/search", (("symbol", QUERY_CANARY),)), REFUSED, within=3)


def test_closed_without_answer_is_refused(server_factory):
    srv = server_factory(close_without_answer)
    _fails(
        LiveTransport(config(srv.url())),
        get("/iserver/secdef/search", (("symbol", QUERY_CANARY),)),
        REFUSED,
        within=3,
    )


def test_slow_drip_body_ends_at_the_deadline(server_factory):
    srv = server_factory(drip_body)
    _fails(
        LiveTransport(config(srv.url())),
        get("/iserver/secdef/search", (("symbol", QUERY_CANARY),), 1.0),
        TIMEOUT,
        within=2.0,
    )


def test_slow_drip_headers_ends_at_the_deadline(server_factory):
    srv = server_factory(drip_headers)
    _fails(LiveTransport(config(srv.url())), get(deadline=1.0), TIMEOUT, within=2.0)


def test_slow_drip_chunk_size_ends_at_the_deadline(server_factory):
    srv = server_factory(drip_chunk_size)
    _fails(LiveTransport(config(srv.url())), get(deadline=1.0), TIMEOUT, within=2.0)


def test_no_answer_ends_at_the_deadline(server_factory):
    srv = server_factory(slow_answer)
    _fails(LiveTransport(config(srv.url())), get(deadline=0.8), TIMEOUT, within=2.0)


def test_no_answer_over_tls_ends_at_the_deadline(server_factory, tls_context, ca_file):
    srv = server_factory(slow_answer, tls_context)
    _fails(
        LiveTransport(config(srv.url("https"), ca_bundle=ca_file)),
        get(deadline=0.8),
        TIMEOUT,
        within=2.0,
    )


def test_tls_handshake_stall_ends_at_the_deadline(server_factory, ca_file):
    srv = server_factory(slow_answer)  # plain TCP: never answers the ClientHello
    _fails(
        LiveTransport(config(srv.url("https"), ca_bundle=ca_file)),
        get(deadline=0.8),
        TIMEOUT,
        within=2.0,
    )


def test_pause_within_deadline_is_not_a_timeout(server_factory):
    srv = server_factory(pause_body)
    resp = _send_checked(LiveTransport(config(srv.url())), get(deadline=5.0))
    assert resp.body == b'{"a": "xyz"}'


def test_expired_deadline_sends_nothing(server_factory):
    srv = server_factory(respond())
    _fails(LiveTransport(config(srv.url())), get(deadline=-1), TIMEOUT, within=0.5)
    assert srv.connections == 0


def test_reset_mid_body(server_factory):
    srv = server_factory(reset_mid_body)
    _fails(
        LiveTransport(config(srv.url())),
        get("/iserver/secdef/search", (("symbol", QUERY_CANARY),)),
        RESET,
        within=3,
    )


def test_closed_mid_body(server_factory):
    srv = server_factory(close_mid_body)
    _fails(LiveTransport(config(srv.url())), get(), RESET, within=3)


@pytest.mark.parametrize(
    "behaviour",
    [huge_declared, huge_chunked, huge_unframed],
    ids=["content-length", "chunked", "unframed"],
)
def test_huge_body_capped(server_factory, behaviour):
    srv = server_factory(behaviour)
    _fails(LiveTransport(config(srv.url())), get(deadline=20), TOO_LARGE, within=15)


def test_redirect_not_followed_and_target_never_contacted(server_factory, secrets_seen):
    target = server_factory(respond())
    srv = server_factory(
        respond(
            302,
            b"x" * 100_000,
            (
                f"Location: http://127.0.0.1:{target.port}/v1/api/logout",
                f"Set-Cookie: JSESSIONID={COOKIE_CANARY}; Path=/; HttpOnly",
            ),
            "Found",
        )
    )
    t = LiveTransport(config(srv.url()))
    for status_path in ("/iserver/accounts", "/tickle"):
        method = "POST" if status_path == "/tickle" else "GET"
        with pytest.raises(TransportError) as info:
            _send_checked(t, Request(method, status_path, (), None, time.monotonic() + 5))
        assert info.value.kind == REDIRECT
        _assert_clean(info.value)
    assert target.connections == 0 and target.seen == []
    assert COOKIE_CANARY in secrets_seen
    assert len(t.session.cookies) == 0


@pytest.mark.parametrize("status", [301, 303, 307, 308])
def test_every_redirect_status_refused(server_factory, status):
    target = server_factory(respond())
    srv = server_factory(
        respond(status, b"", (f"Location: http://127.0.0.1:{target.port}/",), "Moved")
    )
    _fails(LiveTransport(config(srv.url())), get(), REDIRECT)
    assert target.connections == 0


def test_set_cookie_values_reach_add_secret_and_jar_stays_empty(server_factory, secrets_seen):
    srv = server_factory(
        respond(
            200,
            b"{}",
            (
                f"Set-Cookie: JSESSIONID={COOKIE_CANARY}; Path=/; Secure; HttpOnly",
                'Set-Cookie: x-sess-uuid="0.abcdef12.1700000000"; Path=/',
                "Set-Cookie: api=; Path=/",
            ),
        )
    )
    t = LiveTransport(config(srv.url()))
    _send_checked(t, get())
    assert COOKIE_CANARY in secrets_seen
    assert "0.abcdef12.1700000000" in secrets_seen
    assert "" not in secrets_seen
    assert len(t.session.cookies) == 0
    _send_checked(t, get())
    assert not srv.seen[1].header("Cookie")  # the gateway keeps its own jar


def test_session_jar_is_harvested_and_cleared(server_factory, secrets_seen):
    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    t.session.cookies.set("JSESSIONID", COOKIE_CANARY)
    _send_checked(t, get())
    assert COOKIE_CANARY in secrets_seen and len(t.session.cookies) == 0
    assert not srv.seen[0].header("Cookie")


# -- TLS ----------------------------------------------------------------------------------


def _fingerprint(cert) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    return hashlib.sha256(der).hexdigest()


def test_https_with_ca_bundle(server_factory, tls_context, ca_file):
    srv = server_factory(respond(), tls_context)
    assert (
        _send_checked(LiveTransport(config(srv.url("https"), ca_bundle=ca_file)), get()).status
        == 200
    )
    t = LiveTransport(config(srv.url("https", "localhost"), ca_bundle=ca_file))
    assert _send_checked(t, get()).status == 200
    assert t.websocket_url() == f"wss://localhost:{srv.port}/v1/api/ws"


def test_https_untrusted_is_tls_error(server_factory, tls_context):
    srv = server_factory(respond(), tls_context)
    _fails(
        LiveTransport(config(srv.url("https"))),
        get("/iserver/secdef/search", (("symbol", QUERY_CANARY),)),
        TLS,
        within=5,
    )


def test_https_wrong_name_is_tls_error(server_factory, ca, ca_file):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("gateway.example").configure_cert(ctx)
    srv = server_factory(respond(), ctx)
    _fails(LiveTransport(config(srv.url("https"), ca_bundle=ca_file)), get(), TLS, within=5)


def test_pinned_fingerprint_accepted(server_factory, tls_context, server_cert):
    srv = server_factory(respond(), tls_context)
    fp = _fingerprint(server_cert)
    assert (
        _send_checked(LiveTransport(config(srv.url("https"), tls_fingerprint=fp)), get()).status
        == 200
    )
    # pinned overrides verify_tls = false as well: the pin is still checked
    pinned = LiveTransport(config(srv.url("https"), verify_tls=False, tls_fingerprint=fp))
    assert _send_checked(pinned, get()).status == 200


def test_pinned_fingerprint_mismatch_refused(server_factory, tls_context, server_cert):
    srv = server_factory(respond(), tls_context)
    wrong = hashlib.sha256(b"another certificate").hexdigest()
    _fails(LiveTransport(config(srv.url("https"), tls_fingerprint=wrong)), get(), TLS, within=5)
    _fails(
        LiveTransport(config(srv.url("https"), verify_tls=False, tls_fingerprint=wrong)),
        get(),
        TLS,
        within=5,
    )
    assert srv.seen == []  # no request ever written to an unpinned peer


def test_verify_false_works_without_warnings(server_factory, tls_context, recwarn):
    srv = server_factory(respond(), tls_context)
    assert (
        _send_checked(LiveTransport(config(srv.url("https"), verify_tls=False)), get()).status
        == 200
    )
    assert not [w for w in recwarn if "Unverified" in str(w.message)]


def test_plain_http_to_tls_url_is_tls_error():
    # A plain HTTP server answers the ClientHello with a 400 in clear text.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        _fails(LiveTransport(config(f"https://127.0.0.1:{port}/v1/api")), get(), TLS, within=5)
    finally:
        th.join(timeout=5)
        listener.close()


# -- policy before a byte leaves --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/iserver/account/DU1/orders"),
        ("GET", "/logout"),
        ("DELETE", "/iserver/account/DU1/order/1"),
        ("get", "/iserver/accounts"),
        ("GET", "/iserver/%2e%2e/logout"),
        ("POST", "/iserver/accounts"),
    ],
)
def test_policy_runs_in_the_transport(server_factory, method, path):
    """With a valid ticket (minted as the facade would, without its checks) the
    transport still refuses: its own policy check runs on the request."""
    from ibgw.transport import claim_minter

    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    mint = claim_minter(t)
    request = Request(method, path, (), b"{}", time.monotonic() + 5)
    with pytest.raises(PolicyRefused):
        t.send(request, mint(request))
    with pytest.raises(PolicyRefused):
        _send_checked(LiveTransport(config(srv.url())), request)
    assert srv.connections == 0


def test_body_on_get_refused(server_factory):
    srv = server_factory(respond())
    with pytest.raises(PolicyRefused):
        _send_checked(
            LiveTransport(config(srv.url())),
            Request("GET", "/iserver/accounts", (), b"{}", time.monotonic() + 5),
        )
    assert srv.connections == 0


def _tamper_prepare(monkeypatch, change):
    """Change the prepared request between its building and the re-check."""
    original = LiveTransport._prepare

    def prepare(self, *args):
        prep = original(self, *args)
        change(prep)
        return prep

    monkeypatch.setattr(LiveTransport, "_prepare", prepare)


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.headers.__setitem__("X-HTTP-Method-Override", "DELETE"),
        lambda p: p.headers.__setitem__("Cookie", "a=b"),
        lambda p: p.headers.__setitem__("Authorization", "Basic eDp5"),
        lambda p: p.headers.__setitem__("Accept", "*/*"),
        lambda p: setattr(p, "method", "DELETE"),
        lambda p: setattr(p, "url", p.url.replace("/iserver/accounts", "/logout")),
        lambda p: setattr(p, "url", p.url.replace("127.0.0.1", "localhost")),
        lambda p: setattr(p, "url", p.url.replace("http://", "http://user:pw@")),
        lambda p: setattr(p, "url", p.url + "#x"),
        lambda p: setattr(p, "body", b"{}"),
    ],
    ids=[
        "override-header",
        "cookie",
        "authorization",
        "accept",
        "method",
        "path",
        "host",
        "userinfo",
        "fragment",
        "body",
    ],
)
def test_prepared_request_is_rechecked(server_factory, monkeypatch, change):
    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    _tamper_prepare(monkeypatch, change)
    with pytest.raises(PolicyRefused) as info:
        _send_checked(t, get())
    assert info.value.reason == "prepared-mismatch"
    assert srv.connections == 0


def test_target_reencoding_is_rechecked(server_factory, monkeypatch):
    srv = server_factory(respond())
    monkeypatch.setattr(live, "_encode_target", lambda target: target.replace("accounts", "logout"))
    with pytest.raises(PolicyRefused):
        _send_checked(LiveTransport(config(srv.url())), get())
    assert srv.connections == 0


# -- misc ---------------------------------------------------------------------------------


def test_websocket_url_and_close():
    t = LiveTransport(config("http://127.0.0.1:5000/v1/api"))
    assert t.websocket_url() == "ws://127.0.0.1:5000/v1/api/ws"
    t2 = LiveTransport(config("https://[::1]:5000/v1/api", verify_tls=False))
    assert t2.websocket_url() == "wss://[::1]:5000/v1/api/ws"
    assert t.name == "live" and t.paced is True
    t.close()
    t2.close()


def test_session_is_locked_down():
    t = LiveTransport(config("https://localhost:5000/v1/api"))
    assert t.session.trust_env is False and t.session.max_redirects == 0
    adapter = t.session.get_adapter("https://localhost:5000/")
    assert adapter._pool_maxsize == 8
    assert adapter.max_retries.total == 0


@responses.activate
def test_responses_unit_passthrough():
    responses.add(
        responses.GET,
        "https://localhost:5000/v1/api/iserver/accounts",
        body=b'{"a": 1}',
        status=500,
        content_type="application/json; charset=utf-8",
    )
    resp = _send_checked(
        LiveTransport(config("https://localhost:5000/v1/api", verify_tls=False)), get()
    )
    assert resp.status == 500 and resp.body == b'{"a": 1}'
    assert resp.content_type == "application/json; charset=utf-8"


@responses.activate
def test_responses_unit_connection_error():
    responses.add(
        responses.GET,
        "https://localhost:5000/v1/api/iserver/accounts",
        body=requests.exceptions.ConnectionError(f"boom https://localhost/?symbol={QUERY_CANARY}"),
    )
    err = _fails(
        LiveTransport(config("https://localhost:5000/v1/api", verify_tls=False)), get(), REFUSED
    )
    assert "boom" not in str(err)


def test_live_backend_hook_and_lazy_import():
    from ibgw.default_plugins import live_backend

    transport = live_backend.ibgw_backend(
        config("https://localhost:5000/v1/api", verify_tls=False), None
    )
    assert isinstance(transport, LiveTransport)
    code = (
        "import sys, ibgw.default_plugins.live_backend as m; "
        "print('requests' in sys.modules, 'urllib3' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.stdout.split() == ["False", "False"]


def test_overhead_vs_bare_session(server_factory, capsys):
    srv = server_factory(respond())
    t = LiveTransport(config(srv.url()))
    bare = requests.Session()
    url = srv.url() + "/iserver/accounts"
    for _ in range(20):  # warm both pools
        _send_checked(t, get())
        bare.get(url)
    ours, theirs = [], []
    for _ in range(200):
        start = time.perf_counter()
        _send_checked(t, get())
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare.get(url)
        theirs.append(time.perf_counter() - start)
    m_ours, m_theirs = statistics.median(ours) * 1e6, statistics.median(theirs) * 1e6
    with capsys.disabled():
        print(
            f"\nLiveTransport.send median {m_ours:.0f} us, bare Session.get median {m_theirs:.0f} us, "
            f"overhead {m_ours - m_theirs:+.0f} us"
        )
    assert m_ours < m_theirs + 2000
