"""ibgw-calendar: trading schedule, trading hours with "open now", and the undocumented
event calendar; on the fake backend and with every live request pinned by ``responses``.

Time is frozen by replacing ``ibgw_calendar.reads._now``; the user's zone comes from
``TZ`` (an IANA name), so conversions, including the weeks when US and EU daylight
saving disagree, are checked against known values.
"""

import csv
import datetime as dt
import io
import json
from zoneinfo import ZoneInfo

import ibgw_calendar
import pytest
from ibgw_calendar import fake, reads
from ibgw_calendar.tz import UserZone, hhmm
from responses import matchers

BASE = "https://localhost:5000/v1/api"
UTC = dt.UTC
AAPL_SEARCH = [
    {
        "conid": "265598",
        "companyHeader": "APPLE INC - NASDAQ",
        "companyName": "APPLE INC",
        "symbol": "AAPL",
        "description": "NASDAQ",
        "sections": [{"secType": "STK"}],
    }
]


@pytest.fixture
def cli(ibgw_pm, ibgw_cli):
    ibgw_pm.register(ibgw_calendar)
    return ibgw_cli


@pytest.fixture
def freeze(monkeypatch):
    def at(iso: str):
        moment = dt.datetime.fromisoformat(iso)
        monkeypatch.setattr(reads, "_now", lambda: moment)
        return moment

    return at


@pytest.fixture
def tz(monkeypatch):
    def use(name: str):
        monkeypatch.setenv("TZ", name)

    use("UTC")
    return use


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def table(stdout: str) -> list[list[str]]:
    """Table rows split on runs of 2+ spaces (cells may hold one space: '02:00 +1d')."""
    import re

    lines = [ln for ln in stdout.splitlines() if ln.strip() and not set(ln) <= {"-", " "}]
    return [re.split(r"\s{2,}", ln.strip()) for ln in lines]


# -- pure conversions -----------------------------------------------------------------
def test_hhmm_marks_other_days():
    d = dt.date(2026, 7, 6)
    assert hhmm(dt.datetime(2026, 7, 6, 9, 30), d) == "09:30"
    assert hhmm(dt.datetime(2026, 7, 7, 2, 0), d) == "02:00 +1d"
    assert hhmm(dt.datetime(2026, 7, 5, 20, 0), d) == "20:00 -1d"


def test_session_span_crossing_midnight_and_2400():
    ny = ZoneInfo("America/New_York")
    mon = dt.date(2026, 7, 6)
    start, end = reads.session_span(mon, "2000", "0350", ny)
    assert start == dt.datetime(2026, 7, 5, 20, 0, tzinfo=ny)
    assert end == dt.datetime(2026, 7, 6, 3, 50, tzinfo=ny)
    start, end = reads.session_span(mon, "0000", "2400", ny)
    assert (end - start) == dt.timedelta(hours=24)
    assert reads.session_span(mon, "0930", "0930", ny) is None
    assert reads.session_span(mon, "930", "1600", ny) is None
    assert reads.session_span(mon, "2500", "1600", ny) is None


def test_user_zone_from_tz(monkeypatch):
    assert UserZone({"TZ": "Europe/Berlin"}).label == "Europe/Berlin"
    assert UserZone({"TZ": ":Asia/Tokyo"}).label == "Asia/Tokyo"
    moment = dt.datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert UserZone({"TZ": "Europe/Berlin"}).convert(moment).hour == 13
    # not an IANA name: the platform's own local rules still convert (no crash)
    assert UserZone({"TZ": "not/a zone"}).convert(moment).tzinfo is not None


def test_event_stamps_are_local_midnights_in_utc():
    day = dt.date(2026, 4, 1)
    assert reads.stamp(UserZone({"TZ": "Europe/Berlin"}), day) == "20260331-2200"
    assert reads.stamp(UserZone({"TZ": "America/New_York"}), day) == "20260401-0400"
    assert reads.stamp(UserZone({"TZ": "UTC"}), day) == "20260401-0000"
    # the [S11] samples: Feb and May midnights in US Pacific time
    pacific = UserZone({"TZ": "America/Los_Angeles"})
    assert reads.stamp(pacific, dt.date(2020, 2, 8)) == "20200208-0800"
    assert reads.stamp(pacific, dt.date(2020, 5, 8)) == "20200508-0700"


# -- schedule on the fake backend, frozen time ------------------------------------------
def schedule_json(cli, *args):
    r = cli("calendar", "schedule", *args, "-o", "json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_schedule_berlin_when_us_dst_started_and_eu_not(cli, freeze, tz):
    freeze("2026-03-18T12:00:00+00:00")  # US on EDT since Mar 8; Berlin on CET until Mar 29
    tz("Europe/Berlin")
    rows = schedule_json(cli, "AAPL")
    mon = [r for r in rows if r["date"] == "Mon"]
    assert [(r["kind"], r["open"], r["close"], r["local_open"], r["local_close"]) for r in mon] == [
        ("trading", "04:00", "20:00", "09:00", "01:00 +1d"),
        ("liquid", "09:30", "16:00", "14:30", "21:00"),
    ]
    assert mon[1]["opens_at"] == "2026-03-23T09:30:00-04:00"
    assert mon[1]["zone"] == "America/New_York" and mon[1]["local_zone"] == "Europe/Berlin"
    assert [r["date"] for r in rows] == [
        "Mon",
        "Mon",
        "Tue",
        "Tue",
        "Wed",
        "Wed",
        "Thu",
        "Thu",
        "Fri",
        "Fri",
        "2026-11-26",
        "2026-11-27",
        "2026-11-27",
    ]
    holiday = [r for r in rows if r["date"] == "2026-11-26"][0]
    assert holiday["kind"] == "closed" and holiday["open"] is None
    early = [r for r in rows if r["date"] == "2026-11-27"]
    assert [(r["kind"], r["close"], r["local_open"], r["local_close"]) for r in early] == [
        ("trading", "17:00", "10:00", "23:00"),
        ("liquid", "13:00", "15:30", "19:00"),
    ]


def test_schedule_berlin_in_summer_and_the_table(cli, freeze, tz):
    freeze("2026-07-01T12:00:00+00:00")
    tz("Europe/Berlin")
    rows = schedule_json(cli, "aapl")
    assert {
        (r["local_open"], r["local_close"])
        for r in rows
        if r["kind"] == "liquid" and len(r["date"]) == 3
    } == {("15:30", "22:00")}
    r = cli("calendar", "AAPL")  # the default read, as a table
    assert r.exit_code == 0, r.stderr
    t = table(r.stdout)
    assert t[0] == [
        "date",
        "exchange",
        "kind",
        "open",
        "close",
        "zone",
        "local_open",
        "local_close",
        "local_zone",
    ]
    assert t[1] == [
        "Mon",
        "NASDAQ",
        "trading",
        "04:00",
        "20:00",
        "America/New_York",
        "10:00",
        "02:00 +1d",
        "Europe/Berlin",
    ]
    r = cli("calendar", "schedule", "AAPL", "-o", "csv")
    parsed = list(csv.DictReader(io.StringIO(r.stdout)))
    assert parsed[1]["local_open"] == "15:30" and parsed[1]["crosses_midnight"] == "False"


def test_schedule_overnight_session_crosses_midnight(cli, freeze, tz):
    freeze("2026-07-01T12:00:00+00:00")  # Wednesday; the next Monday is Jul 6
    tz("Europe/Berlin")
    rows = schedule_json(cli, "SPY", "--exchange-filter", "overnight")
    assert {r["exchange"] for r in rows} == {"OVERNIGHT"}
    mon = rows[0]
    assert (mon["date"], mon["open"], mon["close"], mon["local_open"], mon["local_close"]) == (
        "Mon",
        "20:00 -1d",
        "03:50",
        "02:00",
        "09:50",
    )
    assert mon["opens_at"] == "2026-07-05T20:00:00-04:00"
    assert mon["closes_at"] == "2026-07-06T03:50:00-04:00"
    assert mon["crosses_midnight"] is True
    tz("America/Los_Angeles")
    mon = schedule_json(cli, "SPY", "--exchange-filter", "OVERNIGHT")[0]
    assert (mon["local_open"], mon["local_close"]) == ("17:00 -1d", "00:50")


def test_schedule_spy_venues_and_closed_days(cli, freeze, tz):
    freeze("2026-07-01T12:00:00+00:00")
    rows = schedule_json(cli, "SPY")
    assert [r["exchange"] for r in rows][:1] == ["ARCA"]
    assert {r["exchange"] for r in rows} == {"ARCA", "NYSE", "OVERNIGHT"}
    sat = [r for r in rows if r["date"] == "Sat"]
    assert sat == [{**sat[0], "kind": "closed", "exchange": "ARCA"}]
    nyse = [r for r in rows if r["exchange"] == "NYSE"]  # 'tradingTimes' spelling, prop LIQUID
    assert len(nyse) == 5 and {r["kind"] for r in nyse} == {"liquid"}
    assert {(r["local_open"], r["local_close"]) for r in nyse} == {("13:30", "20:00")}  # TZ=UTC


def test_schedule_unknown_symbol_is_no_rows(cli):
    r = cli("calendar", "schedule", "ZZZZ")
    assert r.exit_code == 0
    assert "(no rows)" in r.stdout and "no trading schedule for ZZZZ" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("schedule", "AA PL"),
        ("schedule", "AAPL", "--asset-class", "XYZ"),
        ("schedule", "AAPL", "--exchange", "NAS/DAQ"),
        ("schedule", "A" * 13),
        ("hours", "AAPL$"),
        ("schedule",),
    ],
)
def test_schedule_and_hours_bad_input(cli, args):
    r = cli("calendar", *args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


# -- hours on the fake backend: relative to the real today ------------------------------------
def expected_state(now: dt.datetime) -> str:
    ny = now.astimezone(ZoneInfo("America/New_York"))
    minutes = ny.hour * 60 + ny.minute
    if ny.weekday() >= 5:
        return "closed"
    if 9 * 60 + 30 <= minutes < 16 * 60:
        return "liquid"
    if 4 * 60 <= minutes < 20 * 60:
        return "extended"
    return "closed"


def test_hours_fake_open_now_matches_the_clock(cli, tz):
    tz("Asia/Tokyo")
    before = expected_state(dt.datetime.now(UTC))
    r = cli("calendar", "hours", "AAPL", "-o", "json")
    after = expected_state(dt.datetime.now(UTC))
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 6
    assert all(dt.date.fromisoformat(row["date"]).weekday() < 5 for row in rows)
    assert {(row["liquid_open"], row["liquid_close"]) for row in rows} == {("09:30", "16:00")}
    assert {row["zone"] for row in rows} == {"US/Eastern"}
    assert {row["local_zone"] for row in rows} == {"Asia/Tokyo"}
    if before != after:
        pytest.skip("the market changed state during the test")
    if before == "closed":
        assert "AAPL is closed now; next session opens" in r.stderr
        assert all(row["open_now"] is None for row in rows)
    else:
        assert f"AAPL is open now: {'liquid' if before == 'liquid' else 'extended'}" in r.stderr
        assert [row["open_now"] for row in rows].count(before) == 1


def test_hours_fake_table(cli, tz):
    tz("Europe/Berlin")
    r = cli("calendar", "hours", "SPY")
    assert r.exit_code == 0, r.stderr
    t = table(r.stdout)
    assert t[0] == [
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
    ]
    assert len(t) == 7
    # Berlin is 6 h ahead of New York except in the weeks the two DST calendars disagree
    assert t[1][6] in ("15:30", "14:30") and t[1][9] in ("02:00 +1d", "01:00 +1d")


def test_fake_trading_days_skip_weekends():
    sat = dt.date(2026, 11, 28)
    assert fake.trading_days(sat) == [dt.date(2026, 11, d) for d in (26, 27, 30)] + [
        dt.date(2026, 12, 1),
        dt.date(2026, 12, 2),
        dt.date(2026, 12, 3),
    ]
    wed = dt.date(2026, 7, 1)
    days = fake.trading_days(wed)
    assert days[2] == wed and len(days) == 6 and all(d.weekday() < 5 for d in days)


# -- events on the fake backend ------------------------------------------------------------
def events_json(cli, *args):
    r = cli("calendar", "events", *args, "-o", "json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_events_default_week(cli, freeze, tz):
    today = dt.date.today()  # the day the fake built its events around
    freeze(f"{today.isoformat()}T12:00:00+00:00")
    rows = events_json(cli)
    offsets = [(dt.date.fromisoformat(r["date"]) - today).days for r in rows]
    assert offsets == [1, 2, 3, 4, 5, 6]
    assert [r["kind"] for r in rows] == [
        "economic",
        "dividends",
        "earnings",
        "ipo",
        "earnings",
        "economic",
    ]
    aapl = rows[2]
    assert aapl == {
        "date": (today + dt.timedelta(days=3)).isoformat(),
        "time": "12:00",
        "kind": "earnings",
        "symbol": "AAPL",
        "conid": 265598,
        "description": "Q2 FY2026 earnings release (after market close)",
        "event_type": "earnings",
        "status": "confirmed",
        "source": "RSE",
        "provenance": "undocumented",
        "endpoint": "POST /calendar/events",
    }


def test_events_range_kind_and_table(cli, tz):
    tz("Europe/Berlin")
    today = dt.date.today()
    start, end = today - dt.timedelta(days=3), today + dt.timedelta(days=10)
    rows = events_json(cli, "--from", start.isoformat(), "--to", end.isoformat())
    assert len(rows) == 9
    assert rows[0]["time"] == "13:00" or rows[0]["time"] == "14:00"  # 12:00 UTC in Berlin
    rows = events_json(
        cli,
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
        "--kind",
        "dividends",
        "--kind",
        "splits",
    )
    assert [(r["kind"], r["symbol"]) for r in rows] == [
        ("dividends", "SPY"),
        ("dividends", "AAPL"),
        ("splits", "NVDA"),
    ]
    r = cli(
        "calendar",
        "events",
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
        "--kind",
        "economic",
    )
    assert r.exit_code == 0, r.stderr
    t = table(r.stdout)
    assert t[0] == ["date", "time", "kind", "symbol", "conid", "description"]
    assert [row[-1] for row in t[1:]] == [
        "US Consumer Price Index (CPI), monthly",
        "FOMC interest rate decision",
    ]
    assert "served by an undocumented endpoint (POST /calendar/events)" in r.stderr
    r = cli(
        "calendar",
        "events",
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
        "--kind",
        "ipo",
        "-o",
        "csv",
    )
    assert list(csv.reader(io.StringIO(r.stdout)))[1][2:4] == ["ipo", "NEWCO"]


def test_events_for_one_symbol(cli):
    today = dt.date.today()
    rows = events_json(
        cli,
        "--symbol",
        "aapl",
        "--from",
        today.isoformat(),
        "--to",
        (today + dt.timedelta(days=30)).isoformat(),
    )
    assert [(r["kind"], r["symbol"]) for r in rows] == [("earnings", "AAPL"), ("dividends", "AAPL")]


def test_events_documented_only_exits_5_naming_every_variant(cli):
    r = cli("--scenario", "documented-only", "calendar", "events")
    assert r.exit_code == 5, r.stdout + r.stderr
    assert one_line(r.stderr)
    for needle in (
        "GET /calendar/metadata (not-served)",
        "POST /calendar/events with date/filters body (not-served)",
        "POST /calendar/events with calendar_request body (not-served)",
    ):
        assert needle in r.stderr
    r = cli("--scenario", "documented-only", "-o", "json", "calendar", "events")
    error = json.loads(r.stderr)["error"]
    assert error["reason"] == "not-served" and len(error["tried"]) == 3


def test_events_with_undocumented_disabled(cli, monkeypatch):
    monkeypatch.setenv("IBGW_ALLOW_UNDOCUMENTED", "false")
    r = cli("-o", "json", "calendar", "events")
    assert r.exit_code == 5, r.stderr
    assert json.loads(r.stderr)["error"]["tried"] == [
        "POST /calendar/events (undocumented, disabled)"
    ]


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--from", "2026-05-10", "--to", "2026-05-01"), "is after --to"),
        (("--from", "2026-02-30"), "not a valid date"),
        (("--to", "2026-13-01"), "not a valid date"),
        (("--from", "2026/02/01"), "from"),
        (("--from", "yesterday"), "from"),
        (("--from", "2026-01-01", "--to", "2026-12-31"), "at most 93 days"),
        (("--kind", "weather"), "kind"),
        (("--symbol", "AA;PL"), "symbol"),
    ],
)
def test_events_bad_input_exits_2(cli, args, needle):
    r = cli("calendar", "events", *args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and needle in r.stderr


@pytest.mark.parametrize(
    "scenario,code",
    [("missing-session", 3), ("gateway-down", 4), ("rate-limited", 4), ("malformed-response", 4)],
)
def test_gateway_faults_give_a_state(cli, scenario, code):
    for args in (("schedule", "AAPL"), ("hours", "AAPL"), ("events",)):
        r = cli("--scenario", scenario, "calendar", *args)
        assert r.exit_code == code, (args, r.stderr)
        assert one_line(r.stderr)


# -- live transport, every request pinned ------------------------------------------------------
def live(cli, *args):
    return cli("--backend", "live", *args)


IBM_NYSE = [
    {  # IBKR's spec example for /trsrv/secdef/schedule, abridged
        "description": "New York Stock Exchange",
        "exchange": "NYSE",
        "id": "p101781",
        "timezone": "America/New_York",
        "tradeVenueId": "v13038",
        "schedules": [
            {
                "clearingCycleEndTime": "0000",
                "sessions": [],
                "tradingScheduleDate": "20000101",
                "tradingtimes": [
                    {"cancelDayOrders": "Y", "closingTime": "2330", "openingTime": "0035"}
                ],
            },
            {
                "clearingCycleEndTime": "1700",
                "sessions": [],
                "tradingScheduleDate": "20000103",
                "tradingtimes": [
                    {
                        "cancelDayOrders": "Y",
                        "closingTime": "2330",
                        "openingTime": "0035",
                        "prop": "LIQUID",
                    }
                ],
            },
            {
                "clearingCycleEndTime": "0000",
                "sessions": [],
                "tradingScheduleDate": "20240329",
                "tradingtimes": [
                    {"cancelDayOrders": "Y", "closingTime": "2330", "openingTime": "0035"}
                ],
            },
            {"tradingScheduleDate": "garbage"},
            "not an object",
        ],
    }
]


def pin_schedule(rsps, query, **answer):
    return rsps.add(
        "GET",
        f"{BASE}/trsrv/secdef/schedule",
        match=[matchers.query_param_matcher(query)],
        **answer,
    )


def test_live_schedule_pinned(ibgw_responses, cli, freeze, tz):
    freeze("2024-03-20T12:00:00+00:00")  # Wednesday; US on EDT, Berlin on CET
    tz("Europe/Berlin")
    call = pin_schedule(ibgw_responses, {"assetClass": "STK", "symbol": "IBM"}, json=IBM_NYSE)
    r = live(cli, "-o", "json", "calendar", "schedule", "ibm")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [
        (x["date"], x["kind"], x["open"], x["close"], x["local_open"], x["local_close"])
        for x in rows
    ] == [
        ("Mon", "liquid", "00:35", "23:30", "05:35", "04:30 +1d"),
        ("Sat", "trading", "00:35", "23:30", "05:35", "04:30 +1d"),
        ("2024-03-29", "trading", "00:35", "23:30", "05:35", "04:30 +1d"),
    ]
    assert rows[0]["opens_at"] == "2024-03-25T00:35:00-04:00"
    r = live(cli, "calendar", "schedule", "IBM", "-o", "csv")
    assert list(csv.reader(io.StringIO(r.stdout)))[1][:5] == [
        "Mon",
        "NYSE",
        "liquid",
        "00:35",
        "23:30",
    ]
    r = live(cli, "calendar", "IBM")
    assert table(r.stdout)[1] == [
        "Mon",
        "NYSE",
        "liquid",
        "00:35",
        "23:30",
        "America/New_York",
        "05:35",
        "04:30 +1d",
        "Europe/Berlin",
    ]
    assert call.call_count == 3


def test_live_schedule_all_query_params(ibgw_responses, cli):
    call = pin_schedule(
        ibgw_responses,
        {"assetClass": "FUT", "symbol": "ES", "exchange": "CME", "exchangeFilter": "CME,CBOT"},
        json=[],
    )
    r = live(
        cli,
        "calendar",
        "schedule",
        "ES",
        "--asset-class",
        "FUT",
        "--exchange",
        "cme",
        "--exchange-filter",
        "cme,cbot",
    )
    assert r.exit_code == 0, r.stderr
    assert call.call_count == 1 and "(no rows)" in r.stdout


def test_live_schedule_unknown_zone_is_noted(ibgw_responses, cli):
    venue = {**IBM_NYSE[0], "timezone": "Mars/Olympus"}
    pin_schedule(ibgw_responses, {"assetClass": "STK", "symbol": "IBM"}, json=[venue])
    r = live(cli, "-o", "json", "calendar", "schedule", "IBM")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows[0]["open"] == "00:35" and rows[0]["local_open"] is None
    assert "unknown time zone Mars/Olympus" in r.stderr


def test_live_schedule_malformed_and_400(ibgw_responses, cli):
    pin_schedule(ibgw_responses, {"assetClass": "STK", "symbol": "IBM"}, json="nope")
    r = live(cli, "calendar", "schedule", "IBM")
    assert r.exit_code == 4 and one_line(r.stderr)
    pin_schedule(
        ibgw_responses,
        {"assetClass": "STK", "symbol": "XX"},
        status=400,
        json={"error": "Bad Request", "statusCode": 400},
    )
    r = live(cli, "calendar", "schedule", "XX")
    assert r.exit_code == 2 and one_line(r.stderr)


SPEC_HOURS = {  # IBKR's spec example for /contract/trading-schedule (US/Central), abridged
    "exchange_time_zone": "US/Central",
    "schedules": {
        "20251218": {
            "extended_hours": [
                {"cancel_daily_orders": True, "closing": 1766095200, "opening": 1766012400}
            ],
            "liquid_hours": [{"closing": 1766095200, "opening": 1766068200}],
        },
        "20251224": {
            "extended_hours": [
                {"cancel_daily_orders": True, "closing": 1766600100, "opening": 1766530800}
            ],
            "liquid_hours": [{"closing": 1766600100, "opening": 1766586600}],
        },
        "20251226": {
            "extended_hours": [
                {"cancel_daily_orders": True, "closing": 1766786400, "opening": 1766703600}
            ]
        },
    },
}


def pin_hours(rsps, answer=None, query=None, **kw):
    rsps.add(
        "GET",
        f"{BASE}/iserver/secdef/search",
        json=AAPL_SEARCH,
        match=[matchers.query_param_matcher({"symbol": "AAPL", "secType": "STK"})],
    )
    return rsps.add(
        "GET",
        f"{BASE}/contract/trading-schedule",
        match=[matchers.query_param_matcher(query or {"conid": "265598"})],
        json=SPEC_HOURS if answer is None else answer,
        **kw,
    )


@pytest.mark.parametrize(
    "now,state,needle",
    [
        (
            "2025-12-18T15:00:00+00:00",
            "liquid",
            "AAPL is open now: liquid (regular) hours until 16:00 US/Central (23:00 Europe/Berlin)",
        ),
        (
            "2025-12-18T12:00:00+00:00",
            "extended",
            "AAPL is open now: extended hours only, until 16:00 US/Central (23:00 Europe/Berlin)",
        ),
        (
            "2025-12-18T22:30:00+00:00",
            None,
            "AAPL is closed now; next session opens Tue 2025-12-23 17:00 US/Central "
            "(Wed 2025-12-24 00:00 Europe/Berlin)",
        ),
        (
            "2025-12-27T12:00:00+00:00",
            None,
            "AAPL is closed now; the schedule shows no later session",
        ),
    ],
)
def test_live_hours_pinned_with_open_now(ibgw_responses, cli, freeze, tz, now, state, needle):
    freeze(now)
    tz("Europe/Berlin")
    call = pin_hours(ibgw_responses)
    r = live(cli, "-o", "json", "calendar", "hours", "AAPL")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows[0] == {
        "date": "2025-12-18",
        "day": "Thu",
        "liquid_open": "08:30",
        "liquid_close": "16:00",
        "extended_open": "17:00 -1d",
        "extended_close": "16:00",
        "local_liquid_open": "15:30",
        "local_liquid_close": "23:00",
        "local_extended_open": "00:00",
        "local_extended_close": "23:00",
        "zone": "US/Central",
        "local_zone": "Europe/Berlin",
        "open_now": state,
    }
    assert rows[1]["liquid_close"] == "12:15" and rows[1]["local_liquid_close"] == "19:15"
    assert rows[2]["liquid_open"] is None and rows[2]["extended_open"] == "17:00 -1d"
    assert needle in r.stderr
    assert call.call_count == 1


def test_live_hours_table_csv_and_exchange(ibgw_responses, cli, freeze, tz):
    freeze("2025-12-18T15:00:00+00:00")
    tz("Asia/Tokyo")
    pin_hours(ibgw_responses, query={"conid": "265598", "exchange": "NASDAQ"})
    r = live(cli, "calendar", "hours", "AAPL", "--exchange", "nasdaq")
    assert r.exit_code == 0, r.stderr
    assert table(r.stdout)[1] == [
        "2025-12-18",
        "Thu",
        "08:30",
        "16:00",
        "17:00 -1d",
        "16:00",
        "23:30",
        "07:00 +1d",
        "08:00",
        "07:00 +1d",
    ]
    r = live(cli, "calendar", "hours", "AAPL", "--exchange", "NASDAQ", "-o", "csv")
    assert list(csv.reader(io.StringIO(r.stdout)))[3][:6] == [
        "2025-12-26",
        "Fri",
        "",
        "",
        "17:00 -1d",
        "16:00",
    ]


@pytest.mark.parametrize(
    "answer,code",
    [
        ({"exchange_time_zone": "US/Eastern", "schedules": {}}, 0),
        ({"exchange_time_zone": "US/Eastern", "schedules": []}, 4),
        ([], 4),
    ],
)
def test_live_hours_empty_or_malformed(ibgw_responses, cli, answer, code):
    pin_hours(ibgw_responses, answer=answer)
    r = live(cli, "calendar", "hours", "AAPL")
    assert r.exit_code == code, r.stderr
    if code == 0:
        assert "no trading days for AAPL" in r.stderr


def test_live_hours_string_and_millisecond_epochs(ibgw_responses, cli, freeze, tz):
    freeze("2026-04-02T14:00:00+00:00")
    answer = {
        "exchange_time_zone": "US/Eastern",
        "schedules": {
            "20260402": {  # S3 recording
                "liquid_hours": [{"opening": "1775136600", "closing": 1775160000000}],
                "extended_hours": [
                    {"cancel_daily_orders": True, "opening": 1775116800, "closing": 1775174400}
                ],
            }
        },
    }
    pin_hours(ibgw_responses, answer=answer)
    r = live(cli, "-o", "json", "calendar", "hours", "AAPL")
    row = json.loads(r.stdout)[0]
    assert (row["liquid_open"], row["liquid_close"], row["extended_close"]) == (
        "09:30",
        "16:00",
        "20:00",
    )
    assert (row["local_liquid_open"], row["local_extended_close"]) == ("13:30", "00:00 +1d")
    assert row["open_now"] == "liquid"


# events ---------------------------------------------------------------------------------
def events_body(start, end, kinds=None, symbol=None):
    wanted = set(kinds or reads.KINDS)
    filters = {flag: "true" if k in wanted else "false" for k, flag in reads.KIND_FILTERS.items()}
    filters.update(
        {
            "corporate_events": "false" if kinds else "true",
            "option_show_monthly": "false",
            "option_show_weekly": "false",
            "recently_held": "false",
            "country": "All",
            "limit": "250",
            "limit_region": "50",
        }
    )
    if symbol:
        filters["symbol"] = symbol
    return {"date": {"start": start, "end": end}, "filters": filters}


S6_EVENTS = {  # the [S6] IBLink swagger shape, with guessed contents
    "day_counts": [{"date": "20260401", "count": {"other": 2}}],
    "has_more": False,
    "events": [
        {
            "index_date_type": "event_date",
            "event_type": "Earnings",
            "data": {"symbol": "AAPL", "description": "Q2 earnings"},
            "conids": ["265598"],
            "index_date": "20260331T220000+0000",
            "source": "RSE",
            "event_key": "11662135",
            "tooltips": {},
            "status": "confirmed",
        },
        {
            "index_date_type": "event_date",
            "event_type": "economic_event",
            "data": {"title": "US CPI"},
            "conids": [],
            "index_date": "20260402T123000+0000",
            "source": "RSE",
            "event_key": "11662136",
            "tooltips": {},
        },
        {
            "event_type": "DivExDates",
            "data": {"ticker": "SPY", "name": "SPY ex-dividend"},
            "conids": [756733],
            "index_date": "20260403T000000+0200",
        },
        {"event_type": "earnings", "data": {}, "index_date": "20260410T000000+0000"},  # outside
        {"event_type": "earnings", "index_date": "not a date"},
        "junk",
    ],
}


def pin_events(rsps, request_body, **answer):
    return rsps.add(
        "POST",
        f"{BASE}/calendar/events",
        match=[matchers.json_params_matcher(request_body, strict_match=True)],
        **answer,
    )


def pin_metadata(rsps, **answer):
    return rsps.add(
        "GET",
        f"{BASE}/calendar/metadata",
        match=[matchers.query_param_matcher({})],
        **(answer or {"json": {"filters": []}}),
    )


NOT_FOUND = {
    "status": 404,
    "body": "<html><body><h1>Resource not found</h1></body></html>",
    "content_type": "text/html",
}


def test_live_events_pinned(ibgw_responses, cli, tz):
    tz("Europe/Berlin")
    meta = pin_metadata(ibgw_responses)
    call = pin_events(ibgw_responses, events_body("20260331-2200", "20260403-2200"), json=S6_EVENTS)
    args = ("calendar", "events", "--from", "2026-04-01", "--to", "2026-04-03")
    r = live(cli, "-o", "json", *args)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == [
        {
            "date": "2026-04-01",
            "time": None,
            "kind": "earnings",
            "symbol": "AAPL",
            "conid": 265598,
            "description": "Q2 earnings",
            "event_type": "Earnings",
            "status": "confirmed",
            "source": "RSE",
            "provenance": "undocumented",
            "endpoint": "POST /calendar/events",
        },
        {
            "date": "2026-04-02",
            "time": "14:30",
            "kind": "economic",
            "symbol": None,
            "conid": None,
            "description": "US CPI",
            "event_type": "economic_event",
            "status": None,
            "source": "RSE",
            "provenance": "undocumented",
            "endpoint": "POST /calendar/events",
        },
        {
            "date": "2026-04-03",
            "time": None,
            "kind": "dividends",
            "symbol": "SPY",
            "conid": 756733,
            "description": "SPY ex-dividend",
            "event_type": "DivExDates",
            "status": None,
            "source": None,
            "provenance": "undocumented",
            "endpoint": "POST /calendar/events",
        },
    ]
    urls = [(c.request.method, c.request.url.split("/v1/api")[1]) for c in ibgw_responses.calls]
    assert urls == [("GET", "/calendar/metadata"), ("POST", "/calendar/events")]
    r = live(cli, *args)
    assert table(r.stdout)[1] == ["2026-04-01", "earnings", "AAPL", "265598", "Q2 earnings"]
    assert "served by an undocumented endpoint (POST /calendar/events)" in r.stderr
    r = live(cli, "-o", "csv", *args)
    assert list(csv.reader(io.StringIO(r.stdout)))[2][:3] == ["2026-04-02", "14:30", "economic"]
    assert meta.call_count == 3 and call.call_count == 3


def test_live_events_kinds_symbol_and_new_york_body(ibgw_responses, cli, tz):
    tz("America/New_York")
    ibgw_responses.add(
        "GET",
        f"{BASE}/iserver/secdef/search",
        json=AAPL_SEARCH,
        match=[matchers.query_param_matcher({"symbol": "AAPL", "secType": "STK"})],
    )
    pin_metadata(ibgw_responses)
    body = events_body(
        "20260401-0400", "20260404-0400", kinds=["earnings", "dividends"], symbol="265598"
    )
    answer = {
        "events": [
            # New York midnight of Apr 1: the whole-day event shows without a time
            {
                "event_type": "earnings",
                "data": {"symbol": "AAPL"},
                "conids": ["265598"],
                "index_date": "20260401T040000+0000",
            },
            # 18:00 on Mar 31 in New York: before --from, dropped
            S6_EVENTS["events"][0],
            # SPY: another contract than --symbol, dropped; CPI: not a wanted kind, dropped
            S6_EVENTS["events"][2],
            S6_EVENTS["events"][1],
        ]
    }
    call = pin_events(ibgw_responses, body, json=answer)
    r = live(
        cli,
        "-o",
        "json",
        "calendar",
        "events",
        "--from",
        "2026-04-01",
        "--to",
        "2026-04-03",
        "--kind",
        "earnings",
        "--kind",
        "dividends",
        "--symbol",
        "AAPL",
    )
    assert r.exit_code == 0, r.stderr
    assert call.call_count == 1
    rows = json.loads(r.stdout)
    assert [(x["date"], x["time"], x["kind"], x["symbol"]) for x in rows] == [
        ("2026-04-01", None, "earnings", "AAPL")
    ]


@pytest.mark.parametrize(
    "first",
    [
        NOT_FOUND,
        {"status": 400, "json": {"error": "Bad Request"}},
        {"json": {"error": "invalid request"}},
    ],
)
def test_live_events_wrapped_body_variant(ibgw_responses, cli, tz, first):
    tz("UTC")
    pin_metadata(ibgw_responses)
    plain = events_body("20260401-0000", "20260402-0000")
    pin_events(ibgw_responses, plain, **first)
    wrapped = pin_events(
        ibgw_responses,
        {"calendar_request": {**plain, "account": ""}},
        json={
            "events": [
                {
                    "event_type": "earnings",
                    "data": {"symbol": "AAPL"},
                    "index_date": "20260401T000000+0000",
                }
            ],
            "has_more": True,
        },
    )
    r = live(cli, "-o", "json", "calendar", "events", "--from", "2026-04-01", "--to", "2026-04-01")
    assert r.exit_code == 0, r.stderr
    assert wrapped.call_count == 1
    assert [x["symbol"] for x in json.loads(r.stdout)] == ["AAPL"]
    assert "answered only the calendar_request-wrapped request" in r.stderr
    assert "more events than it returned" in r.stderr


def test_live_events_metadata_missing_still_tries_events(ibgw_responses, cli, tz):
    pin_metadata(ibgw_responses, **NOT_FOUND)
    call = pin_events(
        ibgw_responses,
        events_body("20260401-0000", "20260402-0000"),
        json={"day_counts": [], "has_more": False, "events": []},
    )
    r = live(cli, "calendar", "events", "--from", "2026-04-01", "--to", "2026-04-01")
    assert r.exit_code == 0, r.stderr
    assert call.call_count == 1
    assert "(no rows)" in r.stdout and "no events from 2026-04-01 to 2026-04-01" in r.stderr


def test_live_events_none_served_exit_5(ibgw_responses, cli, tz):
    pin_metadata(ibgw_responses, **NOT_FOUND)
    plain = events_body("20260401-0000", "20260402-0000")
    pin_events(ibgw_responses, plain, **NOT_FOUND)
    pin_events(
        ibgw_responses,
        {"calendar_request": {**plain, "account": ""}},
        status=400,
        json={"error": "Bad Request", "statusCode": 400},
    )
    r = live(cli, "-o", "json", "calendar", "events", "--from", "2026-04-01", "--to", "2026-04-01")
    assert r.exit_code == 5, r.stderr
    assert json.loads(r.stderr)["error"]["tried"] == [
        "GET /calendar/metadata (not-served)",
        "POST /calendar/events with date/filters body (not-served)",
        "POST /calendar/events with calendar_request body (rejected, 400)",
    ]
    assert len(ibgw_responses.calls) == 3


def test_live_events_session_errors_are_not_swallowed(ibgw_responses, cli, tz):
    pin_metadata(ibgw_responses, status=401)
    r = live(cli, "calendar", "events")
    assert r.exit_code == 3 and one_line(r.stderr)
    assert len(ibgw_responses.calls) == 1


def test_live_events_bad_input_sends_nothing(ibgw_responses, cli):
    r = live(cli, "calendar", "events", "--from", "2026-04-03", "--to", "2026-04-01")
    assert r.exit_code == 2 and one_line(r.stderr)
    assert len(ibgw_responses.calls) == 0
