"""The in-process fake transport: ``ibgw --backend fake``.

It answers every :class:`ibgw.transport.Request` from the fixture router in the
chosen scenario, with no network at all. Like the live transport it "sees" the
cookies a real gateway would set and hands their values to the redactor.

It honours the same send capability as the live transport (``ibgw.transport``):
``send`` answers only a request the gateway facade checked and ticketed, and runs
the read-only policy on it again, so containment tests on the fake backend prove
the same property as on the live one.
"""

from __future__ import annotations

import threading
import time

from ibgw.errors import UsageError
from ibgw.transport import REFUSED, TIMEOUT, Request, Response, Transport, TransportError

from .router import FakeRequest, FakeRouter
from .scenarios import REFUSED as FAULT_REFUSED
from .scenarios import ScenarioFault, check_scenario

SLOW_CAP_S = 60.0


def _add_secret(value: str) -> None:
    try:
        from ibgw.redact import add_secret
    except ImportError:  # pragma: no cover - only while ibgw.redact is being written
        return
    add_secret(value)


def to_fake_request(request: Request, scenario: str) -> FakeRequest:
    """The router's view of a transport request."""
    query: dict[str, str] = {}
    for name, value in request.query:
        query[name] = value
    return FakeRequest(
        method=request.method,
        path=request.path,
        query=query,
        body=FakeRequest.parse_body(request.body),
        raw_body=request.body,
        scenario=scenario,
        deadline=request.deadline,
    )


class FakeTransport(Transport):
    """Answers from the fake backend's fixtures, in one scenario.

    ``pm`` is the plugin manager whose plugins contribute fixtures; ``scenario``
    one of :func:`ibgw_fake.scenarios.scenario_names`; ``latency_ms`` a delay
    added to every call (bounded by the call's deadline).
    """

    name = "fake"
    paced = False

    def __init__(self, pm, scenario: str = "connected", latency_ms: int = 0):
        super().__init__()
        self.router = FakeRouter(pm)
        self.scenario = check_scenario(scenario, self.router)
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, int) or latency_ms < 0:
            raise UsageError("latency_ms: must be a whole number of milliseconds, 0 or more")
        self.latency_ms = latency_ms

    def _sleep_until(self, request: Request, seconds: float) -> None:
        """Sleep ``seconds``, or raise TIMEOUT when the deadline comes first."""
        remaining = request.remaining()
        if seconds >= remaining:
            time.sleep(max(0.0, remaining))
            raise TransportError(TIMEOUT, "the fake gateway did not answer before the deadline")
        time.sleep(seconds)

    def _deliver(self, request: Request) -> Response:
        if request.remaining() <= 0:
            raise TransportError(TIMEOUT, "the deadline passed before the call was sent")
        if self.latency_ms:
            self._sleep_until(request, self.latency_ms / 1000.0)
        try:
            answer = self.router.handle(to_fake_request(request, self.scenario))
        except ScenarioFault as fault:
            if fault.kind == FAULT_REFUSED:
                raise TransportError(REFUSED, "connection refused (fake gateway is down)") from None
            self._sleep_until(request, SLOW_CAP_S)
            raise TransportError(TIMEOUT, "the fake gateway did not answer in time") from None
        for value in answer.cookies.values():
            _add_secret(value)
        return Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    # The in-process fake has no socket; a read that needs the websocket (market
    # depth) calls start_websocket(), which serves this transport's fixtures and
    # scenario on a loopback port (127.0.0.1 only) until close().
    _ws_server = None
    _ws_url: str | None = None
    _ws_lock = threading.Lock()

    def websocket_url(self) -> str | None:
        """``None`` until :meth:`start_websocket` ran."""
        return self._ws_url

    def start_websocket(self) -> str:
        """Start (once) a loopback fake gateway in this transport's scenario and
        return its ``ws://127.0.0.1:PORT/v1/api/ws`` URL; :meth:`close` stops it."""
        with self._ws_lock:
            if self._ws_server is None:
                from .server import FakeGatewayServer

                server = FakeGatewayServer(
                    self.router.pm, scenario=self.scenario, latency_ms=self.latency_ms, pacing=False
                ).start()
                self._ws_server = server
                self._ws_url = "ws" + server.url[len("http") :] + "/ws"
            return self._ws_url

    def close(self) -> None:
        with self._ws_lock:
            server, self._ws_server, self._ws_url = self._ws_server, None, None
        if server is not None:
            server.stop()
