"""ibgw-news: headlines for a symbol, and IBKR's FYI notifications.

IBKR documents no news endpoint for the Client Portal Gateway (reference §8). The
headlines read therefore tries, in order, the undocumented variants that sources
have shown; each is checked against the OpenAPI spec v2.29.0 (absent there) and
carries its evidence:

1. ``GET /fundamentals/landing/{conid}?widgets=news&lang=en`` [S11]: per contract,
   marked "works" through a local gateway (``localhost:5000/v1/portal/...``, which
   the gateway rewrites to ``/v1/api`` [S6]), with a recorded answer
   (``samples/responses/news-data.json``).
2. ``GET /iserver/news/portfolio`` [S11]: news about the positions held, not about
   one symbol. Served by real builds: a live probe of build 10.46.1l (issue 17)
   answered items with ``id, headline, source, provider, sentiment, receiptTime,
   tickers`` and no conid; items are kept when their ``tickers`` name the symbol
   (or a ``conid``/``conids`` key, where present, names its conid).

``/iserver/marketdata/news`` is not used: the only evidence ([S12], a 2026 probe)
saw an empty array, never an item. ``/iserver/news/top``, ``/iserver/news/sources``
and ``/iserver/news/briefing`` [S11] are not about a symbol and are not used.

A variant that is not served (404), rejected (400), answers in an unknown shape or
fails with a server error (5xx) hands over to the next; each variant's outcome is
logged with ``--debug`` and listed by ``ibgw probe``.

The FYI read uses the documented ``GET /fyi/notifications`` (and ``GET
/fyi/unreadnumber`` for ``--unread``, cached because IBKR answers 423 when it is
polled more than once in five minutes).
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl

CONID = r"[0-9]{1,12}"
_SPEC = "absent from IBKR's OpenAPI spec v2.29.0 and legacy swagger (reference §8)"

LANDING_NEWS = Endpoint(
    "GET",
    "/fundamentals/landing/{conid}",
    params={"conid": CONID, "widgets": r"news", "lang": r"en"},
    provenance="undocumented",
    evidence="[S11] areed1192/interactive-broker-python-api tests/test_startup.py: 'NEWS DATA - WORKS' "
    "https://localhost:5000/v1/portal/fundamentals/landing/265598?widgets=news&lang=en (2020; the "
    "gateway rewrites /v1/portal to /v1/api [S6]); recorded answer samples/responses/news-data.json "
    "{'news': {'title', 'content': [{newsId, headlineContent, source, conid, time}]}}; " + _SPEC,
)
PORTFOLIO_NEWS = Endpoint(
    "GET",
    "/iserver/news/portfolio",
    provenance="undocumented",
    evidence="[S11] areed1192/interactive-broker-python-api ibc/rest/data.py portfolio_news() and "
    "tests/test_startup.py (Client Portal web proxy .../portal.proxy/v1/portal/iserver/news/portfolio, "
    "2020), listed in reference §8; a live probe of build 10.46.1l (issue 17) answered items "
    "{id, headline, source, provider, sentiment, receiptTime, tickers} without conid keys; news "
    "about held positions, not per symbol: ibgw keeps the items whose tickers name the symbol; "
    + _SPEC,
)
FYI_NOTIFICATIONS = Endpoint(
    "GET", "/fyi/notifications", params={"max": r"[0-9]{1,2}"}, pacing="fyi"
)
FYI_UNREAD = Endpoint("GET", "/fyi/unreadnumber", pacing="fyi")

#: Headline variants in order of preference (see the module docstring for why).
HEADLINE_VARIANTS = (LANDING_NEWS, PORTFOLIO_NEWS)

R = "ibgw_news.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("news", "News headlines and IBKR notifications."))
    register(
        Read(
            category="news",
            name="headlines",
            default=True,
            summary="Recent headlines for a symbol (gateway builds differ: undocumented variants tried in turn).",
            description=(
                "IBKR documents no news endpoint for the Client Portal Gateway. ibgw tries, in order: "
                "GET /fundamentals/landing/{conid}?widgets=news and GET /iserver/news/portfolio "
                "(news about held positions, kept when its tickers name the symbol). Both are "
                "undocumented; with allow_undocumented = false this read is not available (exit 5). "
                "A variant that is not served, rejected or failing (5xx) hands over to the next; one "
                "that answers with no headlines ends the search: '(no rows)' and a note saying how "
                "many items the gateway returned. Run 'ibgw probe' to remember which variant this "
                "gateway serves."
            ),
            params=[
                Param(
                    "symbol",
                    help="Ticker, e.g. AAPL.",
                    argument=True,
                    required=True,
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}",
                    metavar="SYMBOL",
                ),
                Param(
                    "limit",
                    type="int",
                    default=10,
                    minimum=1,
                    maximum=100,
                    help="Most recent headlines to show.",
                ),
            ],
            endpoints=list(HEADLINE_VARIANTS),
            fetch=f"{R}:fetch_headlines",
            schema=f"{R}:HeadlineSchema",
            columns=["time", "source", "provider", "headline", "id"],
            probe={"symbol": "AAPL", "limit": 1},
        )
    )
    register(
        Read(
            category="news",
            name="fyi",
            summary="IBKR FYI notifications (documented /fyi/notifications).",
            description=(
                "Newest first, at most 10 (IBKR's limit per request). --unread keeps the unread ones and "
                "adds IBKR's unread count (GET /fyi/unreadnumber, which IBKR allows once per 5 minutes: "
                "the count is cached that long)."
            ),
            params=[
                Param(
                    "limit",
                    type="int",
                    default=10,
                    minimum=1,
                    maximum=10,
                    help="Notifications to fetch (IBKR allows at most 10).",
                ),
                Param(
                    "unread",
                    type="bool",
                    default=False,
                    help="Only unread notifications, plus IBKR's unread count.",
                ),
            ],
            endpoints=[FYI_NOTIFICATIONS, FYI_UNREAD],
            fetch=f"{R}:fetch_fyi",
            schema=f"{R}:FyiSchema",
            columns=["time", "category", "headline", "body", "id", "read"],
            probe={"limit": 1},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files  # imported lazily: it pulls in tempfile

    register(files("ibgw_news") / "fixtures" / "news.json")
