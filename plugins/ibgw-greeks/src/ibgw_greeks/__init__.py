"""ibgw-greeks: option greeks, implied volatility and quotes from a market-data snapshot.

``ibgw greeks SPY --month APR26 --strike 500 --right C`` finds the option
contracts (contract search, strikes, ``/iserver/secdef/info``) and snapshots
them; ``ibgw greeks --conid ID [--conid ID ...]`` snapshots up to 100 option
conids directly, after the contract search of their underlyings (found with
``/trsrv/secdef``) that IBKR requires before a derivative's snapshot. An index
underlying (SPX, NDX, VIX) is searched with ``--sec-type IND`` (tried
automatically when a stock search finds nothing). Greeks need an option market-data subscription (OPRA for US
options): without it the read exits 5 ("not entitled"), never with zeros.

This module only declares; the work is in :mod:`ibgw_greeks.reads`.
"""

from ibgw import Category, Param, Read, hookimpl
from ibgw.endpoints import SECDEF_INFO, SECDEF_STRIKES, SNAPSHOT, TRSRV_SECDEF

# shared with every plugin that reads options or market data: declared once in the core
STRIKES, INFO, SECDEF = SECDEF_STRIKES, SECDEF_INFO, TRSRV_SECDEF

R = "ibgw_greeks.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("greeks", "Option greeks, implied volatility and quote."))
    register(
        Read(
            category="greeks",
            name="snapshot",
            default=True,
            summary="Option greeks, implied volatility and quote.",
            description="Either SYMBOL with --month/--strike/--right (the contracts of that "
            "strike in the month: the monthly and any weeklies), or one to 100 "
            "--conid. Default month: the nearest listed; default strike: the one "
            "nearest the underlying's last price; default right: both. "
            "implied_vol is in percent (24.6 means 24.6 %); theta is per day, "
            "vega per volatility point; volume is the contract's day volume (7762, "
            "else 87). A missing value is null, never 0. "
            "Without an option market-data subscription the read exits 5.",
            params=[
                Param(
                    "symbol",
                    help="Underlying ticker, e.g. SPY.",
                    argument=True,
                    metavar="SYMBOL",
                ),
                Param("month", help="Expiry month as MMMYY, e.g. APR26.", metavar="MMMYY"),
                Param("strike", type="float", minimum=0, metavar="STRIKE", help="Strike price."),
                Param(
                    "right",
                    help="C (call) or P (put); default both.",
                    metavar="C|P",
                ),
                Param(
                    "exchange",
                    help="Option exchange.",
                    default="SMART",
                    pattern=r"[A-Za-z0-9]{1,16}",
                    metavar="EXCHANGE",
                ),
                Param(
                    "conid",
                    type="int",
                    multiple=True,
                    minimum=1,
                    metavar="ID",
                    help="Option contract id (repeat for several, at most 100).",
                ),
                Param(
                    "sec_type",
                    help="What the underlying is, for IBKR's contract search: STK (stock or "
                    "ETF), IND (index, e.g. SPX) or BOND. A STK search that finds nothing "
                    "is retried as IND (with a note).",
                    type="choice",
                    choices=("STK", "IND", "BOND"),
                    default="STK",
                    metavar="STK|IND|BOND",
                ),
            ],
            fetch=f"{R}:fetch_greeks",
            schema=f"{R}:GreeksSchema",
            endpoints=[STRIKES, INFO, SNAPSHOT, SECDEF],
            columns=[
                "conid",
                "description",
                "last",
                "bid",
                "ask",
                "mark",
                "delta",
                "gamma",
                "theta",
                "vega",
                "implied_vol",
                "open_interest",
                "volume",
                "availability",
            ],
            probe={"symbol": "SPY", "right": "C"},
        )
    )
