"""ibgw-trades: executions of the last days (``ibgw trades --days 7``).

``GET /iserver/account/trades`` (documented, IBKR's OpenAPI spec v2.29.0, "Trade
History": "up to a maximum of 7 days prior"; without ``days`` only the current
day's executions) needs the brokerage session and ``/iserver/accounts`` first (the
facade makes that call once); IBKR allows one request per 5 seconds.

This is the only order-related endpoint ibgw calls. The read-only policy keeps
refusing every order write (placing, modifying, cancelling, replies, whatif). The
orders listing ``GET /iserver/account/orders`` is not offered: its ``force``
parameter clears the gateway's order cache, and without it the first call of a
session answers an empty list on some builds (IBKR's answer carries
``"snapshot"``), so a faithful read would need a second call 5 seconds later.

This module holds declarations and hook implementations only; the fetch function
and schema live in :mod:`ibgw_trades.reads`.
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl

TRADES = Endpoint("GET", "/iserver/account/trades", params={"days": r"[1-7]"}, pacing="trades")
R = "ibgw_trades.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("trades", "Executions of today or the last days (up to 7)."))
    register(
        Read(
            category="trades",
            name="executions",
            default=True,
            summary="Executions (fills) of today, or of the last 1 to 7 days with --days.",
            description=(
                "Uses the documented GET /iserver/account/trades (IBKR allows one call per "
                "5 seconds and keeps at most 7 days). Times are UTC. Read-only: ibgw never "
                "places, changes or cancels an order."
            ),
            params=[
                Param(
                    "days",
                    type="int",
                    minimum=1,
                    maximum=7,
                    help="Also include the executions of this many prior days (1 to 7; "
                    "default: today only).",
                ),
                Param(
                    "account",
                    help="Only this account (default: every account the gateway reports).",
                    pattern=r"[A-Za-z0-9]{1,32}",
                    metavar="ID",
                ),
            ],
            endpoints=[TRADES],
            fetch=f"{R}:fetch_trades",
            schema=f"{R}:ExecutionSchema",
            columns=[
                "time",
                "account",
                "symbol",
                "side",
                "size",
                "price",
                "commission",
                "net_amount",
                "exchange",
            ],
            probe={},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from ibgw import FakeRoute

    from . import fake

    register(FakeRoute("GET", "/iserver/account/trades", fake.trades, source="ibgw-trades"))
