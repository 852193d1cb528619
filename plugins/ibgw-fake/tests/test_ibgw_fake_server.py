"""The fake gateway over a real loopback socket."""

import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import warnings

import pytest
import requests
from ibgw_fake.router import NOT_FOUND_BODY, secret_value
from ibgw_fake.scenarios import LOGIN_PAGE
from ibgw_fake.server import FakeGatewayServer, cert_fingerprint, generate_self_signed
from urllib3.exceptions import InsecureRequestWarning

from ibgw.errors import UsageError

NO_BRIDGE = {"error": "Bad Request: no bridge", "statusCode": 400}


@pytest.fixture
def quiet_tls():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


@pytest.fixture(scope="module")
def gw():
    """One plain-HTTP server without pacing for the scenario tests."""
    from ibgw_fake_testutil import make_pm

    with FakeGatewayServer(make_pm(), pacing=False) as server:
        yield server


@pytest.fixture
def session(gw):
    gw.scenario = "connected"
    gw.latency_ms = 0
    with requests.Session() as s:
        s.trust_env = False
        yield s
    gw.scenario = "connected"


def test_url_and_basic_answers(gw, session):
    assert gw.url == f"http://127.0.0.1:{gw.port}/v1/api"
    assert gw.fingerprint is None
    r = session.post(gw.url + "/tickle", json={}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["iserver"]["authStatus"]["authenticated"] is True
    assert r.cookies.get("x-sess-uuid") == secret_value("cookie")
    r = session.get(gw.url + "/portfolio/DU1234567/positions/1", timeout=5)
    assert len(r.json()) == 100
    r = session.get(gw.url + "/iserver/secdef/search", params={"symbol": "AAPL"}, timeout=5)
    assert r.json()[0]["symbol"] == "AAPL"
    r = session.post(gw.url + "/iserver/secdef/search", json={"symbol": "SPY"}, timeout=5)
    assert r.json()[0]["conid"] == "756733"


def test_unknown_paths_answer_resource_not_found(gw, session):
    for url in (gw.url + "/iserver/nothing", f"http://127.0.0.1:{gw.port}/elsewhere"):
        r = session.get(url, timeout=5)
        assert r.status_code == 404 and r.content == NOT_FOUND_BODY
        assert r.headers["Content-Type"].startswith("text/html")


def test_portal_prefix_is_rewritten_to_api(gw, session):
    portal = gw.url.replace("/v1/api", "/v1/portal")
    r = session.get(portal + "/portfolio/DU1234567/meta", timeout=5)
    assert r.status_code == 200 and r.json()["accountId"] == "DU1234567"
    assert gw.requests[-1] == ("GET", "/portfolio/DU1234567/meta", {})


def test_request_log_and_stats(gw, session):
    gw.reset()
    session.get(gw.url + "/trsrv/stocks", params={"symbols": "AAPL"}, timeout=5)
    session.get(gw.url + "/trsrv/stocks", params={"symbols": "SPY"}, timeout=5)
    assert gw.requests == [
        ("GET", "/trsrv/stocks", {"symbols": "AAPL"}),
        ("GET", "/trsrv/stocks", {"symbols": "SPY"}),
    ]
    assert (
        gw.stats["total"] == 2 and gw.stats["paths"]["/trsrv/stocks"] == 2 and gw.stats["429"] == 0
    )


SCENARIO_ANSWERS = [
    ("missing-session", "GET", "/iserver/accounts", 401, b""),
    ("missing-session", "POST", "/tickle", 401, b""),
    ("missing-session", "GET", "/portfolio/accounts", 401, b""),
    ("expired-session", "POST", "/tickle", 401, b""),
    ("expired-session", "GET", "/iserver/accounts", 401, b""),
    ("keepalive-expired", "GET", "/iserver/accounts", 400, NO_BRIDGE),
    ("no-bridge", "POST", "/iserver/auth/status", 400, NO_BRIDGE),
    ("no-bridge", "GET", "/iserver/secdef/search", 400, NO_BRIDGE),
    ("competing-session", "GET", "/iserver/accounts", 200, {}),
    ("rate-limited", "POST", "/tickle", 429, b"Too Many Requests"),
    ("rate-limited", "GET", "/portfolio/accounts", 429, b"Too Many Requests"),
    ("login-page", "GET", "/iserver/accounts", 200, LOGIN_PAGE),
    ("access-denied", "GET", "/iserver/accounts", 404, b"Access Denied"),
    ("server-error", "POST", "/tickle", 503, {"error": "Service Unavailable", "statusCode": 503}),
]


@pytest.mark.parametrize("scenario, method, path, status, expected", SCENARIO_ANSWERS)
def test_scenario_answers_over_http(gw, session, scenario, method, path, status, expected):
    gw.scenario = scenario
    r = session.request(method, gw.url + path, json={} if method == "POST" else None, timeout=5)
    assert r.status_code == status
    if isinstance(expected, bytes):
        assert r.content == expected
    else:
        assert r.json() == expected


@pytest.mark.parametrize(
    "scenario, key, value",
    [
        ("expired-session", "connected", False),
        ("keepalive-expired", "connected", True),
        ("competing-session", "competing", True),
        ("connected", "authenticated", True),
    ],
)
def test_auth_status_per_scenario_over_http(gw, session, scenario, key, value):
    gw.scenario = scenario
    r = session.post(gw.url + "/iserver/auth/status", json={}, timeout=5)
    assert r.status_code == 200 and r.json()[key] is value


def test_content_types_over_http(gw, session):
    gw.scenario = "login-page"
    assert (
        session.get(gw.url + "/tickle", timeout=5).headers["Content-Type"].startswith("text/html")
    )
    gw.scenario = "access-denied"
    assert (
        session.get(gw.url + "/tickle", timeout=5).headers["Content-Type"].startswith("text/plain")
    )


def test_malformed_response_over_http(gw, session):
    gw.scenario = "malformed-response"
    r = session.get(gw.url + "/portfolio/accounts", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(r.content)
    assert r.content.startswith(b'[{"id":"DU1234567"')


def test_gateway_down_closes_the_connection_without_an_answer(gw, session):
    gw.scenario = "gateway-down"
    with pytest.raises(requests.ConnectionError):
        session.get(gw.url + "/iserver/accounts", timeout=5)
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    raw.sendall(b"GET /v1/api/tickle HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.recv(100) == b""  # closed, not a byte answered
    raw.close()


def test_slow_gateway_drips_so_only_an_overall_deadline_stops_the_client(gw, session):
    gw.scenario = "slow-gateway"
    started = time.monotonic()
    r = session.get(gw.url + "/iserver/accounts", timeout=(2, 1), stream=True)
    assert r.status_code == 200 and time.monotonic() - started < 1.0  # headers come at once
    expected = int(r.headers["Content-Length"])
    got = b""
    for _ in range(3):
        got += r.raw.read(1)  # each byte beats the 1 s read timeout...
    elapsed = time.monotonic() - started
    assert got == b'{"a'
    assert elapsed >= 1.2  # ...yet three bytes took three drips
    assert expected > 100  # the full body would take far longer than any read timeout
    r.close()


def test_latency_is_added_per_request(gw, session):
    gw.latency_ms = 200
    started = time.monotonic()
    assert session.post(gw.url + "/tickle", json={}, timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_requests_are_served_concurrently(gw):
    gw.scenario = "connected"
    gw.latency_ms = 300
    results = []

    def worker():
        with requests.Session() as s:
            results.append(s.get(gw.url + "/portfolio/DU1234567/ledger", timeout=10).status_code)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    elapsed = time.monotonic() - started
    gw.latency_ms = 0
    assert results == [200] * 20
    assert elapsed < 3.0  # 20 x 0.3 s one after another would take 6 s


def test_post_without_length_is_411_and_headers_are_never_logged(gw, capfd):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    conn.putrequest("POST", "/v1/api/tickle?token=SECRETQUERY")
    conn.putheader("Cookie", "api=SECRETCOOKIE")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411
    resp.read()
    conn.close()
    out, err = capfd.readouterr()
    assert "SECRET" not in out + err


def test_scenario_setter_validates(gw):
    with pytest.raises(UsageError):
        gw.scenario = "nope"
    assert gw.scenario == "connected"


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.2", "192.168.1.1", "example.com", "::"])
def test_only_loopback_hosts(host):
    with pytest.raises(UsageError):
        FakeGatewayServer(None, host=host)


def test_ipv6_loopback():
    try:
        server = FakeGatewayServer(None, host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.url.startswith("http://[::1]:")
        assert requests.post(server.url + "/tickle", json={}, timeout=5).status_code == 200
    finally:
        server.stop()


# --------------------------------------------------------------------------- pacing


@pytest.fixture
def paced():
    with FakeGatewayServer(None) as server:
        yield server


def test_fifteen_rapid_requests_get_at_least_five_429(paced):
    with requests.Session() as s:
        codes = [s.get(paced.url + "/iserver/accounts", timeout=5).status_code for _ in range(15)]
    assert codes.count(429) >= 5
    assert codes.count(200) >= 1
    assert paced.stats["429"] == codes.count(429)
    r = requests.get(paced.url + "/iserver/accounts", timeout=5)
    assert r.status_code in (200, 429)


def test_requests_spaced_110ms_are_never_limited(paced):
    with requests.Session() as s:
        codes = []
        for _ in range(15):
            codes.append(s.get(paced.url + "/iserver/accounts", timeout=5).status_code)
            time.sleep(0.11)
    assert codes == [200] * 15
    assert paced.stats["429"] == 0


def test_portfolio_accounts_once_per_five_seconds(paced):
    with requests.Session() as s:
        assert s.get(paced.url + "/portfolio/accounts", timeout=5).status_code == 200
        second = s.get(paced.url + "/portfolio/accounts", timeout=5)
        assert (second.status_code, second.content) == (429, b"Too Many Requests")
        assert s.get(paced.url + "/portfolio/subaccounts", timeout=5).status_code == 200
        assert s.post(paced.url + "/tickle", json={}, timeout=5).status_code == 200
        assert s.post(paced.url + "/tickle", json={}, timeout=5).status_code == 429
        assert s.get(paced.url + "/sso/validate", timeout=5).status_code == 200
        assert s.get(paced.url + "/sso/validate", timeout=5).status_code == 429
    assert paced.stats["429"] == 3


def test_pacing_can_be_turned_off():
    with FakeGatewayServer(None, pacing=False) as server, requests.Session() as s:
        codes = {
            s.get(server.url + "/portfolio/accounts", timeout=5).status_code for _ in range(12)
        }
    assert codes == {200}


# --------------------------------------------------------------------------- TLS


def test_https_with_a_generated_certificate(quiet_tls):
    with FakeGatewayServer(None, tls=True, pacing=False) as server:
        assert server.url == f"https://localhost:{server.port}/v1/api"
        assert len(server.fingerprint) == 64 and server.fingerprint == server.fingerprint.lower()
        with requests.Session() as s:
            assert (
                s.post(server.url + "/tickle", json={}, verify=False, timeout=5).status_code == 200
            )
            # the certificate works as its own CA bundle, for localhost and 127.0.0.1
            assert (
                s.get(
                    server.url + "/iserver/accounts", verify=server.cert_path, timeout=5
                ).status_code
                == 200
            )
            ip_url = server.url.replace("localhost", "127.0.0.1")
            assert (
                s.get(ip_url + "/iserver/accounts", verify=server.cert_path, timeout=5).status_code
                == 200
            )
            with pytest.raises(requests.exceptions.SSLError):
                s.get(server.url + "/iserver/accounts", verify=True, timeout=5)
        served = ssl.get_server_certificate(("127.0.0.1", server.port))
        assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest() == server.fingerprint
        cert_path = server.cert_path
    assert cert_path is not None and not os.path.exists(cert_path)  # generated files removed


def test_generated_certificate_names_localhost_and_loopback_ips(tmp_path):
    from cryptography import x509

    cert_path, key_path = generate_self_signed(str(tmp_path))
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def test_https_with_given_certificate_files(tmp_path, quiet_tls):
    cert_path, key_path = generate_self_signed(str(tmp_path))
    with FakeGatewayServer(None, tls=True, cert=cert_path, key=key_path) as server:
        assert server.fingerprint == cert_fingerprint(cert_path)
        assert (
            requests.post(server.url + "/tickle", json={}, verify=cert_path, timeout=5).status_code
            == 200
        )
    assert os.path.exists(cert_path)  # given files are left alone


def test_bad_tls_options(tmp_path):
    with pytest.raises(UsageError):
        FakeGatewayServer(None, tls=True, cert=str(tmp_path / "c.pem"))
    with pytest.raises(UsageError):
        FakeGatewayServer(None, tls=False, cert="c", key="k")
    (tmp_path / "c.pem").write_text("not a cert")
    server = FakeGatewayServer(
        None, tls=True, cert=str(tmp_path / "c.pem"), key=str(tmp_path / "c.pem")
    )
    with pytest.raises(UsageError):
        server.start()


def test_stop_is_prompt_even_with_a_dripping_client_and_open_connections():
    server = FakeGatewayServer(None, scenario="slow-gateway").start()
    s = requests.Session()
    r = s.get(server.url + "/iserver/accounts", stream=True, timeout=(2, 5))
    assert r.raw.read(1) == b"{"
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    assert not server.running
    s.close()
