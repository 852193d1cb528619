"""Endpoints the core itself calls (session, prerequisites, symbols, accounts).

Every path here is in IBKR's OpenAPI spec v2.29.0 (``documented``); a test checks it.
"""

from .declarations import Endpoint

ACCOUNT = r"[A-Za-z0-9]{1,32}"
CONID = r"[0-9]{1,12}"
SYMBOL = r"[A-Za-z0-9.\- ]{1,24}"
MONTH = r"(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[0-9]{2}"
EXCHANGE = r"[A-Z0-9]{1,16}"
STRIKE = r"[0-9]{1,7}(\.[0-9]{1,4})?"

AUTH_STATUS = Endpoint("POST", "/iserver/auth/status")
TICKLE = Endpoint("POST", "/tickle", pacing="tickle")
ISERVER_ACCOUNTS = Endpoint("GET", "/iserver/accounts")
PORTFOLIO_ACCOUNTS = Endpoint("GET", "/portfolio/accounts", pacing="portfolio-accounts")
SECDEF_SEARCH = Endpoint(
    "GET",
    "/iserver/secdef/search",
    params={"symbol": SYMBOL, "secType": r"STK|IND|BOND", "name": r"true|false"},
)
# Options and market data, shared by every plugin that needs them. Strikes and info
# need /iserver/secdef/search for the underlying first in the session (the symbol
# resolver does it); the facade calls /iserver/accounts before any snapshot.
SECDEF_STRIKES = Endpoint(
    "GET",
    "/iserver/secdef/strikes",
    params={"conid": CONID, "sectype": r"OPT", "month": MONTH, "exchange": EXCHANGE},
)
SECDEF_INFO = Endpoint(
    "GET",
    "/iserver/secdef/info",
    params={
        "conid": CONID,
        "sectype": r"OPT",
        "month": MONTH,
        "strike": STRIKE,
        "right": r"C|P",
        "exchange": EXCHANGE,
    },
)
SNAPSHOT = Endpoint(
    "GET",
    "/iserver/marketdata/snapshot",
    params={
        "conids": r"[0-9]{1,12}(,[0-9]{1,12}){0,99}",
        "fields": r"[0-9]{1,5}(,[0-9]{1,5}){0,49}",
    },
    pacing="snapshot",
)
# Security definitions by conid (up to 200 per request): what an option conid's
# underlying is, so that its /iserver/secdef/search can be made before a snapshot.
TRSRV_SECDEF = Endpoint(
    "GET", "/trsrv/secdef", params={"conids": r"[0-9]{1,12}(,[0-9]{1,12}){0,199}"}
)
PORTFOLIO_SUMMARY = Endpoint("GET", "/portfolio/{accountId}/summary", params={"accountId": ACCOUNT})
PORTFOLIO_LEDGER = Endpoint("GET", "/portfolio/{accountId}/ledger", params={"accountId": ACCOUNT})
PORTFOLIO_POSITIONS = Endpoint(
    "GET",
    "/portfolio/{accountId}/positions/{pageId}",
    params={"accountId": ACCOUNT, "pageId": r"[0-9]{1,4}"},
)

# Always allowed for any read: session checks and the prerequisite/helper calls
# the host makes on a read's behalf.
CORE = (AUTH_STATUS, TICKLE, ISERVER_ACCOUNTS, PORTFOLIO_ACCOUNTS, SECDEF_SEARCH)
ALL = CORE + (
    PORTFOLIO_SUMMARY,
    PORTFOLIO_LEDGER,
    PORTFOLIO_POSITIONS,
    SECDEF_STRIKES,
    SECDEF_INFO,
    SNAPSHOT,
    TRSRV_SECDEF,
)
