"""ibgw-contracts: find the conid every other read needs.

``ibgw contracts search apple`` searches IBKR's contract database by company name
and by ticker (``/iserver/secdef/search``); ``ibgw contracts info 265598`` shows a
contract's details (``/iserver/contract/{conid}/info``, completed by
``/trsrv/secdef``). Every endpoint is in IBKR's OpenAPI spec. This module holds
declarations only; the work is in :mod:`ibgw_contracts.reads`.
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl
from ibgw.endpoints import CONID, SECDEF_SEARCH

CONTRACT_INFO = Endpoint(
    "GET",
    "/iserver/contract/{conid}/info",
    params={"conid": CONID},
    provenance="documented",
)
SECDEF = Endpoint(
    "GET",
    "/trsrv/secdef",
    params={"conids": r"[0-9]{1,12}(,[0-9]{1,12}){0,199}"},
    provenance="documented",
)
TYPES = ("STK", "OPT", "FUT", "CASH", "IND", "BOND")
R = "ibgw_contracts.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("contracts", "Find contracts and their conids by name or ticker."))
    register(
        Read(
            category="contracts",
            name="search",
            summary="Search contracts by company name or ticker; shows each listing's conid.",
            description="TEXT is a company name (apple, 'bank of america') or a ticker "
            "(AAPL). IBKR is asked both ways and the answers are merged, tickers first. "
            "--type keeps contracts that offer that security type: IND and BOND are "
            "searched as such; OPT, FUT and CASH keep the listings whose search entry "
            "lists them (options and futures are on the underlying's entry).",
            params=[
                Param(
                    "text",
                    help="Company name or ticker.",
                    required=True,
                    argument=True,
                    pattern=r"[A-Za-z0-9.\- ]{1,24}",
                    metavar="TEXT",
                ),
                Param("type", help="Security type.", type="choice", choices=TYPES),
            ],
            endpoints=[SECDEF_SEARCH],
            fetch=f"{R}:fetch_search",
            schema=f"{R}:SearchSchema",
            columns=["conid", "symbol", "name", "exchange", "sec_types"],
            probe={"text": "apple"},
        )
    )
    register(
        Read(
            category="contracts",
            name="info",
            single=True,
            summary="Details of one contract by conid (or ticker): type, exchanges, currency.",
            description="CONID is IBKR's contract id (find it with 'ibgw contracts search'); "
            "a ticker is resolved to its US listing first.",
            params=[
                Param(
                    "contract",
                    help="Contract id (265598) or ticker (AAPL).",
                    required=True,
                    argument=True,
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}",
                    metavar="CONID",
                ),
            ],
            endpoints=[CONTRACT_INFO, SECDEF],
            fetch=f"{R}:fetch_info",
            schema=f"{R}:InfoSchema",
            columns=[
                "conid",
                "symbol",
                "name",
                "sec_type",
                "type",
                "currency",
                "listing_exchange",
                "exchanges",
                "local_symbol",
                "trading_class",
                "multiplier",
                "expiry",
                "strike",
                "right",
                "underlying_conid",
                "sector",
                "industry",
                "category",
                "country",
                "has_options",
                "description",
            ],
            probe={"contract": "265598"},
        )
    )
