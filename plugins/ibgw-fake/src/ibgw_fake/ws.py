"""The fake gateway's websocket, ``/v1/api/ws``: market depth and quotes, built on wsproto.

The real gateway serves its streaming topics only over this websocket (endpoint
reference §6, IBKR's websocket guide [S4]). :class:`ibgw_fake.server.FakeGatewayServer`
hands every ``GET /v1/api/ws`` with ``Upgrade: websocket`` to :func:`serve`, which
plays it:

* **Scenario first.** The request is answered as any HTTP request in the active
  scenario would be: ``missing-session``/``expired-session`` refuse the upgrade
  with 401, ``rate-limited`` with 429, ``access-denied`` with 404 ``Access
  Denied``, ``server-error`` with 503, ``login-page`` with the 200 login page,
  ``slow-gateway`` never answers (the client's deadline ends it);
  ``gateway-down`` is handled by the server before this module (closed without
  an answer). ``malformed-response`` accepts and then sends truncated JSON.
* **Credential.** The upgrade needs the cookie ``api={"session":"<session>"}``
  where ``<session>`` is the value the fake's ``/tickle`` hands out
  (``{{secret:session}}``): the tickle ``session`` is the websocket credential
  (reference §1.4). Anything else: 401. The cookie is never logged.
* **Hello.** After the upgrade: ``{"topic": "system", "success": <username>}``
  and ``{"topic": "sts", "args": {"authenticated": <bool>}}`` (false in the
  scenarios whose brokerage session is gone: ``keepalive-expired``, ``no-bridge``).
* **Topics** (the client's text messages, each appended to the server's
  ``ws_messages`` log, whatever it is):

  - ``sbd+ACCT+CONID[+EXCHANGE]``: the order book of SPY (756733) or AAPL
    (265598) at once, as ``{"topic": "sbd+ACCT+CONID", "data": [{"row", "focus",
    "price", "ask"|"bid"}, ...]}`` (a price ladder: :data:`DEPTH` ask rows from
    the highest price down, the focus row at the last price, then :data:`DEPTH`
    bid rows), and an update (new sizes) every :data:`UPDATE_INTERVAL_S` until
    ``ubd+ACCT``. Prices sit around the fake market's quotes
    (:mod:`ibgw_fake.market`: best bid = spot - 0.01, best ask = spot + 0.01, one
    cent apart); SPY sends numbers, AAPL strings (``"189.62"``, ``"1,300"``) as
    builds differ. A conid with no book gets nothing at all (no data ever
    arrives, as for a contract without depth); in the scenario
    ``no-market-depth`` (declared by the ibgw-depth plugin's fixtures, or by any
    fixture, with that name) every subscription answers ``{"topic": "sbd+...",
    "error": "..."}`` (no depth subscription).
  - ``ubd+ACCT``: stop that account's book updates.
  - ``smd+CONID+{"fields": [...]}``: one quote message from the fake market;
    ``umd+CONID+{}``: nothing.
  - ``tic``: ``{"topic": "tic", "alive": true, "lastAccessed": <ms>}``.
  - anything else (orders ``sor``, P&L ``spl``...): logged and ignored.

Pings are answered, a close is echoed; the connection ends when the server
stops. Nothing here logs or prints.
"""

from __future__ import annotations

import hmac
import json
import re
import select
import ssl
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .router import NOT_FOUND_BODY, FakeRequest, dump_json, secret_value
from .scenarios import SLOW, ScenarioFault, chain, respond

WS_PATH = "/ws"
NO_DEPTH = "no-market-depth"
DEPTH = 20  # rows per side of the book
TICK = 0.01
UPDATE_INTERVAL_S = 0.25
POLL_S = 0.05
MAX_MESSAGE = 64 * 1024
SLOW_CAP_S = 60.0
NO_BROKERAGE = ("keepalive-expired", "no-bridge")

_SBD = re.compile(r"sbd\+([A-Za-z0-9]{1,32})\+([0-9]{1,12})(?:\+([A-Za-z0-9.]{1,16}))?")
_UBD = re.compile(r"ubd\+([A-Za-z0-9]{1,32})")
_SMD = re.compile(r"smd\+([0-9]{1,12})(?:@[A-Za-z0-9.]{1,16})?\+(.*)", re.S)


# --------------------------------------------------------------------------- the book


def _symbol_of(conid: int) -> str | None:
    from .market import UNDERLYINGS

    return next((s for s, u in UNDERLYINGS.items() if u["conid"] == conid), None)


def book(conid, seq: int = 0) -> list[dict] | None:
    """The book ladder the fake sends for ``conid`` (update number ``seq``), or
    ``None`` when the fake has no book for it. Rows run from the highest price
    down: asks, the focus row at the last price, bids."""
    try:
        conid = int(conid)
    except (TypeError, ValueError):
        return None
    symbol = _symbol_of(conid)
    if symbol is None:
        return None
    from .market import UNDERLYINGS

    spot = UNDERLYINGS[symbol]["spot"]
    as_text = symbol == "AAPL"  # builds differ: strings with separators, or numbers

    def size(level: int, side: int) -> int:
        return 100 * (((level * 7 + side * 5 + seq * 3 + conid) % 19) + 1)

    def price(p: float):
        return f"{p:.2f}" if as_text else round(p, 2)

    def qty(n: int):
        return f"{n:,}" if as_text else n

    rows: list[dict] = []
    for level in range(DEPTH, 0, -1):  # highest ask first
        p = spot + level * TICK
        rows.append({"price": price(p), "ask": qty(size(level, 1))})
    rows.append({"price": price(spot), "focus": 1})
    for level in range(1, DEPTH + 1):
        p = spot - level * TICK
        rows.append({"price": price(p), "bid": qty(size(level, 0))})
    out = []
    for i, row in enumerate(rows):
        entry = {"row": i, "focus": row.pop("focus", 0)}
        entry.update(row)
        out.append(entry)
    return out


# --------------------------------------------------------------------------- handshake


def _raw_request(handler) -> bytes:
    """The upgrade request as bytes, rebuilt from what http.server parsed.

    http.server has read exactly the request line and headers: a websocket client
    sends nothing more before it has the 101 answer, so nothing is left buffered."""
    lines = [handler.requestline]
    lines += [f"{name}: {value}" for name, value in handler.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def session_cookie_ok(cookie_headers) -> bool:
    """True when a ``Cookie`` header carries ``api={"session": <the fake's session>}``."""
    expected = secret_value("session")
    for header in cookie_headers or ():
        for part in str(header).split(";"):
            name, sep, value = part.strip().partition("=")
            if not sep or name.strip() != "api":
                continue
            try:
                data = json.loads(value.strip())
            except ValueError:
                continue
            given = data.get("session") if isinstance(data, dict) else None
            if isinstance(given, str) and hmac.compare_digest(
                given.encode("utf-8", "replace"), expected.encode("utf-8")
            ):
                return True
    return False


def _gate(fake, scenario: str):
    """What the scenario answers to the upgrade: ``None`` (go on), ``"slow"``,
    ``"malformed"``, or a :class:`ibgw_fake.router.FakeAnswer` to refuse with."""
    request = FakeRequest(method="GET", path=WS_PATH, scenario=scenario)
    try:
        answer = respond(fake.router, request)
    except ScenarioFault as fault:
        return "slow" if fault.kind == SLOW else "closed"
    behaviour = chain(scenario, fake.router)[-1]
    if behaviour == "malformed-response":
        return "malformed"
    if answer.status == 404 and answer.body == NOT_FOUND_BODY:
        return None  # the websocket is served here, not by a fixture route
    if 200 <= answer.status < 300 and "html" not in answer.content_type:
        return None  # a fixture that answers /ws: the upgrade proceeds
    return answer


def _hold(handler, fake) -> None:
    """slow-gateway: never answer; return when the client leaves or the server stops."""
    sock = handler.connection
    started = time.monotonic()
    while not fake._stopping.is_set() and time.monotonic() - started < SLOW_CAP_S:
        try:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable and not sock.recv(4096):
                return
        except (OSError, ValueError):
            return


# --------------------------------------------------------------------------- one connection


class _Session:
    def __init__(self, handler, fake, scenario: str, conn: WSConnection, malformed: bool):
        self.sock = handler.connection
        self.fake = fake
        self.scenario = scenario
        self.conn = conn
        self.malformed = malformed
        self.names = set(chain(scenario, fake.router))
        self.subs: dict[str, list[tuple[int, str]]] = {}  # account -> [(conid, topic)]
        self.seq = 0
        self.next_update = time.monotonic() + UPDATE_INTERVAL_S
        self.partial: list[str] = []
        self.open = True

    # -- sending --------------------------------------------------------------------
    def _write(self, event) -> None:
        try:
            data = self.conn.send(event)
        except LocalProtocolError:
            self.open = False
            return
        if data:
            self.sock.sendall(data)

    def send_json(self, payload) -> None:
        body = dump_json(payload)
        if self.malformed:
            body = body[: max(1, len(body) // 2)]
        self._write(TextMessage(data=body.decode("utf-8", "replace")))

    def close(self, code: int = 1000) -> None:
        if self.open:
            self.open = False
            try:
                self._write(CloseConnection(code=code))
            except OSError:
                pass

    # -- topics ---------------------------------------------------------------------
    def hello(self) -> None:
        self.send_json({"topic": "system", "success": secret_value("username")})
        authenticated = not (self.names & set(NO_BROKERAGE))
        self.send_json({"topic": "sts", "args": {"authenticated": authenticated}})

    def on_text(self, text: str) -> None:
        with self.fake._lock:
            self.fake.ws_messages.append(text)
        if text == "tic":
            self.send_json({"topic": "tic", "alive": True, "lastAccessed": int(time.time() * 1000)})
            return
        m = _SBD.fullmatch(text)
        if m:
            acct, conid = m.group(1), int(m.group(2))
            topic = f"sbd+{acct}+{conid}"
            if NO_DEPTH in self.names:
                self.send_json(
                    {"topic": topic, "error": "no market depth subscription for this contract"}
                )
                return
            rows = book(conid, self.seq)
            if rows is None:
                return  # no book for this contract: nothing ever arrives
            self.subs.setdefault(acct, []).append((conid, topic))
            self.send_json({"topic": topic, "data": rows})
            return
        m = _UBD.fullmatch(text)
        if m:
            self.subs.pop(m.group(1), None)
            return
        m = _SMD.fullmatch(text)
        if m:
            from .market import fields_for

            fields = fields_for(int(m.group(1)))
            if fields is not None:
                conid = int(m.group(1))
                self.send_json({"topic": f"smd+{conid}", "conid": conid, **fields})
        # umd, orders, P&L, anything else: logged above and ignored

    def tick(self) -> None:
        now = time.monotonic()
        if now < self.next_update:
            return
        self.next_update = now + UPDATE_INTERVAL_S
        if not self.subs:
            return
        self.seq += 1
        for subs in list(self.subs.values()):
            for conid, topic in subs:
                self.send_json({"topic": topic, "data": book(conid, self.seq)})

    # -- receiving ------------------------------------------------------------------
    def on_events(self) -> None:
        for event in self.conn.events():
            if isinstance(event, TextMessage):
                self.partial.append(event.data)
                if sum(len(p) for p in self.partial) > MAX_MESSAGE:
                    self.close(1009)
                    return
                if event.message_finished:
                    text, self.partial = "".join(self.partial), []
                    self.on_text(text)
            elif isinstance(event, BytesMessage):
                if event.message_finished:
                    with self.fake._lock:
                        self.fake.ws_messages.append("<binary>")
            elif isinstance(event, Ping):
                self._write(event.response())
            elif isinstance(event, CloseConnection):
                if self.open:
                    self.open = False
                    try:
                        self._write(event.response())
                    except OSError:
                        pass
                return

    def readable(self) -> bool:
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], POLL_S)
        return bool(readable)

    def run(self) -> None:
        self.hello()
        while self.open:
            if self.fake._stopping.is_set():
                self.close(1001)
                return
            if self.readable():
                data = self.sock.recv(65536)
                if not data:
                    return
                try:
                    self.conn.receive_data(data)
                except RemoteProtocolError:
                    self.close(1002)
                    return
                self.on_events()
            if self.open:
                self.tick()


def serve(handler, fake, scenario: str) -> None:
    """Answer one websocket upgrade on ``handler``'s connection, then serve the
    websocket until the client closes it or the server stops."""
    handler.close_connection = True
    gate = _gate(fake, scenario)
    if gate == "closed":
        return
    if gate == "slow":
        _hold(handler, fake)
        return
    if gate is not None and gate != "malformed":
        handler._send(gate.status, gate.content_type, gate.body)
        return
    conn = WSConnection(ConnectionType.SERVER)
    request = None
    try:
        conn.receive_data(_raw_request(handler))
        request = next((e for e in conn.events() if isinstance(e, Request)), None)
    except RemoteProtocolError:
        request = None
    if request is None:
        handler._send(400, "text/plain", b"Bad Request")
        return
    if not session_cookie_ok(handler.headers.get_all("Cookie")):
        handler._send(401, "text/plain", b"")
        return
    session = _Session(handler, fake, scenario, conn, malformed=gate == "malformed")
    try:
        session._write(AcceptConnection())
        session.run()
    except (OSError, ValueError):
        return  # the client went away or the server stopped mid-write
