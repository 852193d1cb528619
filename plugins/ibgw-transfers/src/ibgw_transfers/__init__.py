"""ibgw-transfers: Portfolio Analyst transactions for one contract.

``POST /pa/transactions`` (documented, reference §12) answers the buys, sells,
dividends and position transfers of one contract over the last N days. IBKR allows
one call per 15 minutes (pacing class ``pa``), so the parsed report is cached on
disk per (account, conid, days, currency) and a repeated request inside that
window is answered from the cache, with its age; when the window forbids a new
call, an older cached report is served with a note.

What the gateway cannot give: cash deposits and withdrawals outside this report.
IBKR's transfer history API (``/gw/api/v1/external-cash-transfers``) belongs to
the Account Management surface (OAuth 2.0), which the Client Portal Gateway does
not proxy [S6] and ibgw's read-only policy refuses (``/gw``); IBKR's Flex Web
Service (a Flex query with Cash Transactions) is the way to get them.
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl

ACCOUNT = r"[A-Za-z0-9]{1,32}"
CONID = r"[0-9]{1,12}"

PA_TRANSACTIONS = Endpoint(
    "POST",
    "/pa/transactions",
    params={"acctIds": ACCOUNT, "conids": CONID, "currency": r"[A-Z]{3}", "days": r"[0-9]{1,4}"},
    pacing="pa",
    body=True,
)

SUMMARY = (
    "Transactions of one contract (buys, sells, dividends, position transfers) from Portfolio "
    "Analyst. Cash deposits and withdrawals are not available through the gateway: use IBKR's "
    "Flex Web Service."
)
DESCRIPTION = (
    "Uses the documented POST /pa/transactions, one contract per request. IBKR allows one such "
    "report every 15 minutes: ibgw caches each report (per account, contract, days and currency) "
    "and answers a repeated request within that window from the cache, saying how old it is; "
    "when the window does not allow a new call it serves the last cached report, or exits 4.\n\n"
    "What the Client Portal Gateway cannot give: the history of cash transfers (deposits and "
    "withdrawals) outside this report. IBKR's transfer history API "
    "(/gw/api/v1/external-cash-transfers) is part of the Account Management API, which the "
    "gateway does not proxy and ibgw's read-only policy refuses. Use IBKR's Flex Web Service "
    "(a Flex query with Cash Transactions) for deposits and withdrawals."
)

R = "ibgw_transfers.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("transfers", "Transactions of a contract (Portfolio Analyst)."))
    register(
        Read(
            category="transfers",
            name="transactions",
            default=True,
            summary=SUMMARY,
            description=DESCRIPTION,
            params=[
                Param(
                    "symbol",
                    help="Ticker, e.g. AAPL (or give a conid instead).",
                    argument=True,
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}",
                    metavar="SYMBOL",
                ),
                Param(
                    "conid", help="Contract id instead of a symbol.", pattern=CONID, metavar="ID"
                ),
                Param(
                    "days",
                    type="int",
                    default=90,
                    minimum=1,
                    maximum=3650,
                    help="Days back from today.",
                ),
                Param(
                    "currency", default="USD", pattern=r"[A-Z]{3}", help="Currency of the amounts."
                ),
                Param(
                    "account",
                    help="Account id (default: --account, then the first account).",
                    pattern=ACCOUNT,
                    metavar="ID",
                ),
            ],
            endpoints=[PA_TRANSACTIONS],
            fetch=f"{R}:fetch_transactions",
            schema=f"{R}:TransactionSchema",
            columns=[
                "date",
                "type",
                "description",
                "quantity",
                "price",
                "amount",
                "currency",
                "fx_rate",
            ],
            probe=None,  # one call per 15 minutes: never spent on a probe
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files  # imported lazily: it pulls in tempfile

    register(files("ibgw_transfers") / "fixtures" / "transactions.json")
