"""Fake-backend answers for ibgw-calendar that depend on today (standard library only).

* ``GET /contract/trading-schedule`` is computed on every request: the six US
  trading days around today (weekends skipped, holidays ignored) with liquid
  hours 09:30-16:00 and extended hours 04:00-20:00 New York time, as epoch seconds,
  so "open now" is meaningful whenever the tests run.
* The undocumented event calendar (``GET /calendar/metadata``, ``POST
  /calendar/events``) is a fixture dict built when the fake backend collects
  fixtures, with events a few days around that day; its routes are marked
  undocumented so the ``documented-only`` scenario hides them.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

NEW_YORK = "America/New_York"
US_CONIDS = {265598: "AAPL", 756733: "SPY", 272093: "MSFT"}


def trading_days(today: dt.date, before: int = 2, after: int = 3) -> list[dt.date]:
    """``before`` weekdays before today's trading day, that day, and ``after`` more."""
    day = today
    while day.weekday() >= 5:  # a weekend: the current trading day is the next Monday
        day += dt.timedelta(days=1)
    days = [day]
    prev = day
    while len(days) < before + 1:
        prev -= dt.timedelta(days=1)
        if prev.weekday() < 5:
            days.insert(0, prev)
    nxt = day
    while len(days) < before + 1 + after:
        nxt += dt.timedelta(days=1)
        if nxt.weekday() < 5:
            days.append(nxt)
    return days


def _epoch(day: dt.date, hour: int, minute: int, tz) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).timestamp())


def schedule_for(today: dt.date) -> dict:
    tz = ZoneInfo(NEW_YORK)
    schedules = {}
    for day in trading_days(today):
        schedules[day.strftime("%Y%m%d")] = {
            "liquid_hours": [
                {"opening": _epoch(day, 9, 30, tz), "closing": _epoch(day, 16, 0, tz)}
            ],
            "extended_hours": [
                {
                    "cancel_daily_orders": True,
                    "opening": _epoch(day, 4, 0, tz),
                    "closing": _epoch(day, 20, 0, tz),
                }
            ],
        }
    return {"exchange_time_zone": "US/Eastern", "schedules": schedules}


def trading_schedule(request):
    try:
        conid = int(str(request.query.get("conid")))
    except ValueError:
        conid = None
    if conid not in US_CONIDS:
        return 400, {"error": "Bad Request: unknown contract", "statusCode": 400}
    today = dt.datetime.now(ZoneInfo(NEW_YORK)).date()
    return 200, schedule_for(today)


# -- event calendar ---------------------------------------------------------------------
# (days from today, UTC time, event_type, symbol, conid, description)
EVENTS = (
    (-2, "120000", "earnings", "ORCL", "272800", "Q3 FY2026 earnings release"),
    (1, "123000", "economic", None, None, "US Consumer Price Index (CPI), monthly"),
    (2, "120000", "dividends", "SPY", "756733", "Ex-dividend date, USD 1.7400"),
    (3, "120000", "earnings", "AAPL", "265598", "Q2 FY2026 earnings release (after market close)"),
    (4, "120000", "ipo", "NEWCO", None, "NewCo Holdings Inc IPO, NASDAQ, USD 18-20"),
    (5, "120000", "earnings", "MSFT", "272093", "Q3 FY2026 earnings release"),
    (6, "180000", "economic", None, None, "FOMC interest rate decision"),
    (8, "120000", "dividends", "AAPL", "265598", "Ex-dividend date, USD 0.2600"),
    (9, "120000", "splits", "NVDA", "4815747", "Stock split 4 for 1"),
)


def events_for(today: dt.date) -> dict:
    events, counts = [], {}
    for i, (offset, hhmmss, kind, symbol, conid, description) in enumerate(EVENTS):
        day = (today + dt.timedelta(days=offset)).strftime("%Y%m%d")
        data = {"description": description}
        if symbol:
            data["symbol"] = symbol
        events.append(
            {
                "index_date_type": "event_date",
                "event_type": kind,
                "data": data,
                "conids": [conid] if conid else [],
                "index_date": f"{day}T{hhmmss}+0000",
                "source": "RSE",
                "event_key": str(11662135 + i),
                "tooltips": {},
                "status": "confirmed" if offset < 7 else "unconfirmed",
            }
        )
        counts[day] = counts.get(day, 0) + 1
    return {
        "day_counts": [{"date": d, "count": {"other": n}} for d, n in sorted(counts.items())],
        "has_more": False,
        "events": events,
    }


def event_calendar_fixture(today: dt.date | None = None) -> dict:
    today = today or dt.date.today()
    return {
        "description": "ibgw-calendar: the undocumented Client Portal event calendar ([S6] IBLink "
        "swagger shape), synthetic events around the day the fixtures were collected",
        "routes": [
            {
                "method": "GET",
                "path": "/calendar/metadata",
                "undocumented": True,
                "response": {
                    "filters": [
                        "corporate_earnings",
                        "DivExDates",
                        "ipo",
                        "splits",
                        "corporate_events",
                        "economic_events",
                    ],
                    "countries": ["All", "US"],
                },
            },
            {
                "method": "POST",
                "path": "/calendar/events",
                "undocumented": True,
                "response": events_for(today),
            },
        ],
    }
