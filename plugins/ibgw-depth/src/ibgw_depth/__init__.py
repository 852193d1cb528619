"""ibgw-depth: market depth (``ibgw depth SPY``), streamed over the gateway's websocket.

IBKR has no REST endpoint for the order book (endpoint reference §6): depth comes
only over ``wss://localhost:5000/v1/api/ws`` with the topics ``sbd``/``ubd``. The
only HTTP endpoints this read calls are core ones (symbol search, accounts,
``/iserver/accounts``, ``/tickle`` for the websocket credential). ``/ws`` itself is
not declared as an ``Endpoint``: it is not in IBKR's OpenAPI spec 2.29.0 and the
read-only policy refuses it over plain HTTP on purpose. The websocket is opened by
the core (``ctx.websocket()``, :mod:`ibgw.websocket`), which keeps the credential
and checks every message sent with :func:`ibgw.policy.check_ws_message`.

This module holds declarations only; :mod:`ibgw_depth.reads` (fetch, schema) is
imported when the read runs.
"""

from ibgw import Category, Param, Read, hookimpl
from ibgw.endpoints import TICKLE

R = "ibgw_depth.reads"

DESCRIPTION = """\
SYMBOL is a US ticker (the primary listing's contract); --conid skips the symbol
search. --exchange asks for one deep exchange's book (default: every deep exchange).

Market depth is streamed over the gateway's websocket (/v1/api/ws): ibgw takes the
websocket credential from /tickle (never shown), subscribes with sbd+ACCOUNT+CONID,
reads until one full book arrives (within --timeout), then unsubscribes (ubd) and
closes. Only ibgw's own market-depth subscription, its unsubscribe and the
keepalive are ever sent on the websocket. Without a market-depth subscription the gateway sends no book:
exit 5 (not entitled).

--watch prints every book update until Ctrl-C, then unsubscribes, closes and prints
the last book once more (table: redrawn in place on a terminal; json: one object per
line; csv: one header, rows tagged with their time).
"""


@hookimpl
def ibgw_register_reads(register):
    register(Category("depth", "Market depth: the order book of a contract."))
    register(
        Read(
            category="depth",
            name="book",
            default=True,
            summary="Market depth (order book ladder) for a contract, over the gateway's websocket.",
            description=DESCRIPTION,
            params=[
                Param(
                    "symbol",
                    help="Ticker, e.g. SPY (or give --conid).",
                    argument=True,
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}",
                    metavar="SYMBOL",
                ),
                Param(
                    "conid",
                    help="Contract id (skips the symbol search).",
                    type="int",
                    minimum=1,
                    maximum=999_999_999_999,
                    metavar="CONID",
                ),
                Param(
                    "exchange",
                    help="One deep exchange, e.g. ARCA, NYSE, ISLAND (default: all).",
                    pattern=r"[A-Za-z0-9.]{1,16}",
                    metavar="EXCH",
                ),
                Param(
                    "levels",
                    help="Levels per side, 1 to 50.",
                    type="int",
                    default=10,
                    minimum=1,
                    maximum=50,
                    metavar="N",
                ),
                Param(
                    "watch",
                    help="Keep printing book updates until Ctrl-C (CLI only).",
                    type="bool",
                    default=False,
                ),
            ],
            # HTTP calls only; the websocket is described above (not an HTTP endpoint).
            endpoints=[TICKLE],
            fetch=f"{R}:fetch_book",
            schema=f"{R}:LevelSchema",
            columns=["level", "bid_size", "bid", "ask", "ask_size"],
            probe={"symbol": "SPY", "levels": 1},
        )
    )


# The fake gateway's websocket (ibgw_fake.ws) answers every book subscription with an
# error topic in this scenario: `ibgw --backend fake --scenario no-market-depth depth SPY`.
FAKE_FIXTURE = {
    "description": "ibgw-depth: a scenario for the fake gateway's websocket",
    "scenarios": {
        "no-market-depth": {
            "description": "No market-depth subscription: websocket book subscriptions "
            "(sbd) answer an error topic.",
            "base": "connected",
        }
    },
}


@hookimpl
def ibgw_fake_fixtures(register):
    register(FAKE_FIXTURE)
