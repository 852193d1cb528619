"""Every scenario over the in-process fake transport (``ibgw --backend fake``)."""

import json
import time
from types import SimpleNamespace

import ibgw_fake
import pytest
from ibgw_fake.router import NOT_FOUND_BODY, FakeRequest, FakeRouter
from ibgw_fake.scenarios import LOGIN_PAGE, SCENARIOS, scenario_names
from ibgw_fake.transport import FakeTransport

from ibgw.errors import UsageError
from ibgw.gateway import _send_checked
from ibgw.transport import REFUSED, TIMEOUT, Request, Response, TransportError

NO_BRIDGE = {"error": "Bad Request: no bridge", "statusCode": 400}


def call(transport, method, path, query=(), body=None, timeout=5.0):
    if method == "POST" and body is None:
        body = b"{}"
    return _send_checked(
        transport, Request(method, path, tuple(query), body, deadline=time.monotonic() + timeout)
    )


def as_json(response):
    assert response.content_type == "application/json"
    return json.loads(response.body)


def test_connected_answers_auth_status_and_tickle(fake_pm):
    t = FakeTransport(fake_pm)
    assert (t.name, t.paced, t.websocket_url()) == ("fake", False, None)
    for method in ("GET", "POST"):
        status = call(t, method, "/iserver/auth/status")
        assert isinstance(status, Response) and status.status == 200
        data = as_json(status)
        assert {k: data[k] for k in ("authenticated", "established", "competing", "connected")} == {
            "authenticated": True,
            "established": True,
            "competing": False,
            "connected": True,
        }
        assert data["serverInfo"] == {
            "serverName": "FakeGW01",
            "serverVersion": "Build 10.44.1d, Mar 3, 2026 1:55:32 PM",
        }
        assert data["fail"] == "" and data["message"] == ""
        tickle = as_json(call(t, method, "/tickle"))
        assert len(tickle["session"]) == 32
        assert tickle["iserver"]["authStatus"]["authenticated"] is True
        assert tickle["hmds"] == {"error": "no bridge"}


def test_keepalive_success_is_healthy(fake_pm):
    t = FakeTransport(fake_pm, "keepalive-success")
    assert as_json(call(t, "POST", "/tickle"))["iserver"]["authStatus"]["authenticated"] is True
    assert as_json(call(t, "POST", "/iserver/auth/status"))["authenticated"] is True


@pytest.mark.parametrize(
    "path", ["/iserver/auth/status", "/tickle", "/iserver/accounts", "/portfolio/accounts", "/nope"]
)
def test_missing_session_is_401_with_empty_body_everywhere(fake_pm, path):
    r = call(
        FakeTransport(fake_pm, "missing-session"), "POST" if path == "/tickle" else "GET", path
    )
    assert (r.status, r.body) == (401, b"")


def test_expired_session(fake_pm):
    t = FakeTransport(fake_pm, "expired-session")
    status = as_json(call(t, "POST", "/iserver/auth/status"))
    assert status["authenticated"] is False and status["connected"] is False
    assert status["competing"] is False and "MAC" in status
    for method, path in [
        ("POST", "/tickle"),
        ("GET", "/iserver/accounts"),
        ("GET", "/iserver/secdef/search"),
    ]:
        assert call(t, method, path, [("symbol", "SPY")]).status == 401


def test_keepalive_expired(fake_pm):
    t = FakeTransport(fake_pm, "keepalive-expired")
    tickle = as_json(call(t, "POST", "/tickle"))
    assert tickle["iserver"]["authStatus"]["authenticated"] is False
    assert tickle["iserver"]["authStatus"]["connected"] is True
    status = as_json(call(t, "POST", "/iserver/auth/status"))
    assert status["authenticated"] is False and status["connected"] is True
    accounts = call(t, "GET", "/iserver/accounts")
    assert accounts.status == 400 and as_json(accounts) == NO_BRIDGE
    assert call(t, "GET", "/portfolio/accounts").status == 200


def test_competing_session(fake_pm):
    t = FakeTransport(fake_pm, "competing-session")
    status = as_json(call(t, "GET", "/iserver/auth/status"))
    assert (status["authenticated"], status["competing"], status["connected"]) == (True, True, True)
    accounts = call(t, "GET", "/iserver/accounts")
    assert accounts.status == 200 and as_json(accounts) == {}
    assert as_json(call(t, "POST", "/tickle"))["iserver"]["authStatus"]["competing"] is True


def test_no_bridge(fake_pm):
    t = FakeTransport(fake_pm, "no-bridge")
    for method, path in [
        ("POST", "/iserver/auth/status"),
        ("GET", "/iserver/auth/status"),
        ("GET", "/iserver/accounts"),
    ]:
        r = call(t, method, path)
        assert r.status == 400 and as_json(r) == NO_BRIDGE
    assert call(t, "GET", "/portfolio/accounts").status == 200
    assert len(as_json(call(t, "GET", "/portfolio/DU1234567/positions/0"))) == 100


def test_gateway_down_refuses(fake_pm):
    with pytest.raises(TransportError) as info:
        call(FakeTransport(fake_pm, "gateway-down"), "POST", "/tickle")
    assert info.value.kind == REFUSED


@pytest.mark.parametrize("path", ["/tickle", "/portfolio/accounts", "/nope"])
def test_rate_limited(fake_pm, path):
    r = call(FakeTransport(fake_pm, "rate-limited"), "GET", path)
    assert (r.status, r.content_type, r.body) == (429, "text/plain", b"Too Many Requests")


def test_malformed_response_is_truncated_json_for_every_fixture(fake_pm):
    router = FakeRouter(fake_pm)
    t = FakeTransport(fake_pm, "malformed-response")
    seen = 0
    for route in router.routes:
        if "{" in route.path:
            continue
        method = sorted(route.methods)[0]
        query = tuple(
            (k, str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (route.query or {}).items()
        )
        body = json.dumps(route.body or {}).encode() if method == "POST" else None
        r = _send_checked(t, Request(method, route.path, query, body))
        assert (r.status, r.content_type) == (200, "application/json")
        with pytest.raises(ValueError):
            json.loads(r.body)
        seen += 1
    assert seen >= 20
    r = call(t, "GET", "/portfolio/DU1234567/positions/0")
    healthy = call(FakeTransport(fake_pm), "GET", "/portfolio/DU1234567/positions/0").body
    assert healthy.startswith(r.body) and 0 < len(r.body) < len(healthy)


def test_slow_gateway_times_out_at_the_deadline(fake_pm):
    t = FakeTransport(fake_pm, "slow-gateway")
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        call(t, "GET", "/iserver/accounts", timeout=0.3)
    elapsed = time.monotonic() - started
    assert info.value.kind == TIMEOUT
    assert 0.25 <= elapsed < 2.0


def test_login_page(fake_pm):
    r = call(FakeTransport(fake_pm, "login-page"), "GET", "/iserver/accounts")
    assert (r.status, r.content_type, r.body) == (200, "text/html", LOGIN_PAGE)
    assert b"<title>Client Portal Login</title>" in r.body


def test_access_denied(fake_pm):
    r = call(FakeTransport(fake_pm, "access-denied"), "POST", "/tickle")
    assert (r.status, r.content_type, r.body) == (404, "text/plain", b"Access Denied")


def test_server_error(fake_pm):
    r = call(FakeTransport(fake_pm, "server-error"), "POST", "/tickle")
    assert r.status == 503 and as_json(r) == {"error": "Service Unavailable", "statusCode": 503}


def test_documented_only_serves_documented_core_fixtures(fake_pm):
    t = FakeTransport(fake_pm, "documented-only")
    assert call(t, "GET", "/portfolio/accounts").status == 200
    assert call(t, "GET", "/iserver/news").body == NOT_FOUND_BODY


def test_every_builtin_scenario_is_listed_and_runs(fake_pm):
    assert scenario_names() == list(SCENARIOS)
    required = {
        "connected", "missing-session", "expired-session", "keepalive-success", "keepalive-expired",
        "competing-session", "no-bridge", "gateway-down", "rate-limited", "malformed-response", "slow-gateway",
    }  # fmt: skip
    assert required <= set(SCENARIOS)
    for name in SCENARIOS:
        t = FakeTransport(fake_pm, name)
        try:
            r = call(t, "POST", "/tickle", timeout=0.05)
        except TransportError as exc:
            assert name in ("gateway-down", "slow-gateway") and exc.kind in (REFUSED, TIMEOUT)
        else:
            assert isinstance(r, Response) and 200 <= r.status < 600


def test_unknown_scenario_is_a_usage_error(fake_pm):
    with pytest.raises(UsageError) as info:
        FakeTransport(fake_pm, "nonsense")
    message = str(info.value)
    assert message.startswith("scenario: unknown scenario nonsense; choose one of connected, ")
    assert "slow-gateway" in message
    with pytest.raises(UsageError):
        FakeTransport(fake_pm, "connected", latency_ms=-1)


def test_latency_is_added_and_bounded_by_the_deadline(fake_pm):
    t = FakeTransport(fake_pm, latency_ms=150)
    started = time.monotonic()
    assert call(t, "POST", "/tickle").status == 200
    assert time.monotonic() - started >= 0.15
    slow = FakeTransport(fake_pm, latency_ms=5000)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        call(slow, "POST", "/tickle", timeout=0.2)
    assert info.value.kind == TIMEOUT and time.monotonic() - started < 2
    with pytest.raises(TransportError):
        call(t, "POST", "/tickle", timeout=-1)


def test_cookie_values_reach_the_redactor(fake_pm, monkeypatch):
    import ibgw.redact

    seen = []
    monkeypatch.setattr(ibgw.redact, "add_secret", seen.append)
    call(FakeTransport(fake_pm), "POST", "/tickle")
    assert len(seen) == 1 and len(seen[0]) == 32


def test_query_and_body_reach_the_router(fake_pm):
    t = FakeTransport(fake_pm)
    spy = as_json(call(t, "GET", "/iserver/secdef/search", [("symbol", "SPY")]))
    assert spy[0]["conid"] == "756733"
    aapl = as_json(
        _send_checked(t, Request("POST", "/iserver/secdef/search", (), b'{"symbol": "AAPL"}'))
    )
    assert aapl[0]["conid"] == "265598"
    # an unknown symbol: the real gateway answers an empty list, not 404
    unknown = call(t, "GET", "/iserver/secdef/search", [("symbol", "ZZZZ")])
    assert (unknown.status, as_json(unknown)) == (200, [])


def test_backend_hook_returns_the_fake_transport_only_for_the_fake_backend(fake_pm):
    fake = ibgw_fake.ibgw_backend(
        config=SimpleNamespace(backend="fake", scenario="no-bridge", latency_ms=0), pm=fake_pm
    )
    assert isinstance(fake, FakeTransport) and fake.scenario == "no-bridge"
    assert ibgw_fake.ibgw_backend(config=SimpleNamespace(backend="live"), pm=fake_pm) is None
    via_hook = fake_pm.hook.ibgw_backend(
        config=SimpleNamespace(backend="fake", scenario="connected", latency_ms=0), pm=fake_pm
    )
    assert isinstance(via_hook, FakeTransport)


def test_canary_reaches_every_secret_slot_of_the_session_answers(fake_pm, monkeypatch):
    monkeypatch.setenv("IBGW_FAKE_CANARY", "CNRY")
    t = FakeTransport(fake_pm)
    tickle = as_json(call(t, "POST", "/tickle"))
    assert tickle["session"] == "CNRYsession" and tickle["userId"] == "CNRYuserid"
    assert tickle["iserver"]["authStatus"]["MAC"] == "CNRYmac"
    sso = as_json(call(t, "GET", "/sso/validate"))
    assert {sso[k] for k in ("USER_NAME", "CREDENTIAL", "IP", "USER_ID")} == {
        "CNRYusername",
        "CNRYip",
        "CNRYuserid",
    }
    accounts = as_json(call(t, "GET", "/iserver/accounts"))
    assert accounts["sessionId"] == "CNRYsessionid"


def test_fake_request_from_router_handles_odd_bodies():
    assert FakeRequest.parse_body(b"") is None
    assert FakeRequest.parse_body(b"{bad") is None
    assert FakeRequest.parse_body(b"\xff\xfe") is None
    assert FakeRequest.parse_body(b'{"a": 1}') == {"a": 1}
