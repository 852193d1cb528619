"""ibgw-options: option expirations, strikes and contract chains.

``ibgw options SPY`` lists the expiry months (the default read),
``ibgw options strikes SPY --month APR26`` the strikes of a month and
``ibgw options chain SPY --month APR26 --strikes-around 10`` the option contracts
(conids) around the money. Chains are built the way IBKR documents it: contract
search, then ``/iserver/secdef/strikes``, then one ``/iserver/secdef/info`` per
strike and right, several in flight within the gateway's pacing limits, with the
contract definitions kept in the disk cache for 12 hours.

This module only declares; the work is in :mod:`ibgw_options.reads`, imported
when a read runs.
"""

from ibgw import Category, Param, Read, hookimpl
from ibgw.endpoints import SECDEF_INFO, SECDEF_SEARCH, SECDEF_STRIKES, SNAPSHOT

# shared with every plugin that reads options or market data: declared once in the core
STRIKES, INFO = SECDEF_STRIKES, SECDEF_INFO

R = "ibgw_options.reads"

SYMBOL = Param(
    "symbol",
    help="Underlying ticker, e.g. SPY.",
    argument=True,
    required=True,
    metavar="SYMBOL",
)
MONTH_P = Param(
    "month",
    help="Expiry month as MMMYY, e.g. APR26 (default: the nearest listed month).",
    metavar="MMMYY",
)
SEC_TYPE_P = Param(
    "sec_type",
    help="What the symbol is, for IBKR's contract search: STK (stock or ETF), IND (index, "
    "e.g. SPX, NDX, VIX) or BOND. A STK search that finds nothing for the symbol is "
    "retried as IND (with a note).",
    type="choice",
    choices=("STK", "IND", "BOND"),
    default="STK",
    metavar="STK|IND|BOND",
)
EXCHANGE_P = Param(
    "exchange",
    help="Option exchange.",
    default="SMART",
    pattern=r"[A-Za-z0-9]{1,16}",
    metavar="EXCHANGE",
)


@hookimpl
def ibgw_register_reads(register):
    register(Category("options", "Option expiries, strikes and contracts."))
    register(
        Read(
            category="options",
            name="expirations",
            default=True,
            summary="Option expiry months of an underlying.",
            description="Months as IBKR lists them (MMMYY) with the calendar month and the "
            "exchanges the options trade on. --exchange checks that the options are "
            "listed there.",
            params=[
                SYMBOL,
                SEC_TYPE_P,
                Param(
                    "exchange",
                    help="Only if listed on this option exchange.",
                    pattern=r"[A-Za-z0-9]{1,16}",
                    metavar="EXCHANGE",
                ),
            ],
            fetch=f"{R}:fetch_expirations",
            schema=f"{R}:ExpirationSchema",
            endpoints=[SECDEF_SEARCH],
            columns=["month", "expiry_month", "exchanges"],
            probe={"symbol": "SPY"},
        )
    )
    register(
        Read(
            category="options",
            name="strikes",
            summary="Strikes of one expiry month.",
            description="The strikes /iserver/secdef/strikes lists for the month (the union "
            "over its weekly and monthly expiries); call and put say which rights "
            "are listed. An empty list prints '(no rows)' with a note and exits 0.",
            params=[SYMBOL, MONTH_P, EXCHANGE_P, SEC_TYPE_P],
            fetch=f"{R}:fetch_strikes",
            schema=f"{R}:StrikeSchema",
            endpoints=[STRIKES],
            columns=["strike", "call", "put"],
            probe={"symbol": "SPY"},
        )
    )
    register(
        Read(
            category="options",
            name="chain",
            summary="Option contracts (conids) of one expiry month.",
            description="One /iserver/secdef/info look-up per strike and right, several in "
            "flight within the gateway's pacing limits; contract definitions are "
            "cached on disk for 12 hours, so a second run makes almost no calls. "
            "--strikes-around N keeps N strikes below the underlying's last price "
            "and N at or above it; --min-strike/--max-strike keep a range.",
            params=[
                SYMBOL,
                MONTH_P,
                Param(
                    "right",
                    help="C (calls) or P (puts); default both.",
                    metavar="C|P",
                ),
                Param(
                    "strikes_around",
                    type="int",
                    minimum=1,
                    maximum=500,
                    metavar="N",
                    help="N strikes each side of the underlying price.",
                ),
                Param("min_strike", type="float", minimum=0, metavar="X", help="Lowest strike."),
                Param("max_strike", type="float", minimum=0, metavar="Y", help="Highest strike."),
                EXCHANGE_P,
                SEC_TYPE_P,
            ],
            fetch=f"{R}:fetch_chain",
            schema=f"{R}:ContractSchema",
            endpoints=[STRIKES, INFO, SNAPSHOT],
            columns=[
                "conid",
                "symbol",
                "expiry",
                "strike",
                "right",
                "trading_class",
                "multiplier",
                "exchange",
            ],
            probe={"symbol": "SPY", "strikes_around": 1},
        )
    )
