"""ibgw-calendar: when markets trade, and what happens when.

* ``ibgw calendar schedule SYMBOL``: the exchange's weekly schedule and special days
  (``GET /trsrv/secdef/schedule``, documented).
* ``ibgw calendar hours SYMBOL``: liquid and extended hours for the six trading days
  around today and whether the market is open now (``GET /contract/trading-schedule``,
  documented, "NEW" in IBKR's spec).
* ``ibgw calendar events``: earnings, dividends, economic releases, IPOs and splits
  from the Client Portal event calendar (``POST /calendar/events``, undocumented).

Times are shown in the exchange's zone and in the user's zone (the system zone, or
``TZ``). This module holds declarations and hook implementations only.
"""

from ibgw import Category, Endpoint, FakeRoute, Param, Read, hookimpl

ASSET_CLASSES = ("STK", "OPT", "FUT", "CFD", "WAR", "SWP", "FND", "BND", "ICS")
SYMBOL = r"[A-Z0-9][A-Z0-9.\-]{0,11}"
EXCHANGE = r"[A-Z0-9][A-Z0-9.\-]{0,15}"
CONID = r"[0-9]{1,12}"
STAMP = r"[0-9]{8}-[0-9]{4}"
FLAG = r"true|false"
DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
KINDS = ("earnings", "dividends", "economic", "ipo", "splits")

SECDEF_SCHEDULE = Endpoint(
    "GET",
    "/trsrv/secdef/schedule",
    pacing="global",
    provenance="documented",
    params={
        "assetClass": "|".join(ASSET_CLASSES),
        "symbol": SYMBOL,
        "exchange": EXCHANGE,
        "exchangeFilter": rf"{EXCHANGE}(,{EXCHANGE}){{0,19}}",
    },
)
TRADING_SCHEDULE = Endpoint(
    "GET",
    "/contract/trading-schedule",
    pacing="global",
    provenance="documented",
    params={"conid": CONID, "exchange": EXCHANGE},
)

_CALENDAR_EVIDENCE = (
    "[S6] the Client Portal Gateway jar (build 2023-04-24) bundles the IBLink swagger "
    "swagger/iblink.router.calendar.swagger.yaml, 'Event Calendar API', basePath /ci/portal: "
    "GET /calendar/metadata ('call first') and POST /calendar/events with "
    "{date:{start,end}, filters:{corporate_earnings, DivExDates, ipo, splits, corporate_events, "
    "economic_events, ...}} -> {day_counts, has_more, events}; [S11] a 2020 client posted "
    "https://localhost:5000/v1/portal/calendar/events with the body wrapped as "
    "{calendar_request:{date, filters, account}} (the gateway rewrites /v1/portal to /v1/api)"
)
CALENDAR_METADATA = Endpoint(
    "GET",
    "/calendar/metadata",
    pacing="global",
    provenance="undocumented",
    evidence=_CALENDAR_EVIDENCE,
)
_FILTER_PARAMS = {
    "corporate_earnings": FLAG,
    "DivExDates": FLAG,
    "ipo": FLAG,
    "splits": FLAG,
    "corporate_events": FLAG,
    "economic_events": FLAG,
    "option_show_monthly": FLAG,
    "option_show_weekly": FLAG,
    "recently_held": FLAG,
    "country": r"All|[A-Z]{2}",
    "limit": r"[0-9]{1,4}",
    "limit_region": r"[0-9]{1,4}",
    "symbol": CONID,
}
_BODY = {
    "date.start": STAMP,
    "date.end": STAMP,
    **{f"filters.{k}": v for k, v in _FILTER_PARAMS.items()},
}
# Body value names as the facade forms them (ibgw.gateway.Gateway._check_body_value):
# nested objects are dotted; the [S11] shape nests everything under calendar_request.
CALENDAR_EVENTS = Endpoint(
    "POST",
    "/calendar/events",
    pacing="global",
    provenance="undocumented",
    body=True,
    evidence=_CALENDAR_EVIDENCE,
    params={
        **_BODY,
        **{f"calendar_request.{k}": v for k, v in _BODY.items()},
        "calendar_request.account": r"[A-Za-z0-9]{0,32}",
    },
)

R = "ibgw_calendar.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("calendar", "Trading schedules, market hours and events."))
    register(
        Read(
            category="calendar",
            name="schedule",
            default=True,
            summary="Weekly trading schedule and special days of a symbol's exchanges.",
            description="Generic weekdays (IBKR's 20000101..20000107) are shown as Mon..Sun and "
            "converted to your zone for their next occurrence; other dates stand for "
            "themselves. A session whose close is not after its open crosses midnight: "
            "it opens the day before the date it is listed under (IBKR's trading-date "
            "convention). Your zone is the system zone, or TZ.",
            params=[
                Param(
                    "symbol",
                    help="Ticker, e.g. AAPL.",
                    required=True,
                    argument=True,
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}",
                    metavar="SYMBOL",
                ),
                Param(
                    "asset_class",
                    help="Asset class.",
                    type="choice",
                    choices=ASSET_CLASSES,
                    default="STK",
                ),
                Param(
                    "exchange",
                    help="Primary exchange of the contract, e.g. NASDAQ.",
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,15}",
                ),
                Param(
                    "exchange_filter",
                    help="Only these exchanges, comma-separated, e.g. ARCA,NYSE.",
                    pattern=r"[A-Za-z0-9.\-]{1,16}(,[A-Za-z0-9.\-]{1,16}){0,19}",
                    metavar="LIST",
                ),
            ],
            endpoints=[SECDEF_SCHEDULE],
            fetch=f"{R}:fetch_schedule",
            schema=f"{R}:ScheduleSchema",
            columns=[
                "date",
                "exchange",
                "kind",
                "open",
                "close",
                "zone",
                "local_open",
                "local_close",
                "local_zone",
            ],
            probe={"symbol": "AAPL"},
        )
    )
    register(
        Read(
            category="calendar",
            name="hours",
            summary="Liquid and extended trading hours around today, and whether the market is open now.",
            description="Six trading days around today (holidays omitted), in the exchange's zone "
            "and yours (the system zone, or TZ).",
            params=[
                Param(
                    "symbol",
                    help="Ticker, e.g. AAPL.",
                    required=True,
                    argument=True,
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}",
                    metavar="SYMBOL",
                ),
                Param(
                    "exchange",
                    help="Exchange (default: the primary exchange).",
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,15}",
                ),
            ],
            endpoints=[TRADING_SCHEDULE],
            fetch=f"{R}:fetch_hours",
            schema=f"{R}:HoursSchema",
            columns=[
                "date",
                "day",
                "liquid_open",
                "liquid_close",
                "extended_open",
                "extended_close",
                "local_liquid_open",
                "local_liquid_close",
                "local_extended_open",
                "local_extended_close",
            ],
            probe={"symbol": "AAPL"},
        )
    )
    register(
        Read(
            category="calendar",
            name="events",
            summary="Event calendar: earnings, dividends, economic releases, IPOs, splits (undocumented endpoint).",
            description="Uses the Client Portal event calendar, which IBKR does not document; "
            "it may not be served by your gateway build (exit 5) or may need "
            "allow_undocumented. Dates are in your zone (the system zone, or TZ); "
            "--from defaults to today, --to to a week after --from.",
            params=[
                Param(
                    "from",
                    help="First day, YYYY-MM-DD (default: today).",
                    pattern=DATE,
                    metavar="YYYY-MM-DD",
                ),
                Param(
                    "to",
                    help="Last day, YYYY-MM-DD (default: a week after --from).",
                    pattern=DATE,
                    metavar="YYYY-MM-DD",
                ),
                Param(
                    "kind",
                    help="Only these kinds (repeatable).",
                    type="choice",
                    choices=KINDS,
                    multiple=True,
                ),
                Param(
                    "symbol",
                    help="Only events of this stock, e.g. AAPL.",
                    pattern=r"[A-Za-z0-9][A-Za-z0-9.\-]{0,11}",
                    metavar="SYMBOL",
                ),
            ],
            endpoints=[CALENDAR_METADATA, CALENDAR_EVENTS],
            fetch=f"{R}:fetch_events",
            schema=f"{R}:EventSchema",
            columns=["date", "time", "kind", "symbol", "conid", "description"],
            probe={},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files

    from . import fake

    register(files("ibgw_calendar") / "fixtures" / "schedule.json")
    register(
        FakeRoute(
            "GET", "/contract/trading-schedule", fake.trading_schedule, source="ibgw-calendar"
        )
    )
    register(fake.event_calendar_fixture())
