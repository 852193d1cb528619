"""Fetch functions and schemas for ibgw-calendar (imported only when a read runs)."""

from __future__ import annotations

import datetime as dt
import re

from marshmallow import Schema, fields

from ibgw.errors import NotServed, Unavailable, UsageError
from ibgw.parse import integer
from ibgw.symbols import normalise_symbol

from . import CALENDAR_EVENTS, CALENDAR_METADATA, KINDS, SECDEF_SCHEDULE, TRADING_SCHEDULE
from .tz import UserZone, hhmm, zone

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
GENERIC_FIRST, GENERIC_LAST = "20000101", "20000107"  # IBKR: any Sat ... any Fri
MAX_RANGE_DAYS = 93
_HHMM = re.compile(r"([01][0-9]|2[0-4])([0-5][0-9])")
_YMD = re.compile(r"[0-9]{8}")


def _now() -> dt.datetime:
    """The current instant (aware, UTC); tests replace it to freeze time."""
    return dt.datetime.now(dt.UTC)


# -- schemas --------------------------------------------------------------------
class ScheduleSchema(Schema):
    date = fields.String()
    exchange = fields.String(allow_none=True)
    kind = fields.String()
    open = fields.String(allow_none=True)
    close = fields.String(allow_none=True)
    zone = fields.String(allow_none=True)
    local_open = fields.String(allow_none=True)
    local_close = fields.String(allow_none=True)
    local_zone = fields.String(allow_none=True)
    opens_at = fields.String(allow_none=True)
    closes_at = fields.String(allow_none=True)
    crosses_midnight = fields.Boolean()


class HoursSchema(Schema):
    date = fields.String()
    day = fields.String()
    liquid_open = fields.String(allow_none=True)
    liquid_close = fields.String(allow_none=True)
    extended_open = fields.String(allow_none=True)
    extended_close = fields.String(allow_none=True)
    local_liquid_open = fields.String(allow_none=True)
    local_liquid_close = fields.String(allow_none=True)
    local_extended_open = fields.String(allow_none=True)
    local_extended_close = fields.String(allow_none=True)
    zone = fields.String(allow_none=True)
    local_zone = fields.String(allow_none=True)
    open_now = fields.String(allow_none=True)


class EventSchema(Schema):
    date = fields.String()
    time = fields.String(allow_none=True)
    kind = fields.String()
    symbol = fields.String(allow_none=True)
    conid = fields.Integer(allow_none=True)
    description = fields.String(allow_none=True)
    event_type = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    source = fields.String(allow_none=True)


def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _upper(value: str | None) -> str | None:
    return value.strip().upper() if isinstance(value, str) and value.strip() else None


# -- schedule (GET /trsrv/secdef/schedule) ------------------------------------------------
def _hhmm_time(value) -> tuple[int, int] | None:
    m = _HHMM.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or (m.group(1) == "24" and m.group(2) != "00"):
        return None
    return int(m.group(1)), int(m.group(2))


def _at(day: dt.date, hm: tuple[int, int], tz) -> dt.datetime:
    hour, minute = hm
    extra = 0
    if hour == 24:
        hour, extra = 0, 1
    return dt.datetime.combine(day + dt.timedelta(days=extra), dt.time(hour, minute), tzinfo=tz)


def session_span(day: dt.date, opening: str, closing: str, tz):
    """``(open, close)`` aware datetimes of a session listed under ``day``, or None.

    A close not after the open means the session crosses midnight: it opened the
    evening before the date it is listed under (IBKR's trading-date convention)."""
    o, c = _hhmm_time(opening), _hhmm_time(closing)
    if o is None or c is None or o == c:
        return None
    start, end = _at(day, o, tz), _at(day, c, tz)
    if end <= start:
        start -= dt.timedelta(days=1)
    return start, end


def _next_weekday(today: dt.date, weekday: int) -> dt.date:
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7)


def _schedule_entries(sched: dict) -> list[tuple[str, dict]]:
    times = sched.get("tradingtimes")
    if times is None:
        times = sched.get("tradingTimes")
    out = []
    for t in times if isinstance(times, list) else []:
        if isinstance(t, dict):
            out.append(("liquid" if _upper(t.get("prop")) == "LIQUID" else "trading", t))
    for s in sched.get("sessions") if isinstance(sched.get("sessions"), list) else []:
        if isinstance(s, dict):
            out.append(("liquid" if _upper(s.get("prop")) == "LIQUID" else "regular", s))
    return out


def schedule_rows(
    data, user: UserZone, today: dt.date | None = None, only=None
) -> tuple[list, list]:
    """Rows and notes for a ``/trsrv/secdef/schedule`` answer."""
    if data is None:
        data = []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise Unavailable(
            "unexpected answer from /trsrv/secdef/schedule", reason="malformed-response"
        )
    rows, notes = [], []
    for v_index, venue in enumerate(data):
        if not isinstance(venue, dict):
            continue
        exchange = _text(venue.get("exchange"))
        if only and (exchange or "").upper() not in only:
            continue
        zone_name = _text(venue.get("timezone"))
        tz = zone(zone_name)
        if tz is None:
            notes.append(
                f"{exchange or 'an exchange'}: unknown time zone {zone_name or '(none)'}; "
                "times are exchange-local and not converted"
            )
        base = today or _now().astimezone(tz or dt.UTC).date()
        for sched in venue.get("schedules") if isinstance(venue.get("schedules"), list) else []:
            if not isinstance(sched, dict):
                continue
            raw = str(sched.get("tradingScheduleDate") or "")
            if not _YMD.fullmatch(raw):
                continue
            try:
                listed = dt.datetime.strptime(raw, "%Y%m%d").date()
            except ValueError:
                continue
            generic = GENERIC_FIRST <= raw <= GENERIC_LAST
            day = _next_weekday(base, listed.weekday()) if generic else listed
            label = DAY_NAMES[listed.weekday()] if generic else listed.isoformat()
            order = (
                v_index,
                0 if generic else 1,
                listed.weekday() if generic else listed.toordinal(),
            )
            common = {
                "date": label,
                "exchange": exchange,
                "zone": zone_name,
                "local_zone": user.label if tz is not None else None,
            }
            entries = _schedule_entries(sched)
            spans = []
            for kind, entry in entries:
                span = session_span(
                    day, entry.get("openingTime"), entry.get("closingTime"), tz or dt.UTC
                )
                if span is not None:
                    spans.append((kind, span))
            if not spans:
                rows.append(
                    (
                        order,
                        "",
                        {
                            **common,
                            "kind": "closed",
                            "open": None,
                            "close": None,
                            "local_open": None,
                            "local_close": None,
                            "opens_at": None,
                            "closes_at": None,
                            "crosses_midnight": False,
                        },
                    )
                )
                continue
            for kind, (start, end) in spans:
                row = {
                    **common,
                    "kind": kind,
                    "open": hhmm(start, day),
                    "close": hhmm(end, day),
                    "local_open": None,
                    "local_close": None,
                    "opens_at": start.isoformat() if tz else None,
                    "closes_at": end.isoformat() if tz else None,
                    "crosses_midnight": start.date() != end.date(),
                }
                if tz is not None:
                    row["local_open"] = hhmm(user.convert(start), day)
                    row["local_close"] = hhmm(user.convert(end), day)
                rows.append((order, start.isoformat(), row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows], notes


def fetch_schedule(ctx, symbol, asset_class="STK", exchange=None, exchange_filter=None):
    symbol = normalise_symbol(symbol)
    query = {
        "assetClass": asset_class or "STK",
        "symbol": symbol,
        "exchange": _upper(exchange),
        "exchangeFilter": _upper(exchange_filter),
    }
    data = ctx.call(SECDEF_SCHEDULE, query=query)
    only = set(_upper(exchange_filter).split(",")) if exchange_filter else None
    rows, notes = schedule_rows(data, UserZone(), only=only)
    for note in notes:
        ctx.note(note)
    if not rows:
        ctx.note(f"the gateway returned no trading schedule for {symbol} ({query['assetClass']})")
    return rows


# -- hours (GET /contract/trading-schedule) -----------------------------------------------
def _instant(value) -> dt.datetime | None:
    n = integer(value)
    if n is None or n <= 0:
        return None
    if n > 10**11:  # milliseconds, defensively (the spec says seconds)
        n //= 1000
    try:
        return dt.datetime.fromtimestamp(n, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _spans(items) -> list[tuple[dt.datetime, dt.datetime]]:
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            start, end = _instant(item.get("opening")), _instant(item.get("closing"))
            if start is not None and end is not None and end > start:
                out.append((start, end))
    return out


def hours_rows(data, user: UserZone, now: dt.datetime | None = None):
    """``(rows, status)`` for a ``/contract/trading-schedule`` answer; ``status`` is
    ``(state, until_or_next, zone_tz, zone_name)`` with state liquid/extended/closed."""
    if not isinstance(data, dict):
        raise Unavailable(
            "unexpected answer from /contract/trading-schedule", reason="malformed-response"
        )
    zone_name = _text(data.get("exchange_time_zone"))
    tz = zone(zone_name)
    schedules = data.get("schedules")
    if schedules is None:
        schedules = {}
    if not isinstance(schedules, dict):
        raise Unavailable(
            "unexpected answer from /contract/trading-schedule", reason="malformed-response"
        )
    now = now or _now()
    rows, liquid_all, extended_all = [], [], []
    ex_tz = tz or dt.UTC
    for key in sorted(schedules):
        entry = schedules[key]
        if not isinstance(key, str) or not _YMD.fullmatch(key) or not isinstance(entry, dict):
            continue
        try:
            day = dt.datetime.strptime(key, "%Y%m%d").date()
        except ValueError:
            continue
        liquid, extended = _spans(entry.get("liquid_hours")), _spans(entry.get("extended_hours"))
        liquid_all += liquid
        extended_all += extended
        for i in range(max(len(liquid), len(extended), 1)):
            row = {
                "date": day.isoformat(),
                "day": DAY_NAMES[day.weekday()],
                "zone": zone_name or "UTC",
                "local_zone": user.label,
                "open_now": None,
            }
            for name, spans in (("liquid", liquid), ("extended", extended)):
                span = spans[i] if i < len(spans) else None
                row[f"{name}_open"] = hhmm(span[0].astimezone(ex_tz), day) if span else None
                row[f"{name}_close"] = hhmm(span[1].astimezone(ex_tz), day) if span else None
                row[f"local_{name}_open"] = hhmm(user.convert(span[0]), day) if span else None
                row[f"local_{name}_close"] = hhmm(user.convert(span[1]), day) if span else None
                if span and span[0] <= now < span[1] and row["open_now"] != "liquid":
                    row["open_now"] = name
            rows.append(row)
    current_liquid = [s for s in liquid_all if s[0] <= now < s[1]]
    current_ext = [s for s in extended_all if s[0] <= now < s[1]]
    if current_liquid:
        status = ("liquid", max(s[1] for s in current_liquid))
    elif current_ext:
        status = ("extended", max(s[1] for s in current_ext))
    else:
        upcoming = [s[0] for s in liquid_all + extended_all if s[0] > now]
        status = ("closed", min(upcoming) if upcoming else None)
    return rows, (status[0], status[1], ex_tz, zone_name or "UTC")


def _when(moment: dt.datetime, tz, now: dt.datetime) -> str:
    local = moment.astimezone(tz) if tz is not None else moment
    same_day = local.date() == now.astimezone(local.tzinfo).date()
    return local.strftime("%H:%M") if same_day else local.strftime("%a %Y-%m-%d %H:%M")


def status_note(symbol: str, status, user: UserZone, now: dt.datetime | None = None) -> str:
    state, moment, ex_tz, zone_name = status
    now = now or _now()

    def both(m):
        local = user.convert(m)
        return f"{_when(m, ex_tz, now)} {zone_name} ({_when(local, None, now)} {user.label})"

    if state == "liquid":
        return f"{symbol} is open now: liquid (regular) hours until {both(moment)}"
    if state == "extended":
        return f"{symbol} is open now: extended hours only, until {both(moment)}"
    if moment is None:
        return f"{symbol} is closed now; the schedule shows no later session"
    return f"{symbol} is closed now; next session opens {both(moment)}"


def fetch_hours(ctx, symbol, exchange=None):
    contract = ctx.resolve_symbol(symbol)
    data = ctx.call(
        TRADING_SCHEDULE, query={"conid": contract["conid"], "exchange": _upper(exchange)}
    )
    user = UserZone()
    now = _now()
    rows, status = hours_rows(data, user, now)
    if status[2] is dt.UTC and status[3] != "UTC":
        ctx.note(f"unknown exchange time zone {status[3]}; exchange times are shown in UTC")
    if not rows:
        ctx.note(f"the gateway returned no trading days for {contract['symbol']}")
    ctx.note(status_note(contract["symbol"], status, user, now))
    return rows


# -- events (POST /calendar/events, undocumented) -----------------------------------------
KIND_FILTERS = {
    "earnings": "corporate_earnings",
    "dividends": "DivExDates",
    "economic": "economic_events",
    "ipo": "ipo",
    "splits": "splits",
}


def _date_param(name: str, value) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise UsageError(
            f"{name}: not a valid date (expected YYYY-MM-DD)", reason="invalid-date"
        ) from None


def stamp(user: UserZone, day: dt.date) -> str:
    """The UTC instant the user's ``day`` begins, as the calendar wants it: ``YYYYMMDD-HHMM``
    (the [S6] and [S11] samples, ``20180808-0400`` and ``20200208-0800``/``20200508-0700``,
    are local midnights in UTC)."""
    return user.midnight(day).astimezone(dt.UTC).strftime("%Y%m%d-%H%M")


def event_kind(event_type) -> str:
    text = (event_type or "").lower() if isinstance(event_type, str) else ""
    for needle, kind in (
        ("earn", "earnings"),
        ("div", "dividends"),
        ("econ", "economic"),
        ("ipo", "ipo"),
        ("split", "splits"),
    ):
        if needle in text:
            return kind
    return text or "other"


def _event_instant(value) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    for fmt in ("%Y%m%dT%H%M%S%z", "%Y%m%dT%H%M%z", "%Y-%m-%dT%H:%M:%S%z", "%Y%m%d"):
        try:
            moment = dt.datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return None


def event_row(e: dict, user: UserZone) -> dict | None:
    moment = _event_instant(e.get("index_date"))
    if moment is None:
        return None
    local = user.convert(moment)
    data = e.get("data") if isinstance(e.get("data"), dict) else {}
    conids = e.get("conids") if isinstance(e.get("conids"), list) else []
    description = None
    for key in ("description", "title", "name", "event_name", "company_name", "company"):
        description = _text(data.get(key))
        if description:
            break
    return {
        "date": local.date().isoformat(),
        "time": None if (local.hour, local.minute) == (0, 0) else local.strftime("%H:%M"),
        "kind": event_kind(e.get("event_type")),
        "symbol": _text(data.get("symbol")) or _text(data.get("ticker")),
        "conid": next((integer(c) for c in conids if integer(c)), None),
        "description": description,
        "event_type": _text(e.get("event_type")),
        "status": _text(e.get("status")),
        "source": _text(e.get("source")),
    }


def _events_of(data):
    """The event list of an answer, or None when it is not an event-calendar answer."""
    if isinstance(data, dict) and "events" not in data and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and "events" in inner:
            data = inner
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        return data
    return None


def fetch_events(ctx, to=None, kind=None, symbol=None, **extra):
    user = UserZone()
    start = _date_param("from", extra.get("from")) or user.convert(_now()).date()
    end = _date_param("to", to) or start + dt.timedelta(days=7)
    if start > end:
        raise UsageError(
            f"from: {start.isoformat()} is after --to {end.isoformat()}", reason="invalid-range"
        )
    if (end - start).days >= MAX_RANGE_DAYS:
        raise UsageError(
            f"the range may span at most {MAX_RANGE_DAYS} days", reason="invalid-range"
        )
    kinds = list(dict.fromkeys(kind or ()))
    wanted = set(kinds or KINDS)
    filters = {flag: "true" if k in wanted else "false" for k, flag in KIND_FILTERS.items()}
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
    body = {
        "date": {"start": stamp(user, start), "end": stamp(user, end + dt.timedelta(days=1))},
        "filters": filters,
    }
    log: list[str] = []
    contract: dict = {}

    def attempt(endpoint):
        if symbol and not contract:
            contract.update(ctx.resolve_symbol(symbol))
            filters["symbol"] = str(contract["conid"])
        try:
            ctx.call(CALENDAR_METADATA)
            log.append(f"{CALENDAR_METADATA.key} (ok)")
        except NotServed as exc:
            log.append(f"{CALENDAR_METADATA.key} ({exc.reason})")
        shapes = (
            ("date/filters body", body),
            ("calendar_request body", {"calendar_request": {**body, "account": ""}}),
        )
        for i, (shape, payload) in enumerate(shapes):
            try:
                data = ctx.call(endpoint, body=payload)
            except NotServed as exc:
                log.append(f"{endpoint.key} with {shape} ({exc.reason})")
                continue
            except UsageError as exc:
                if exc.reason != "gateway-rejected":
                    raise
                log.append(f"{endpoint.key} with {shape} (rejected, 400)")
                continue
            answer = _events_of(data)
            if answer is None:
                log.append(f"{endpoint.key} with {shape} (not an event-calendar answer)")
                continue
            if i:
                ctx.note("the event calendar answered only the calendar_request-wrapped request")
            return answer
        raise NotServed("the event calendar is not served", reason="not-served")

    try:
        answer = ctx.variants([CALENDAR_EVENTS], attempt)
    except NotServed as exc:
        tried = log or list(exc.tried)
        raise NotServed(
            f"this gateway build does not serve the event calendar (tried: {'; '.join(tried)})",
            reason=exc.reason,
            tried=tried,
            hint=exc.hint,
        ) from None
    rows = []
    for e in answer["events"]:
        row = event_row(e, user) if isinstance(e, dict) else None
        if row is None or not start.isoformat() <= row["date"] <= end.isoformat():
            continue
        if kinds and row["kind"] not in wanted:
            continue
        if (
            contract
            and row["conid"] != contract["conid"]
            and (row["symbol"] or "") != contract["symbol"]
        ):
            continue
        rows.append(row)
    rows.sort(key=lambda r: (r["date"], r["time"] or "", r["kind"], r["symbol"] or ""))
    if answer.get("has_more") is True:
        ctx.note(
            "the calendar has more events than it returned (limit 250); narrow --from/--to or --kind"
        )
    if not rows:
        ctx.note(f"no events from {start.isoformat()} to {end.isoformat()}")
    return rows
