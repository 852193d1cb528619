"""ibgw-marketdata: quotes (``ibgw quote AAPL MSFT``) and price history
(``ibgw history AAPL --period 1w --bar 1d``).

Both endpoints are in IBKR's OpenAPI spec and need the brokerage session
(``/iserver``); the gateway facade makes IBKR's ``/iserver/accounts`` prerequisite
call before the first market-data call. Symbols are resolved by the core symbol
resolver (``/iserver/secdef/search``); an all-digit argument is a conid and is not
searched. This module holds declarations only; the work is in
:mod:`ibgw_marketdata.reads` (imported when a read runs).
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl
from ibgw.endpoints import CONID, SNAPSHOT

# reference §5.2: bar sizes, and periods {1-30}min {1-8}h {1-1000}d {1-792}w {1-182}m {1-15}y
BARS = (
    "1min",
    "2min",
    "3min",
    "5min",
    "10min",
    "15min",
    "30min",
    "1h",
    "2h",
    "3h",
    "4h",
    "8h",
    "1d",
    "1w",
    "1m",
)
PERIOD = r"[1-9][0-9]{0,3}(min|h|d|w|m|y)"

HISTORY = Endpoint(
    "GET",
    "/iserver/marketdata/history",
    params={
        "conid": CONID,
        "period": PERIOD,
        "bar": "|".join(BARS),
        "outsideRth": r"true|false",
    },
    pacing="history",
    provenance="documented",
)
# a conid's listing exchange (for the exchange's time zone), reference §3
SECDEF = Endpoint(
    "GET",
    "/trsrv/secdef",
    params={"conids": r"[0-9]{1,12}(,[0-9]{1,12}){0,199}"},
    provenance="documented",
)

SYMBOL_ARG = r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}"
R = "ibgw_marketdata.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("quote", "Quotes: last, bid/ask, change, volume of symbols or conids."))
    register(Category("history", "Price history: OHLCV bars of a symbol or conid."))
    register(
        Read(
            category="quote",
            name="snapshot",
            default=True,
            summary="Quote one or many symbols or conids (last, bid/ask, sizes, change, volume).",
            description="SYMBOL is a ticker such as AAPL or BRK.B, or a conid such as 265598 "
            "(all digits: no contract search; its definition comes from /trsrv/secdef, and "
            "for a derivative its underlying is searched first, as IBKR requires). Many symbols are quoted in one go, 100 "
            "conids per snapshot call, within IBKR's pacing limits. The first snapshot "
            "of a contract only opens its market-data stream: the read asks again until "
            "the fields arrive or --wait seconds have passed. 'availability' says "
            "whether a quote is real-time, delayed, frozen, delayed-frozen or not "
            "entitled; a missing value is null, never 0. change_pct is in percent.",
            params=[
                Param(
                    "symbols",
                    help="Tickers (AAPL) or conids (265598).",
                    required=True,
                    argument=True,
                    multiple=True,
                    pattern=SYMBOL_ARG,
                    metavar="SYMBOL...",
                ),
                Param(
                    "sec_type",
                    help="Security type searched for tickers.",
                    type="choice",
                    choices=("STK", "IND", "BOND"),
                    default="STK",
                ),
                Param(
                    "exchange",
                    help="Listing exchange for tickers, e.g. NASDAQ (default: the US listing).",
                    pattern=r"[A-Za-z0-9.\- ]{1,16}",
                    metavar="EXCHANGE",
                ),
                Param(
                    "wait",
                    help="Seconds to wait for fields past the snapshot pre-flight.",
                    type="float",
                    default=5.0,
                    minimum=0,
                    maximum=30,
                    metavar="SECONDS",
                ),
            ],
            endpoints=[SNAPSHOT, SECDEF],
            fetch=f"{R}:fetch_quote",
            schema=f"{R}:QuoteSchema",
            columns=[
                "symbol",
                "conid",
                "last",
                "bid",
                "ask",
                "bid_size",
                "ask_size",
                "change",
                "change_pct",
                "volume",
                "open",
                "high",
                "low",
                "close",
                "availability",
            ],
            probe={"symbols": ["AAPL"]},
        )
    )
    register(
        Read(
            category="history",
            name="bars",
            default=True,
            summary="Price history: OHLCV bars with times in the exchange's zone and UTC.",
            description="PERIOD is how far back: a number and a unit, 1-30min, 1-8h, "
            "1-1000d, 1-792w, 1-182m (months) or 1-15y; BAR is the bar size: "
            + ", ".join(BARS)
            + ". IBKR sends at most 1000 bars per request and allows 5 history "
            "requests at once. 'time' is the bar's start in the exchange's time zone, "
            "'time_utc' the same instant in UTC (ISO 8601). Volume is as IBKR reports it.",
            params=[
                Param(
                    "symbol",
                    help="Ticker (AAPL) or conid (265598).",
                    required=True,
                    argument=True,
                    pattern=SYMBOL_ARG,
                    metavar="SYMBOL",
                ),
                Param(
                    "period",
                    help="How far back, e.g. 1d, 1w, 1m, 1y.",
                    default="1w",
                    metavar="PERIOD",
                ),
                Param(
                    "bar", help="Bar size, e.g. 1min, 5min, 1h, 1d.", default="1d", metavar="BAR"
                ),
                Param(
                    "outside_rth", help="Include bars outside regular trading hours.", type="bool"
                ),
                Param(
                    "sec_type",
                    help="Security type searched for a ticker.",
                    type="choice",
                    choices=("STK", "IND", "BOND"),
                    default="STK",
                ),
                Param(
                    "exchange",
                    help="Listing exchange for a ticker, e.g. NASDAQ (default: the US listing).",
                    pattern=r"[A-Za-z0-9.\- ]{1,16}",
                    metavar="EXCHANGE",
                ),
            ],
            endpoints=[HISTORY, SECDEF],
            fetch=f"{R}:fetch_history",
            schema=f"{R}:BarSchema",
            columns=["time", "time_utc", "open", "high", "low", "close", "volume"],
            probe={"symbol": "AAPL", "period": "1d", "bar": "1h"},
        )
    )
