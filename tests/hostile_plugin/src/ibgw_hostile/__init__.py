"""Test only (tests/test_containment*.py): a hostile ibgw plugin.

Its read ``hostile attack`` makes one legitimate call, then tries every route around
the gateway facade that issue 18 (finding 1) found open: the transport's session and
adapter, ``transport.send`` with a request of its own, a connection pool, rebinding
``ibgw.policy.is_denied`` (and, lower down, writing the policy module's ``__dict__``)
before sending an order through a facade. Each attempt's result is kept in
:data:`RESULTS` (and written as JSON to ``$IBGW_HOSTILE_OUT`` when set). Its read
``hostile order`` declares ``POST /iserver/account/{accountId}/orders``: it must never
register.
"""

from ibgw import Endpoint, Read, hookimpl

ACCOUNTS = Endpoint("GET", "/iserver/accounts")
ORDERS = Endpoint(
    "POST",
    "/iserver/account/{accountId}/orders",
    params={"accountId": r"[A-Z0-9]{1,20}", "orders": r".*", "conid": r"[0-9]+"},
)
ORDER_BODY = {"orders": [{"conid": "265598", "side": "BUY", "quantity": "1"}]}
RESULTS: list = []


def _record(name: str, fn) -> None:
    from ibgw.errors import PolicyRefused

    try:
        fn()
    except PolicyRefused as exc:
        RESULTS.append([name, "refused", exc.reason])
    except AttributeError as exc:
        RESULTS.append([name, "absent", str(exc)[:80]])
    except Exception as exc:  # noqa: BLE001 - a hostile plugin swallows everything
        RESULTS.append([name, "failed", type(exc).__name__])
    else:
        RESULTS.append([name, "not refused", ""])


def _reach_transport(ctx):
    """ctx.gateway.transport as on the old main; else whatever a plugin can find."""
    gateway = getattr(ctx, "gateway", None)
    if gateway is not None:
        return gateway.transport
    from ibgw.app import current_app

    return current_app().transport


def fetch_attack(ctx):
    import time

    import requests

    import ibgw.policy
    from ibgw.app import current_app
    from ibgw.transport import Request

    del RESULTS[:]
    ctx.call(ACCOUNTS)  # one legitimate read first
    base = str(ctx.config.gateway_url).rstrip("/")
    orders_url = base + "/iserver/account/DU1234567/orders"
    _record("ctx.gateway", lambda: ctx.gateway)
    _record("ctx.app", lambda: ctx.app)
    transport = _reach_transport(ctx)

    _record("session.post", lambda: transport.session.post(orders_url, json=ORDER_BODY))
    _record(
        "session.request DELETE",
        lambda: transport.session.request("DELETE", base + "/iserver/account/DU1234567/order/42"),
    )

    def adapter_send():
        prep = requests.Request("POST", orders_url, json=ORDER_BODY).prepare()
        transport._adapter.send(prep, timeout=5)

    _record("adapter.send", adapter_send)

    def pool_urlopen():
        pool = transport._adapter.poolmanager.connection_from_url(base)
        path = base.split("//", 1)[1].partition("/")[2]
        pool.urlopen("POST", f"/{path}/iserver/account/DU1234567/orders", body=b"{}")

    _record("connection pool", pool_urlopen)
    soon = time.monotonic() + 5
    _record(
        "transport.send POST orders",
        lambda: transport.send(
            Request("POST", "/iserver/account/DU1234567/orders", (), b"{}", soon)
        ),
    )
    _record(
        "transport.send DELETE order",
        lambda: transport.send(
            Request("DELETE", "/iserver/account/DU1234567/order/42", (), None, soon)
        ),
    )
    _record("transport.send read", lambda: transport.send(Request("GET", "/iserver/accounts")))

    original = vars(ibgw.policy)["is_denied"]

    def rebind():
        ibgw.policy.is_denied = lambda method, path: None

    try:
        _record("rebind ibgw.policy.is_denied", rebind)
    finally:
        vars(ibgw.policy)["is_denied"] = original

    # lower down: write the module's namespace, then try a declared-everything facade
    namespace = vars(ibgw.policy)
    saved = {n: namespace[n] for n in ("is_denied", "check_request", "_denied_rule")}
    try:
        namespace["is_denied"] = lambda method, path: None
        namespace["check_request"] = lambda *args, **kwargs: None
        namespace["_denied_rule"] = lambda *args, **kwargs: None
        import ibgw.gateway

        gateway_ns = vars(ibgw.gateway)
        saved_gw = {n: gateway_ns[n] for n in ("is_denied", "check_request")}
        gateway_ns["is_denied"] = lambda method, path: None
        gateway_ns["check_request"] = lambda *args, **kwargs: None
        try:
            _record(
                "ctx.call order (policy namespace written)",
                lambda: ctx.call(ORDERS, path={"accountId": "DU1234567"}, body=ORDER_BODY),
            )
            _record(
                "app facade order (policy namespace written)",
                lambda: (
                    current_app().gateway().call(ORDERS, path={"accountId": "DU1234567"}, body={})
                ),
            )
        finally:
            gateway_ns.update(saved_gw)
    finally:
        namespace.update(saved)
    _write()
    return [{"attack": a, "result": r, "reason": why} for a, r, why in RESULTS]


def _write() -> None:
    import json
    import os

    out = os.environ.get("IBGW_HOSTILE_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(RESULTS, fh)


def _fetch_order(ctx):
    return ctx.call(ORDERS, path={"accountId": "DU1234567"}, body=ORDER_BODY)


@hookimpl
def ibgw_register_reads(register):
    register(
        Read(
            category="hostile",
            name="attack",
            default=True,
            summary="Tries every way around the facade (test only).",
            endpoints=[ACCOUNTS],
            fetch=fetch_attack,
            columns=["attack", "result", "reason"],
        )
    )
    register(
        Read(
            category="hostile",
            name="order",
            summary="Declares an order endpoint (test only): must never register.",
            endpoints=[ORDERS],
            fetch=_fetch_order,
        )
    )
