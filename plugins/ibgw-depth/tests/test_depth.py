"""ibgw-depth: the order book over the gateway's websocket.

Over real sockets: the loopback fake gateway (plain HTTP -> ws://, and HTTPS with a
pinned certificate -> wss://), driven by ``ibgw --backend live`` in-process and as the
installed console script. Offline: ``ibgw --backend fake`` (the in-process fake starts
a loopback fake gateway for the websocket). The websocket credential (the tickle
``session``) is a known canary here and must never appear in any output, log or
audit record.
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ibgw_depth
import pytest
from ibgw_depth.reads import levels_of, merge_rows

from ibgw.errors import PolicyRefused
from ibgw.policy import check_ws_message
from ibgw.websocket import GatewaySocket, Websocket

CANARY = "Zq9CANARY"
SESSION = CANARY + "session"  # the fake's {{secret:session}} with the canary set
ACCOUNT = "DU1234567"  # the first account of the core fixtures
SPY, AAPL = 756733, 265598
SUBSCRIBE_SPY = f"sbd+{ACCOUNT}+{SPY}"
UNSUBSCRIBE = f"ubd+{ACCOUNT}"


@pytest.fixture
def canary(monkeypatch):
    monkeypatch.setenv("IBGW_FAKE_CANARY", CANARY)
    return CANARY


@pytest.fixture
def cli(ibgw_pm, ibgw_cli, canary):
    ibgw_pm.register(ibgw_depth)
    return ibgw_cli


def audit_text(ibgw_env) -> str:
    path = ibgw_env / "state" / "audit.jsonl"
    assert path.exists(), "the read must leave audit records"
    return path.read_text()


def assert_no_secret(*texts):
    for text in texts:
        assert SESSION not in text
        assert CANARY not in text  # no other secret slot either (username, MAC, userId...)


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def ladder_ok(rows, spot, levels=10):
    assert [r["level"] for r in rows] == list(range(1, levels + 1))
    assert rows[0]["bid"] == pytest.approx(spot - 0.01)
    assert rows[0]["ask"] == pytest.approx(spot + 0.01)
    for a, b in zip(rows, rows[1:], strict=False):
        assert b["bid"] < a["bid"] and b["ask"] > a["ask"]  # bids fall, asks rise
    for r in rows:
        assert isinstance(r["bid"], float) and isinstance(r["ask"], float)
        assert r["bid_size"] > 0 and r["ask_size"] > 0


# -- the websocket message policy -----------------------------------------------------------------

ALLOWED = [
    "sbd+DU1234567+756733",
    "sbd+DU1234567+756733+ARCA",
    "sbd+U7654321+265598+ISLAND",
    "tic",
]
REFUSED = [
    "sor+{}",  # live orders
    "uor+{}",
    "str+{}",  # trades
    'str+{"days": 1}',
    "spl+{}",  # P&L: a read, but no depth read needs it
    "upl+{}",
    'smh+265598+{"period":"1d","bar":"1min"}',  # historical data
    "umh+341115",
    "ech+hb",
    # market data: umd is the websocket twin of the refused REST unsubscribe; smd
    # could never be cleaned up without it
    "umd+265598+{}",
    "umd+265598@NASDAQ+{}",
    'smd+265598+{"fields":["31","84","86"]}',
    'smd+265598@NASDAQ+{"fields": ["31"]}',
    "ubd+DU1234567",  # account-wide: only as the clean-up of this connection's own sbd
    "sbd+DU1234567",  # no conid
    "sbd+DU1234567+756733+arca",  # exchange not upper case
    "sbd+DU1234567+756733+ARCA+x",
    "sbd+DU12/34567+756733",
    "sbd+DU1234567+756733\n",
    "sbd+DU1234567+756733\r\nsor+{}",
    " sbd+DU1234567+756733",
    "SBD+DU1234567+756733",
    "sbd+DU1234567+７５６７３３",  # unicode digits
    "ubd+DU1234567+756733",
    "ubd+",
    "tic\x00",
    "TIC",
    "tic ",
    "",
    "sbd+" + "1" * 3000,
    None,
    b"tic",
    42,
]


@pytest.mark.parametrize("text", ALLOWED)
def test_policy_allows_depth_subscription_and_keepalive(text):
    check_ws_message(text)


@pytest.mark.parametrize("text", REFUSED, ids=[repr(t)[:40] for t in REFUSED])
def test_policy_refuses_everything_else(text):
    with pytest.raises(PolicyRefused) as info:
        check_ws_message(text)
    assert info.value.reason == "ws-topic-refused"
    assert "\n" not in info.value.message and "DU1234567" not in info.value.message


def test_ubd_only_ends_this_connections_own_subscription():
    assert check_ws_message("sbd+DU1234567+756733+ARCA") == ("sbd", "DU1234567", "756733")
    assert check_ws_message("ubd+DU1234567", {("DU1234567", "756733")}) == ("ubd", "DU1234567", "")
    for subscribed in (None, set(), {("U7654321", "756733")}):
        with pytest.raises(PolicyRefused) as info:
            check_ws_message("ubd+DU1234567", subscribed)
        assert "other clients" in info.value.hint


class _Sock:
    """Stands in for the core's GatewaySocket under a Websocket handle."""

    def __init__(self):
        self.sent, self.closed, self.deadline = [], False, time.monotonic() + 5

    def send(self, text):
        self.sent.append(text)

    def recv(self, timeout=None):
        return None

    def close(self):
        self.closed = True


def _handle():
    refused = []

    def on_refused(topic, failure):
        refused.append((topic, failure.reason))
        return failure

    sock = _Sock()
    return Websocket(sock, on_refused), sock, refused


@pytest.mark.parametrize(
    "text", ["sor+{}", "spl+{}", "umd+265598+{}", f"ubd+{ACCOUNT}", "sbd+DU1+1\nsor+{}"]
)
def test_every_send_goes_through_the_policy(text):
    ws, sock, refused = _handle()
    with pytest.raises(PolicyRefused):
        ws.send(text)
    assert sock.sent == []  # nothing left
    assert refused == [(text[:3], "ws-topic-refused")]
    ws.send("tic")
    assert sock.sent == ["tic"]


def test_the_handle_remembers_its_subscriptions_and_cleans_up():
    ws, sock, refused = _handle()
    ws.send(SUBSCRIBE_SPY)
    with pytest.raises(PolicyRefused):
        ws.send("ubd+U7654321")  # another account's book: never ended by ibgw
    ws.send(UNSUBSCRIBE)
    with pytest.raises(PolicyRefused):
        ws.send(UNSUBSCRIBE)  # already ended: a second one could end another client's
    ws.send(f"sbd+{ACCOUNT}+{AAPL}")
    ws.close()  # what is still subscribed is unsubscribed, once
    assert sock.sent == [SUBSCRIBE_SPY, UNSUBSCRIBE, f"sbd+{ACCOUNT}+{AAPL}", UNSUBSCRIBE]
    assert sock.closed and [r[0] for r in refused] == ["ubd", "ubd"]
    assert not hasattr(ws, "__dict__") and not any(
        isinstance(getattr(ws, n), GatewaySocket) for n in Websocket.__slots__
    )


# -- parsing the ladder ---------------------------------------------------------------------------


def test_ladder_parsing_numbers_strings_and_merging():
    ladder = {}
    assert merge_rows(ladder, [
        {"row": 0, "focus": 0, "price": "123.46", "ask": "1,300"},
        {"row": 1, "focus": 0, "price": 123.45, "ask": 200},
        {"row": 2, "focus": 1, "price": "123.44"},  # the focus row: no size
        {"row": 3, "focus": 0, "price": 123.43, "bid": 400},
        {"row": 4, "focus": 0, "price": "123.40", "bid": "2,500"},
        {"row": 5, "focus": 0, "price": "n/a", "bid": 1},  # unparseable price: skipped
        "junk",
    ])  # fmt: skip
    assert levels_of(ladder, 10) == [
        {"level": 1, "bid_size": 400.0, "bid": 123.43, "ask": 123.45, "ask_size": 200.0},
        {"level": 2, "bid_size": 2500.0, "bid": 123.4, "ask": 123.46, "ask_size": 1300.0},
    ]
    assert levels_of(ladder, 1) == levels_of(ladder, 10)[:1]
    merge_rows(ladder, [{"row": 1, "price": 123.45, "ask": 0}])  # size 0: gone from the book
    assert levels_of(ladder, 10)[0]["ask"] == 123.46
    assert not merge_rows({}, None) and not merge_rows({}, {"row": 1})
    assert levels_of({}, 5) == []


# -- offline: the in-process fake backend ---------------------------------------------------------


def test_fake_backend_book_in_every_format(cli, ibgw_env):
    from ibgw_fake.market import UNDERLYINGS

    r = cli("depth", "SPY", "-o", "json")
    assert r.exit_code == 0, r.stderr
    ladder_ok(json.loads(r.stdout), UNDERLYINGS["SPY"]["spot"])

    # the fake's AAPL book carries strings ("189.62", "1,300")
    r = cli("depth", "book", "AAPL", "--levels", "3", "-o", "csv")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["level"] for row in rows] == ["1", "2", "3"]
    assert float(rows[0]["bid"]) == pytest.approx(UNDERLYINGS["AAPL"]["spot"] - 0.01)
    assert float(rows[0]["ask_size"]) >= 100

    r = cli("depth", "SPY", "--levels", "2")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["level", "bid_size", "bid", "ask", "ask_size"]
    assert lines[2].split()[0] == "1" and lines[3].split()[0] == "2" and len(lines) == 4
    assert_no_secret(r.stdout, r.stderr, audit_text(ibgw_env))


def test_fake_backend_conid_levels_beyond_the_book(cli):
    r = cli("depth", "--conid", str(AAPL), "--levels", "50", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)) == 20  # the fake's book has 20 levels per side
    assert "has 20 levels" in r.stderr


@pytest.mark.parametrize(
    "args,code",
    [
        (["depth"], 2),  # neither SYMBOL nor --conid
        (["depth", "SPY", "--levels", "0"], 2),
        (["depth", "SPY", "--levels", "51"], 2),
        (["depth", "SPY", "--exchange", "AR/CA"], 2),
        (["depth", "SPY/../x"], 2),
        (["depth", "--conid", "abc"], 2),
        (["depth", "NOSUCH"], 2),
        (["--scenario", "missing-session", "depth", "SPY"], 3),
        (["--scenario", "expired-session", "depth", "SPY"], 3),
        (["--scenario", "keepalive-expired", "depth", "SPY"], 3),
        (["--scenario", "competing-session", "depth", "SPY"], 3),
        (["--scenario", "gateway-down", "depth", "SPY"], 4),
        (["--scenario", "rate-limited", "depth", "SPY"], 4),
        (["--scenario", "malformed-response", "depth", "SPY"], 4),
        (["--scenario", "no-market-depth", "depth", "SPY"], 5),
        (["--timeout", "3", "depth", "--conid", "8314"], 5),  # no book ever arrives
    ],
)
def test_fake_backend_errors_are_one_line(cli, ibgw_env, args, code):
    r = cli(*args)
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    if code == 5:
        assert "not entitled: market depth for" in r.stderr
    assert_no_secret(r.stdout, r.stderr)


def test_watch_is_cli_only(ibgw_pm, canary):
    from ibgw.app import App
    from ibgw.errors import UsageError
    from ibgw.runner import run_read

    ibgw_pm.register(ibgw_depth)
    app = App(ibgw_pm, {"backend": "fake"})
    read = next(r for r in app.reads if r.key == "depth book")
    assert read.endpoints and read.endpoints[0].key == "POST /tickle"
    with pytest.raises(UsageError):
        run_read(app, read, {"symbol": "SPY", "watch": True}, actor="mcp")
    outcome = run_read(app, read, {"symbol": "SPY", "levels": 2}, actor="mcp")
    assert len(outcome.records) == 2 and outcome.variant == "WS /ws sbd"
    app.close()


def test_in_process_fake_websocket_is_started_once_and_stopped(ibgw_pm):
    from ibgw_fake.transport import FakeTransport

    t = FakeTransport(ibgw_pm)
    assert t.websocket_url() is None
    url = t.start_websocket()
    assert url.startswith("ws://127.0.0.1:") and url.endswith("/v1/api/ws")
    assert t.start_websocket() == url and t.websocket_url() == url
    server = t._ws_server
    t.close()
    assert t.websocket_url() is None and not server.running


# -- over a real socket: the loopback fake gateway ------------------------------------------------


def live(gw, *args, tls=None):
    flags = ["--backend", "live", "--gateway-url", gw.url]
    if tls == "fingerprint":
        flags += ["--verify-tls", "--tls-fingerprint", gw.fingerprint]
    elif tls == "ca":
        flags += ["--verify-tls", "--ca-bundle", gw.cert_path]
    return [*flags, *args]


def test_live_ws_book_subscribe_unsubscribe_and_no_secret(cli, ibgw_env, ibgw_fake_gateway):
    from ibgw_fake.market import UNDERLYINGS

    gw = ibgw_fake_gateway
    r = cli(*live(gw, "--debug", "depth", "SPY", "--exchange", "arca", "-o", "json"))
    assert r.exit_code == 0, r.stderr
    ladder_ok(json.loads(r.stdout), UNDERLYINGS["SPY"]["spot"])
    assert wait_for(lambda: len(gw.ws_messages) >= 2)
    assert gw.ws_messages == [f"{SUBSCRIBE_SPY}+ARCA", UNSUBSCRIBE]
    paths = [p for _, p, _ in gw.requests]
    assert paths.index("/tickle") < paths.index("/ws")  # the credential first
    assert "websocket: sent sbd" in r.stderr and "websocket: sent ubd" in r.stderr  # --debug logs
    assert_no_secret(r.stdout, r.stderr, audit_text(ibgw_env))


@pytest.mark.parametrize("tls", ["fingerprint", "ca", None])
def test_live_wss_with_pinned_certificate_or_ca(cli, ibgw_env, ibgw_fake_gateway_tls, tls):
    gw = ibgw_fake_gateway_tls
    r = cli(*live(gw, "depth", "AAPL", "--levels", "5", "-o", "json", tls=tls))
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 5 and rows[0]["bid"] == pytest.approx(189.62)
    assert wait_for(lambda: len(gw.ws_messages) >= 2)
    assert gw.ws_messages == [f"sbd+{ACCOUNT}+{AAPL}", UNSUBSCRIBE]
    assert_no_secret(r.stdout, r.stderr, audit_text(ibgw_env))


def test_live_wss_fingerprint_mismatch_sends_no_credential(cli, ibgw_fake_gateway_tls, monkeypatch):
    gw = ibgw_fake_gateway_tls
    wrong = "ab" * 32
    # the REST calls must pass (pinned right) so the websocket is what fails: pin the
    # websocket's TLS check only, through the configuration it reads
    import ibgw.websocket as wsclient

    real = wsclient.tls_context
    monkeypatch.setattr(wsclient, "tls_context", lambda config: (real(config)[0], wrong))
    r = cli(*live(gw, "depth", "SPY", tls="fingerprint"))
    assert r.exit_code == 4, r.stderr
    assert "TLS" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "/ws" not in [p for _, p, _ in gw.requests] and gw.ws_messages == []


def test_live_missing_session_exits_3_without_opening_the_websocket(cli, ibgw_fake_gateway):
    gw = ibgw_fake_gateway
    gw.scenario = "missing-session"
    r = cli(*live(gw, "depth", "SPY"))
    assert r.exit_code == 3, r.stderr
    assert "/ws" not in [p for _, p, _ in gw.requests] and gw.ws_messages == []


def test_live_gateway_down_exits_4(cli, ibgw_fake_gateway):
    gw = ibgw_fake_gateway
    gw.scenario = "gateway-down"
    r = cli(*live(gw, "--timeout", "5", "depth", "SPY"))
    assert r.exit_code == 4, r.stderr
    assert gw.ws_messages == []


def test_live_not_entitled_exits_5_and_still_unsubscribes(cli, ibgw_fake_gateway):
    gw = ibgw_fake_gateway
    gw.scenario = "no-market-depth"
    r = cli(*live(gw, "depth", "SPY"))
    assert r.exit_code == 5, r.stderr
    assert "not entitled: market depth for SPY" in r.stderr
    assert wait_for(lambda: len(gw.ws_messages) >= 2)
    assert gw.ws_messages == [SUBSCRIBE_SPY, UNSUBSCRIBE]


# -- the installed console script -----------------------------------------------------------------


def console_script() -> str:
    script = Path(sys.executable).with_name("ibgw")
    if not script.exists():
        pytest.fail("the ibgw console script is not installed beside this Python")
    return str(script)


def script_env(ibgw_env) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    env.update(
        IBGW_STATE_DIR=str(ibgw_env / "state"),
        IBGW_CONFIG=str(ibgw_env / "config.toml"),
        IBGW_FAKE_CANARY=CANARY,
    )
    return env


def test_console_script_over_wss(ibgw_pm, ibgw_env, ibgw_fake_gateway_tls, canary):
    gw = ibgw_fake_gateway_tls
    r = subprocess.run(
        [console_script(), *live(gw, "--debug", "depth", "SPY", tls="fingerprint")],
        capture_output=True, text=True, env=script_env(ibgw_env), timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["level", "bid_size", "bid", "ask", "ask_size"]
    assert lines[2].split()[2:4] == ["501.41", "501.43"] and len(lines) == 12
    assert "websocket: received sbd" in r.stderr  # --debug logs were written, and scanned below
    assert wait_for(lambda: len(gw.ws_messages) >= 2)
    assert gw.ws_messages == [SUBSCRIBE_SPY, UNSUBSCRIBE]
    assert_no_secret(r.stdout, r.stderr, audit_text(ibgw_env))


def test_console_script_watch_until_ctrl_c(ibgw_pm, ibgw_env, ibgw_fake_gateway, canary):
    gw = ibgw_fake_gateway
    p = subprocess.Popen(
        [console_script(), *live(gw, "depth", "SPY", "--levels", "2", "--watch", "-o", "json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env(ibgw_env),
        # Ctrl-C must reach it even when this test runs where SIGINT is ignored (xdist)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert wait_for(lambda: gw.ws_messages == [SUBSCRIBE_SPY], timeout=20)
        time.sleep(1.2)  # a few updates (the fake sends one every 0.25 s)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    stream, _, final = out.partition("\n\n")
    updates = [json.loads(line) for line in stream.splitlines()]
    assert len(updates) >= 3 and all(len(u["rows"]) == 2 for u in updates)
    assert json.loads(final) == updates[-1]["rows"]  # the last book, once more, as the result
    assert "watch stopped after" in err and "unsubscribed" in err
    assert wait_for(lambda: len(gw.ws_messages) >= 2)
    assert gw.ws_messages == [SUBSCRIBE_SPY, UNSUBSCRIBE]
    assert_no_secret(out, err, audit_text(ibgw_env))


# -- hostile answers to the upgrade ---------------------------------------------------------------


class _OneShot:
    """A loopback TCP server that answers the first request with ``answer`` bytes."""

    def __init__(self, answer: bytes):
        import socket
        import threading

        self.answer = answer
        self.received = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:  # closed before anyone connected
            return
        with conn:
            conn.settimeout(5)
            while b"\r\n\r\n" not in self.received:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            if self.answer:
                conn.sendall(self.answer)
            time.sleep(0.2)

    def close(self):
        self.sock.close()


class _Config:
    verify_tls, ca_bundle, tls_fingerprint = False, None, None


@pytest.mark.parametrize(
    "answer,reason",
    [
        (
            b"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.2:1/x\r\nContent-Length: 0\r\n\r\n",
            "redirect-refused",
        ),
        (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", "not-logged-in"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nAccess Denied", "ip-not-allowed"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", "not-served"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>", "login-page"),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", "gateway-error"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "malformed-response"),
        (b"garbage\r\n\r\n", "malformed-response"),
        (b"", "gateway-down"),  # closed without an answer
    ],
)
def test_upgrade_answers_become_states_without_secrets(answer, reason, capfd):
    from ibgw.errors import IbgwError

    server = _OneShot(answer)
    sock = GatewaySocket(
        f"ws://127.0.0.1:{server.port}/v1/api/ws", _Config(), SESSION, time.monotonic() + 3
    )
    try:
        with pytest.raises(IbgwError) as info:
            sock.open()
    finally:
        server.close()
    assert info.value.reason == reason
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert SESSION not in str(info.value) and SESSION not in info.value.hint
    assert b'api={"session":"' + SESSION.encode() + b'"}' in server.received  # the credential
    out, err = capfd.readouterr()
    assert SESSION not in out + err


def test_malformed_session_is_never_sent():
    from ibgw.errors import Unavailable

    server = _OneShot(b"")
    sock = GatewaySocket(
        f"ws://127.0.0.1:{server.port}/v1/api/ws", _Config(), 'x"\r\nX: y', time.monotonic() + 2
    )
    try:
        with pytest.raises(Unavailable) as info:
            sock.open()
    finally:
        server.close()
    assert info.value.reason == "malformed-response" and server.received == b""


def test_environment_proxies_change_nothing(cli, ibgw_fake_gateway, monkeypatch):
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    r = cli(*live(ibgw_fake_gateway, "depth", "SPY", "--levels", "1", "-o", "json"))
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)) == 1


# -- a plugin that tries other websocket topics through the core's websocket --------------------


class _WsHostile:
    """A read that subscribes its book, then tries the websocket topics issue 17 names."""

    @staticmethod
    def fetch(ctx):
        tried = []
        with ctx.websocket() as ws:
            ws.send(SUBSCRIBE_SPY)
            for text in ("umd+265598+{}", 'smd+265598+{"fields":["31"]}', "ubd+U7654321"):
                try:
                    ws.send(text)
                    tried.append({"topic": text[:3], "result": "sent"})
                except PolicyRefused:
                    tried.append({"topic": text[:3], "result": "refused"})
        return tried

    from ibgw import hookimpl as _hookimpl

    @_hookimpl
    def ibgw_register_reads(register):
        from ibgw import Read

        register(
            Read(
                category="wshostile",
                name="try",
                default=True,
                summary="x",
                endpoints=[],
                fetch=_WsHostile.fetch,
                session=True,
            )
        )


def test_other_websocket_topics_are_refused_audited_and_never_sent(
    ibgw_pm, ibgw_cli, ibgw_env, ibgw_fake_gateway, canary
):
    ibgw_pm.register(_WsHostile)
    gw = ibgw_fake_gateway
    r = ibgw_cli(*live(gw, "wshostile", "-o", "json"))
    assert r.exit_code == 6, (r.stdout, r.stderr)
    assert "refused" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert wait_for(lambda: len(gw.ws_messages) >= 2)
    time.sleep(0.2)
    # its own subscription and the core's clean-up of it; nothing else reached the gateway
    assert gw.ws_messages == [SUBSCRIBE_SPY, UNSUBSCRIBE]
    records = [json.loads(line) for line in audit_text(ibgw_env).splitlines()]
    denied = [(d["method"], d["path_template"]) for d in records if d["kind"] == "denied"]
    assert denied == [("WS", "/ws umd"), ("WS", "/ws smd"), ("WS", "/ws ubd")]
    assert [d["outcome"] for d in records if d["kind"] == "outcome"] == ["denied"]
