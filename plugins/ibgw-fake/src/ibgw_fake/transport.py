"""The in-process fake transport: ``ibgw --backend fake``.

It answers every :class:`ibgw.transport.Request` from the fixture router in the
chosen scenario, with no network at all. Like the live transport it "sees" the
cookies a real gateway would set and hands their values to the redactor.
"""

from __future__ import annotations

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

    def send(self, request: Request) -> Response:
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

    def websocket_url(self) -> str | None:
        return None
