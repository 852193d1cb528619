"""ibgw-fundamentals: company fundamentals for a symbol, one section at a time.

IBKR documents no fundamentals endpoint (reference §9; a 2026 probe of
``/iserver/fundamentals?conid=`` got 404 [S12]). The Client Portal web widgets did
serve them through the gateway in 2020 [S11]; every path below was checked against
the OpenAPI spec v2.29.0 (absent there: ``undocumented``) except the snapshot,
which is documented and carries a few fundamentals as fields.

Variants per section, in order of preference:

``summary``
    1. ``GET /fundamentals/landing/{conid}?widgets=profile,ratings`` [S11]: recorded
       answer (``samples/responses/widgets-all.json``), so parsed with confidence.
    2. ``GET /iserver/fundamentals/{conid}/summary`` [S11]: marked "works" in 2020
       but no answer was recorded (parsed generically), and its sibling
       ``/iserver/fundamentals?conid=`` 404s on a 2026 build [S12].
    3. ``GET /iserver/marketdata/snapshot`` (documented): fields 7051 company,
       7280 industry, 7281 category, 31 last, 7293/7294 52-week high/low,
       7671/7672 dividends, 7674-7677 EMAs, 7283 option IV, 7087 historical vol.
``financials``
    1. ``GET /fundamentals/financials/{conid}?annual=true&type=income`` [S11]: the
       statement itself (recorded ``samples/responses/financials-income.json``).
    2. ``GET /fundamentals/landing/{conid}?widgets=financials`` [S11]: a short
       summary of the same. No snapshot field carries financial statements.
``ratios``
    1. ``GET /fundamentals/landing/{conid}?widgets=key_ratios`` [S11]: several
       ratios with industry averages in one call.
    2. ``GET /fundamentals/ratio_details/{conid}?search_id=...`` [S11]: one ratio
       per call, for the three search ids the source shows (recorded
       ``samples/responses/ratios.json``). No snapshot field carries these ratios.
``dividends``
    1. ``GET /fundamentals/dividends/{conid}`` [S11]: yield, payout ratio, next
       dividend and the history (recorded ``samples/responses/fundamentals-dividends.json``).
    2. ``GET /fundamentals/landing/{conid}?widgets=dividends`` [S11]: the compact widget.
    3. ``GET /iserver/marketdata/snapshot`` (documented): fields 7671/7672 and 31.
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl
from ibgw.endpoints import SNAPSHOT as CORE_SNAPSHOT

CONID = r"[0-9]{1,12}"
WIDGET = r"(profile|ratings|financials|key_ratios|dividends)"
_SPEC = "absent from IBKR's OpenAPI spec v2.29.0 (reference §9)"
_SOURCE = "[S11] areed1192/interactive-broker-python-api tests/test_startup.py"
_RATIO = r"C\|[A-Z0-9]{2,12},(LAST_DAY|TTM|LFI),0"

LANDING = Endpoint(
    "GET",
    "/fundamentals/landing/{conid}",
    params={"conid": CONID, "widgets": WIDGET + r"(," + WIDGET + r"){0,4}", "lang": r"en"},
    provenance="undocumented",
    evidence=_SOURCE
    + ": https://localhost:5000/v1/portal/fundamentals/landing/265598?widgets=profile,"
    "ratings,financials,key_ratios,analyst_forecast,ownership,dividends,competitors,esg,events (2020; the "
    "gateway rewrites /v1/portal to /v1/api [S6]); recorded answer samples/responses/widgets-all.json "
    "(keys about, ratings, financial, key_ratios, dividends, ...); " + _SPEC,
)
ISERVER_SUMMARY = Endpoint(
    "GET",
    "/iserver/fundamentals/{conid}/summary",
    params={"conid": CONID},
    provenance="undocumented",
    evidence=_SOURCE
    + ": 'FUNDAMENTAL DATA - WORKS' https://localhost:5000/v1/portal/iserver/fundamentals/"
    "265598/summary (2020) and ibc/rest/data.py summary() ('company description and more'); no answer "
    "recorded; [S12] a 2026 probe of the sibling /iserver/fundamentals?conid= got 404; " + _SPEC,
)
FINANCIALS = Endpoint(
    "GET",
    "/fundamentals/financials/{conid}",
    params={"conid": CONID, "annual": r"true|false", "type": r"income|balance|cash"},
    provenance="undocumented",
    evidence=_SOURCE
    + ": 'FINANCIAL STATEMENTS' https://localhost:5000/v1/portal/fundamentals/financials/"
    "265598?annual=true&type=cash (also annual=false, type=income|balance; 2020); recorded answer "
    "samples/responses/financials-income.json {generalInfo, table: {columns, rows}}; " + _SPEC,
)
RATIO_DETAILS = Endpoint(
    "GET",
    "/fundamentals/ratio_details/{conid}",
    params={"conid": CONID, "search_id": _RATIO + r"(,\(\(" + _RATIO + r"\)\))?"},
    provenance="undocumented",
    evidence=_SOURCE
    + " and resources/ibw_undocumented_endpoints.md: https://localhost:5000/v1/portal/"
    "fundamentals/ratio_details/265598?search_id=C|PENORM,LAST_DAY,0 (also C|GROSMGN,TTM,0 and "
    "C|PR2TANBK,LAST_DAY,0,((C|TANBVPS,LFI,0)); 2020); recorded answer samples/responses/ratios.json "
    "{meta, data: [{symbol, ttm, average, isRequestedTicker, ...}]}; " + _SPEC,
)
DIVIDENDS = Endpoint(
    "GET",
    "/fundamentals/dividends/{conid}",
    params={"conid": CONID},
    provenance="undocumented",
    evidence=_SOURCE
    + " and resources/ibw_undocumented_endpoints.md: https://localhost:5000/v1/portal/"
    "fundamentals/dividends/265598 (2020); recorded answer samples/responses/fundamentals-dividends.json "
    "{history, payout_ratio, industry_comparison, next_dividend}; " + _SPEC,
)
SNAPSHOT = CORE_SNAPSHOT  # the documented fallback, declared once in the core

#: Variants per section, in order of preference (see the module docstring for why).
SECTION_VARIANTS = {
    "summary": (LANDING, ISERVER_SUMMARY, SNAPSHOT),
    "financials": (FINANCIALS, LANDING),
    "ratios": (LANDING, RATIO_DETAILS),
    "dividends": (DIVIDENDS, LANDING, SNAPSHOT),
}
SECTIONS = tuple(SECTION_VARIANTS)

R = "ibgw_fundamentals.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("fundamentals", "Company fundamentals, financials and ratios."))
    register(
        Read(
            category="fundamentals",
            name="show",
            default=True,
            summary="Company fundamentals for a symbol, one section at a time (summary, financials, "
            "ratios, dividends).",
            description=(
                "IBKR documents no fundamentals endpoint. Each section tries the Client Portal widget "
                "endpoints sources have shown (undocumented), then, for summary and dividends, the "
                "documented market-data snapshot fields (industry, category, company name, dividends, "
                "EMAs, implied and historical volatility, 52-week range, last price). financials and "
                "ratios have no documented fallback. With allow_undocumented = false only the snapshot "
                "is used. Rows are field/value pairs; 'source' says which part of which answer gave "
                "each value. Run 'ibgw probe' to remember which variant this gateway serves."
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
                    "section",
                    type="choice",
                    choices=SECTIONS,
                    default="summary",
                    help="Which fundamentals.",
                ),
            ],
            endpoints=[LANDING, ISERVER_SUMMARY, FINANCIALS, RATIO_DETAILS, DIVIDENDS, SNAPSHOT],
            fetch=f"{R}:fetch_fundamentals",
            schema=f"{R}:FundamentalSchema",
            columns=["field", "value", "period", "source"],
            probe={"symbol": "AAPL", "section": "summary"},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files  # imported lazily: it pulls in tempfile

    register(files("ibgw_fundamentals") / "fixtures" / "fundamentals.json")
