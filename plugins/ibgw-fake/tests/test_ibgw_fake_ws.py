"""The fake gateway's websocket (/v1/api/ws, ibgw_fake.ws): credential, scenarios,
market-depth books and the received-messages log, over real sockets."""

import http.client
import json
import ssl
import time

import pytest
from ibgw_fake import ws
from ibgw_fake.market import UNDERLYINGS
from ibgw_fake.router import secret_value
from ibgw_fake.server import FakeGatewayServer
from ibgw_fake.transport import FakeTransport
from ibgw_fake_testutil import FixturePlugin, make_pm

client = pytest.importorskip("websockets.sync.client", reason="the websockets client (ibgw-depth)")
from websockets.exceptions import InvalidStatus  # noqa: E402

ACCT = "DU1234567"


@pytest.fixture
def pm(monkeypatch):
    monkeypatch.delenv("IBGW_FAKE_CANARY", raising=False)
    # the scenario ibgw-depth declares for the websocket (ws.NO_DEPTH)
    no_depth = {"scenarios": {ws.NO_DEPTH: {"description": "no depth", "base": "connected"}}}
    return make_pm(FixturePlugin(no_depth))


@pytest.fixture
def gw(pm):
    with FakeGatewayServer(pm, pacing=False) as server:
        yield server


@pytest.fixture
def gw_tls(pm):
    with FakeGatewayServer(pm, pacing=False, tls=True) as server:
        yield server


def ws_url(server) -> str:
    return "ws" + server.url[len("http") :] + "/ws"


def cookie(session=None) -> list:
    value = secret_value("session") if session is None else session
    return [("Cookie", "api=" + json.dumps({"session": value}))]


def connect(server, headers=None, **kw):
    ctx = None
    if server.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return client.connect(
        ws_url(server), additional_headers=cookie() if headers is None else headers,
        proxy=None, ssl=ctx, open_timeout=kw.pop("open_timeout", 5), **kw,
    )  # fmt: skip


def recv_json(conn, timeout=2.0):
    return json.loads(conn.recv(timeout=timeout))


def hello(conn) -> dict:
    first, second = recv_json(conn), recv_json(conn)
    assert first["topic"] == "system" and first["success"] == secret_value("username")
    assert second["topic"] == "sts"
    return second


def status_of(server, headers=None, **kw) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as info:
        connect(server, headers, **kw).close()
    return info.value.response.status_code, bytes(info.value.response.body or b"")


# -- the book ----------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["SPY", "AAPL"])
def test_book_sits_around_the_fake_market(symbol):
    und = UNDERLYINGS[symbol]
    rows = ws.book(und["conid"])
    assert [r["row"] for r in rows] == list(range(2 * ws.DEPTH + 1))
    focus = [r for r in rows if r["focus"] == 1]
    assert len(focus) == 1 and float(focus[0]["price"]) == pytest.approx(und["spot"])
    asks = [r for r in rows if "ask" in r]
    bids = [r for r in rows if "bid" in r]
    assert len(asks) == len(bids) == ws.DEPTH
    assert float(asks[-1]["price"]) == pytest.approx(und["spot"] + 0.01)  # best ask
    assert float(bids[0]["price"]) == pytest.approx(und["spot"] - 0.01)  # best bid
    prices = [float(r["price"]) for r in rows]
    assert prices == sorted(prices, reverse=True)
    if symbol == "AAPL":  # strings, as some builds send them
        assert all(isinstance(r["price"], str) for r in rows)
        assert all(isinstance(r["bid"], str) for r in bids)
        assert any("," in r["bid"] for r in bids)  # thousands separators
    else:
        assert all(isinstance(r["price"], float) and isinstance(r["ask"], int) for r in asks)
    assert ws.book(und["conid"], 1) != rows  # updates change the sizes
    assert [r["price"] for r in ws.book(und["conid"], 1)] == [r["price"] for r in rows]


def test_no_book_for_other_contracts():
    assert ws.book(8314) is None and ws.book("x") is None


# -- the websocket -----------------------------------------------------------------------------


def test_book_updates_unsubscribe_and_message_log(gw):
    with connect(gw) as conn:
        assert hello(conn)["args"] == {"authenticated": True}
        conn.send(f"sbd+{ACCT}+756733+ARCA")
        first = recv_json(conn)
        assert first["topic"] == f"sbd+{ACCT}+756733" and first["data"] == ws.book(756733)
        update = recv_json(conn)
        assert update["topic"] == first["topic"] and update["data"] != first["data"]
        conn.send(f"ubd+{ACCT}")
        time.sleep(0.1)
        while True:  # drain what was in flight; then nothing more comes
            try:
                conn.recv(timeout=3 * ws.UPDATE_INTERVAL_S)
            except TimeoutError:
                break
        conn.send("tic")
        assert recv_json(conn)["topic"] == "tic"
        conn.send('smd+265598+{"fields":["31","84","86"]}')
        quote = recv_json(conn)
        assert quote["topic"] == "smd+265598" and quote["31"] == "189.63"
        conn.send("sor+{}")  # an order topic: logged, never answered
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.3)
    assert gw.ws_messages == [
        f"sbd+{ACCT}+756733+ARCA", f"ubd+{ACCT}", "tic", 'smd+265598+{"fields":["31","84","86"]}', "sor+{}",
    ]  # fmt: skip
    assert ("GET", "/ws", {}) in gw.requests
    gw.reset()
    assert gw.ws_messages == []


def test_unknown_contract_gets_nothing(gw):
    with connect(gw) as conn:
        hello(conn)
        conn.send(f"sbd+{ACCT}+8314")
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.6)


def test_wss(gw_tls):
    with connect(gw_tls) as conn:
        hello(conn)
        conn.send(f"sbd+{ACCT}+265598")
        assert recv_json(conn)["data"] == ws.book(265598)


@pytest.mark.parametrize(
    "headers",
    [
        [],
        cookie("not-the-session"),
        [("Cookie", "api=" + secret_value("session"))],  # not the JSON form
        [("Cookie", "api={broken")],
        [("Cookie", "x-sess-uuid=" + secret_value("session"))],
    ],
)
def test_upgrade_needs_the_tickle_session_as_api_cookie(gw, headers):
    assert status_of(gw, headers)[0] == 401
    assert gw.ws_messages == []


@pytest.mark.parametrize(
    "scenario,status,body",
    [
        ("missing-session", 401, b""),
        ("expired-session", 401, b""),
        ("rate-limited", 429, b"Too Many Requests"),
        ("access-denied", 404, b"Access Denied"),
        ("server-error", 503, b'{"error":"Service Unavailable","statusCode":503}'),
        ("login-page", 200, b"<!DOCTYPE html>"),
    ],
)
def test_scenarios_refuse_the_upgrade(gw, scenario, status, body):
    gw.scenario = scenario
    got_status, got_body = status_of(gw)
    assert got_status == status and got_body.startswith(body)


def test_gateway_down_closes_and_slow_gateway_never_answers(gw):
    gw.scenario = "gateway-down"
    with pytest.raises(Exception) as info:
        connect(gw).close()
    assert not isinstance(info.value, InvalidStatus)
    gw.scenario = "slow-gateway"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        connect(gw, open_timeout=0.5).close()
    assert time.monotonic() - started < 3


def test_session_scenarios_after_the_upgrade(gw):
    gw.scenario = "keepalive-expired"
    with connect(gw) as conn:
        assert hello(conn)["args"] == {"authenticated": False}
    gw.scenario = "no-market-depth"
    with connect(gw) as conn:
        hello(conn)
        conn.send(f"sbd+{ACCT}+756733")
        answer = recv_json(conn)
        assert (
            answer["topic"] == f"sbd+{ACCT}+756733" and "error" in answer and "data" not in answer
        )
    gw.scenario = "malformed-response"
    with connect(gw) as conn:
        with pytest.raises(ValueError):
            json.loads(conn.recv(timeout=2))


def test_plain_get_of_ws_and_bad_upgrades(gw):
    host, port = "127.0.0.1", gw.port
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/v1/api/ws")  # no Upgrade: an ordinary request, not served
    assert c.getresponse().status == 404
    c.close()
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/v1/api/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert c.getresponse().status == 400  # no Sec-WebSocket-Key/Version
    c.close()


def test_stop_ends_open_websockets(pm):
    server = FakeGatewayServer(pm, pacing=False).start()
    with connect(server) as conn:
        hello(conn)
        started = time.monotonic()
        server.stop()
        with pytest.raises(Exception):  # noqa: B017 - closed, however the client words it
            while True:
                conn.recv(timeout=5)
        assert time.monotonic() - started < 5


def test_in_process_transport_starts_a_loopback_websocket(pm):
    t = FakeTransport(pm, "keepalive-expired")
    assert t.websocket_url() is None  # no socket until asked
    url = t.start_websocket()
    assert url.startswith("ws://127.0.0.1:") and t.start_websocket() == url
    with client.connect(url, additional_headers=cookie(), proxy=None) as conn:
        assert hello(conn)["args"] == {"authenticated": False}  # the transport's scenario
    t.close()
    assert t.websocket_url() is None
    t.close()  # twice is fine
