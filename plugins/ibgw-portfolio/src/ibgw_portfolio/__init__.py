"""ibgw-portfolio: today's P&L, Portfolio Analyst performance and allocation.

Three documented, read-only endpoints of IBKR's OpenAPI spec v2.29.0:

* ``GET /iserver/account/pnl/partitioned`` (brokerage session; IBKR allows one call
  per 5 seconds): daily P&L, unrealized P&L, net liquidation per account segment.
* ``POST /pa/performance`` (Portfolio Analyst; one call per 15 minutes, reference
  §12/§13): NAV and time-weighted return over a period. The parsed report is cached
  on disk per (account, period) and a repeat inside the window is served from it.
* ``GET /portfolio/{accountId}/allocation``: market value by asset class, sector
  and sector group, long and short.

This module holds declarations and hook implementations only (no heavy imports);
fetch functions and schemas live in :mod:`ibgw_portfolio.reads`.
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl

ACCOUNT = r"[A-Za-z0-9]{1,32}"
# IBKR's period vocabulary for /pa/performance (spec enum); 1Y is accepted as 12M
PERIODS = ("1D", "7D", "MTD", "1M", "3M", "6M", "12M", "YTD")
PERIOD_ALIASES = {"1Y": "12M"}

PNL = Endpoint("GET", "/iserver/account/pnl/partitioned", pacing="pnl")
PA_PERFORMANCE = Endpoint(
    "POST",
    "/pa/performance",
    params={"acctIds": ACCOUNT, "period": "|".join(PERIODS)},
    pacing="pa",
    body=True,
)
ALLOCATION = Endpoint("GET", "/portfolio/{accountId}/allocation", params={"accountId": ACCOUNT})

ACCOUNT_PARAM = Param(
    "account",
    help="Account id (default: --account, then the first account).",
    pattern=ACCOUNT,
    metavar="ID",
)
R = "ibgw_portfolio.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("portfolio", "Today's P&L, performance over a period, allocation."))
    register(
        Read(
            category="portfolio",
            name="pnl",
            default=True,
            summary="Today's P&L per account: daily P&L, unrealized P&L, net liquidation.",
            description=(
                "Uses the documented GET /iserver/account/pnl/partitioned (IBKR allows one "
                "call per 5 seconds). Without --account every account the gateway reports is "
                "shown. Right after login the gateway may answer with no rows while it starts "
                "computing: ask again a few seconds later."
            ),
            params=[
                Param(
                    "account",
                    help="Only this account (default: every account the gateway reports).",
                    pattern=ACCOUNT,
                    metavar="ID",
                )
            ],
            endpoints=[PNL],
            fetch=f"{R}:fetch_pnl",
            schema=f"{R}:PnlSchema",
            columns=[
                "account",
                "segment",
                "daily_pnl",
                "unrealized_pnl",
                "net_liquidation",
                "market_value",
                "excess_liquidity",
            ],
            probe={},
        )
    )
    register(
        Read(
            category="portfolio",
            name="performance",
            summary="Net asset value and time-weighted return of an account over a period.",
            description=(
                "Uses the documented POST /pa/performance (Portfolio Analyst). IBKR allows one "
                "such report every 15 minutes: ibgw caches each report (per account and period) "
                "and answers a repeated request within that window from the cache, saying how "
                "old it is; when the window does not allow a new call it serves the last cached "
                "report, or exits 4. Periods are IBKR's: 1D, 7D, MTD, 1M, 3M, 6M, 12M (or 1Y), "
                "YTD. Rows are daily: NAV and the cumulative return since the period began."
            ),
            params=[
                Param(
                    "period",
                    type="choice",
                    choices=[*PERIODS[:7], "1Y", PERIODS[7]],
                    default="1M",
                    help="Period: 1D, 7D, MTD, 1M, 3M, 6M, 12M or 1Y, YTD.",
                ),
                ACCOUNT_PARAM,
            ],
            endpoints=[PA_PERFORMANCE],
            fetch=f"{R}:fetch_performance",
            schema=f"{R}:PerformanceSchema",
            columns=["date", "nav", "return_pct", "currency"],
            probe=None,  # one call per 15 minutes: never spent on a probe
        )
    )
    register(
        Read(
            category="portfolio",
            name="allocation",
            summary="Market value of an account by asset class, sector and group, long and short.",
            description=(
                "Uses the documented GET /portfolio/{accountId}/allocation. weight_pct is the "
                "net value's share of the breakdown's total net value."
            ),
            params=[
                Param(
                    "by",
                    type="choice",
                    choices=["all", "asset-class", "sector", "group"],
                    default="all",
                    help="Which breakdown to show (default: all three).",
                ),
                ACCOUNT_PARAM,
            ],
            endpoints=[ALLOCATION],
            fetch=f"{R}:fetch_allocation",
            schema=f"{R}:AllocationSchema",
            columns=["breakdown", "name", "long", "short", "net", "weight_pct"],
            probe={},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files  # imported lazily: it pulls in tempfile

    from ibgw import FakeRoute

    from . import fake

    register(files("ibgw_portfolio") / "fixtures" / "portfolio.json")
    register(FakeRoute("POST", "/pa/performance", fake.performance, source="ibgw-portfolio"))
