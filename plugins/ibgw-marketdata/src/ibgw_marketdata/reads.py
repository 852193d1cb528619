"""Fetch functions and schemas of ibgw-marketdata (imported when a read runs).

Quotes come from ``/iserver/marketdata/snapshot`` (reference §5.1): values are
strings keyed by field id (``"31": "168.42"``, ``"88": "1,300"``, ``"83": "0.54%"``,
``"31": "C168.42"`` for a prior close). The first request for a conid only opens its
stream (pre-flight: ``conid``/``conidEx`` and nothing else); the read asks again,
every POLL_INTERVAL seconds on a live gateway, until each conid has a price or
says it will not get one (``6509`` starting with ``N``), or ``wait`` seconds pass.

History comes from ``/iserver/marketdata/history`` (reference §5.2): bars
``{"o","h","l","c","v","t"}`` with ``t`` in epoch milliseconds.
"""

from __future__ import annotations

import datetime
import math
import re
import threading
import time

from marshmallow import Schema, fields

from ibgw import Result
from ibgw.contracts import join_limited, poll_interval, poll_snapshot, text_value
from ibgw.errors import NotServed, Unavailable, UsageError
from ibgw.parse import integer, number, price_flag
from ibgw.runner import not_entitled

from . import BARS, HISTORY, SECDEF, SNAPSHOT

MAX_SYMBOLS = 500
CHUNK = 100  # IBKR: at most 100 conids per snapshot request
WORKERS = 4  # calls in flight (the pacer keeps IBKR's rate)
POLL_INTERVAL = 0.5  # seconds between snapshot polls on a live gateway (IBKR: ~500 ms)

# field id -> record key (reference §5.1 and the spec's mdFields)
PRICES = {
    "31": "last",
    "84": "bid",
    "86": "ask",
    "82": "change",
    "83": "change_pct",
    "7295": "open",
    "70": "high",
    "71": "low",
    "7296": "close",
    "7741": "prior_close",
    "7635": "mark",
}
SIZES = {"88": "bid_size", "85": "ask_size", "7059": "last_size"}
IDENTITY = {"55": "symbol", "7051": "company", "7221": "exchange", "6070": "sec_type"}
VOLUME, VOLUME_LONG, AVAILABILITY = "87", "7762", "6509"
FIELDS = ",".join([*PRICES, *SIZES, VOLUME, VOLUME_LONG, AVAILABILITY, *IDENTITY])

# 6509, first character (the spec's mdFields): what a user may rely on
AVAILABILITY_CODES = {
    "R": "real-time",
    "D": "delayed",
    "Z": "frozen",
    "Y": "delayed-frozen",
    "N": "not entitled",
    "O": "not entitled",  # market-data API acknowledgement not signed (reference §5.1)
    "i": "incomplete",
    "v": "real-time",  # VDR exempt (Vendor Display Rule 603c): real time
}
NO_DATA = "no data"
NOT_ENTITLED = "not entitled"


class QuoteSchema(Schema):
    symbol = fields.String(allow_none=True)
    conid = fields.Integer()
    company = fields.String(allow_none=True)
    exchange = fields.String(allow_none=True)
    sec_type = fields.String(allow_none=True)
    last = fields.Float(allow_none=True)
    bid = fields.Float(allow_none=True)
    ask = fields.Float(allow_none=True)
    bid_size = fields.Integer(allow_none=True)
    ask_size = fields.Integer(allow_none=True)
    last_size = fields.Integer(allow_none=True)
    change = fields.Float(allow_none=True)
    change_pct = fields.Float(allow_none=True)
    volume = fields.Integer(allow_none=True)
    open = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    low = fields.Float(allow_none=True)
    close = fields.Float(allow_none=True)
    prior_close = fields.Float(allow_none=True)
    mark = fields.Float(allow_none=True)
    last_is = fields.String(allow_none=True)  # "prior-close" or "halted" (31 prefixed C/H)
    availability = fields.String(allow_none=True)
    availability_code = fields.String(allow_none=True)
    updated = fields.String(allow_none=True)  # ISO 8601 UTC of the snapshot


class BarSchema(Schema):
    time = fields.String()
    time_utc = fields.String()
    open = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    low = fields.Float(allow_none=True)
    close = fields.Float(allow_none=True)
    volume = fields.Float(allow_none=True)


# -- symbols ------------------------------------------------------------------------------
UNKNOWN_HINT = (
    "Check the ticker, or give the conid (all digits); 'ibgw contracts search TEXT' finds conids."
)
SYMBOL_CACHE_AGE = 24 * 3600.0  # a ticker's conid changes rarely; searches cost 1 call each


def is_conid(text: str) -> bool:
    return text.isdigit() and int(text) > 0


def contract_for(ctx, text: str, sec_type: str, exchange: str | None) -> dict:
    """The core resolver's contract for a ticker, remembered for a day in the state
    dir (per backend, gateway and scenario), so a repeated quote of 200 tickers does
    not spend 200 of IBKR's 10 calls per second on searches again."""
    key = ctx.cache_key("marketdata-symbol", sec_type, (exchange or "").upper(), text)
    hit = ctx.cache.get(key, max_age=SYMBOL_CACHE_AGE)
    if hit is not None and isinstance(hit[0], dict) and integer(hit[0].get("conid")):
        return hit[0]
    try:
        contract = ctx.resolve_symbol(text, sec_type=sec_type, exchange=exchange)
    except UsageError as exc:
        if exc.reason != "unknown-symbol":
            raise
        raise UsageError(exc.message, reason=exc.reason, hint=UNKNOWN_HINT) from None
    keep = {k: contract.get(k) for k in ("conid", "symbol", "exchange", "company")}
    try:
        ctx.cache.set(key, keep)
    except OSError:
        pass  # an unwritable state dir costs a search next time, nothing else
    return keep


def _resolve_all(ctx, symbols, sec_type, exchange, progress, lock):
    """``{input: contract}`` for the tickers (conids pass through) and the tickers
    the gateway does not know."""
    out: dict[str, dict] = {}
    unknown: list[str] = []

    def one(text):
        try:
            return text, contract_for(ctx, text, sec_type, exchange), None
        except UsageError as exc:
            if exc.reason in ("unknown-symbol", "unknown-exchange", "invalid-symbol"):
                return text, None, exc
            raise
        finally:
            with lock:
                progress.advance()

    tickers = [s for s in symbols if not is_conid(s)]
    conids = [int(s) for s in symbols if is_conid(s)]
    defs = _definitions(ctx, conids)
    for s in symbols:
        if is_conid(s):
            d = defs.get(int(s), {})
            out[s] = {"conid": int(s), "symbol": d.get("symbol"), "exchange": d.get("exchange")}
    # IBKR: a derivative's snapshot needs /iserver/secdef/search of its underlying
    # first in the session (the resolver's search is that call)
    underlyings = sorted(
        {d["symbol"] for d in defs.values() if d.get("derivative") and d.get("symbol")}
    )
    for symbol in underlyings:
        try:
            ctx.resolve_symbol(symbol)
        except UsageError:
            pass  # the snapshot says what it can
    for text, contract, exc in ctx.parallel(one, tickers, workers=WORKERS):
        if contract is None:
            unknown.append(text)
            if len(tickers) == 1 and not out:
                raise exc
        else:
            out[text] = contract
    return out, unknown


DERIVATIVES = ("OPT", "FOP", "FUT", "WAR", "IOPT", "CFD")


def _definitions(ctx, conids: list[int]) -> dict[int, dict]:
    """symbol, listing exchange and whether it is a derivative, per conid, from
    /trsrv/secdef (at most 200 conids a call); empty where the gateway says nothing."""
    out: dict[int, dict] = {}
    for i in range(0, len(conids), 200):
        part = conids[i : i + 200]
        try:
            data = ctx.call(SECDEF, query={"conids": ",".join(map(str, part))})
        except (NotServed, UsageError):
            return out
        entries = data.get("secdef") if isinstance(data, dict) else None
        for e in entries if isinstance(entries, list) else []:
            conid = integer(e.get("conid")) if isinstance(e, dict) else None
            if conid in part:
                kind = (text_value(e.get("assetClass")) or "").upper()
                out[conid] = {
                    "symbol": text_value(e.get("ticker")),
                    "exchange": text_value(e.get("listingExchange")),
                    "derivative": kind in DERIVATIVES or (integer(e.get("undConid")) or 0) > 0,
                }
    return out


# -- the snapshot -------------------------------------------------------------------------
def availability(code) -> str | None:
    text = text_value(code)
    if not text:
        return None
    return AVAILABILITY_CODES.get(text[0], f"unknown ({text[:3]})")


def _has_price(v: dict) -> bool:
    return any(v.get(f) not in (None, "") for f in ("31", "84", "86", "7295", "7741"))


def _settled(v: dict) -> bool:
    """Nothing more to wait for: prices arrived, or the gateway says none will."""
    return _has_price(v) or availability(v.get(AVAILABILITY)) == NOT_ENTITLED


def _poll_chunk(ctx, conids: list[int], deadline: float, interval: float) -> dict[int, dict]:
    return poll_snapshot(
        ctx, conids, FIELDS, _settled, interval=interval, deadline=deadline, keep=("_updated",)
    )


def _iso_ms(ms) -> str | None:
    n = number(ms)
    if n is None or n <= 0:
        return None
    try:
        t = datetime.datetime.fromtimestamp(n / 1000.0, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _row(conid: int, v: dict, contract: dict | None) -> dict:
    contract = contract or {}
    row: dict = {"conid": conid}
    for f, name in PRICES.items():
        row[name] = number(v.get(f))
    for f, name in SIZES.items():
        row[name] = integer(v.get(f))
    volume = integer(v.get(VOLUME_LONG))
    row["volume"] = volume if volume is not None else integer(v.get(VOLUME))
    row["symbol"] = text_value(v.get("55")) or contract.get("symbol")
    row["company"] = text_value(v.get("7051")) or contract.get("company") or None
    row["exchange"] = text_value(v.get("7221")) or contract.get("exchange") or None
    row["sec_type"] = text_value(v.get("6070"))
    row["last_is"] = price_flag(v.get("31"))
    code = text_value(v.get(AVAILABILITY))
    row["availability_code"] = code
    if _has_price(v):
        row["availability"] = availability(code) or "unknown"
    elif availability(code) == NOT_ENTITLED:
        row["availability"] = NOT_ENTITLED
    else:
        row["availability"] = NO_DATA
    row["updated"] = _iso_ms(v.get("_updated"))
    return row


def _count(n: int, what: str = "quote") -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def fetch_quote(ctx, symbols, sec_type="STK", exchange=None, wait=5.0):
    wanted = list(dict.fromkeys(s.strip().upper() for s in symbols or [] if s.strip()))
    if not wanted:
        raise UsageError("give one or more symbols or conids", reason="invalid-parameter")
    if len(wanted) > MAX_SYMBOLS:
        raise UsageError(f"at most {MAX_SYMBOLS} symbols per quote", reason="too-many-symbols")
    tickers = [s for s in wanted if not is_conid(s)]
    lock = threading.Lock()
    n_chunks_max = math.ceil(len(wanted) / CHUNK)
    progress = ctx.progress(len(tickers) + n_chunks_max, "quote")
    try:
        contracts, unknown = _resolve_all(ctx, wanted, sec_type, exchange, progress, lock)
        by_conid: dict[int, dict] = {}
        order: list[int] = []
        for s in wanted:
            c = contracts.get(s)
            if c is None:
                continue
            conid = int(c["conid"])
            if conid not in by_conid:
                by_conid[conid] = c
                order.append(conid)
        if not order:
            raise UsageError(
                f"unknown symbols: {join_limited(unknown)}",
                reason="unknown-symbol",
                hint=UNKNOWN_HINT,
            )
        chunks = [order[i : i + CHUNK] for i in range(0, len(order), CHUNK)]
        with lock:  # fewer chunks than planned (duplicates, unknown symbols)
            progress.advance(n_chunks_max - len(chunks))
        interval = poll_interval(ctx, POLL_INTERVAL)
        deadline = time.monotonic() + float(wait)

        def chunk(ids):
            try:
                return _poll_chunk(ctx, ids, deadline, interval)
            finally:
                with lock:
                    progress.advance()

        values: dict[int, dict] = {}
        for part in ctx.parallel(chunk, chunks, workers=WORKERS):
            values.update(part)
    finally:
        progress.close()

    rows = [_row(c, values.get(c, {}), by_conid.get(c)) for c in order]
    notes = []
    if unknown:
        notes.append(f"unknown symbols left out: {join_limited(unknown)}")
    states = [r["availability"] for r in rows]
    if all(s == NOT_ENTITLED for s in states):
        raise not_entitled(
            f"market data for {_count(len(rows))} (IBKR says: not subscribed)",
            hint="Subscribe to the exchange's market data in Client Portal (Settings, "
            "Market Data Subscriptions); delayed data needs no subscription for most US "
            "exchanges.",
        )
    if all(s == NO_DATA for s in states):
        raise NotServed(
            f"no market data arrived for {_count(len(rows))} within {wait:g} s",
            reason="no-market-data",
            hint="The stream may still be opening, or the contract has no market data "
            "for this login: retry, or raise --wait.",
        )
    for state, text in (
        ("delayed", "delayed 15-20 minutes (no real-time subscription)"),
        ("delayed-frozen", "the last close, delayed (market closed, no real-time subscription)"),
        ("frozen", "the last close (market closed)"),
        (NOT_ENTITLED, "not entitled: no market-data subscription"),
        ("incomplete", "incomplete (IBKR marks the data as partial)"),
        (NO_DATA, f"no data within {wait:g} s (stream still opening?): retry or raise --wait"),
    ):
        n = states.count(state)
        if n:
            notes.append(f"{_count(n)} of {len(rows)}: {text}")
    flags = [r["last_is"] for r in rows]
    if "prior-close" in flags:
        notes.append(f"last is the prior close for {_count(flags.count('prior-close'))}")
    if "halted" in flags:
        notes.append(f"trading is halted for {_count(flags.count('halted'), 'symbol')}")
    return Result(rows, provenance="documented", variant=SNAPSHOT.key, notes=notes)


# -- history ------------------------------------------------------------------------------
PERIOD_RE = re.compile(r"([0-9]+)(min|h|d|w|m|y)")
PERIOD_LIMITS = {"min": 30, "h": 8, "d": 1000, "w": 792, "m": 182, "y": 15}
PERIODS_TEXT = "1-30min, 1-8h, 1-1000d, 1-792w, 1-182m (months), 1-15y"
BAR_MINUTES = {
    "1min": 1,
    "2min": 2,
    "3min": 3,
    "5min": 5,
    "10min": 10,
    "15min": 15,
    "30min": 30,
    "1h": 60,
    "2h": 120,
    "3h": 180,
    "4h": 240,
    "8h": 480,
    "1d": 390,
    "1w": 1950,
    "1m": 8190,
}
# trading minutes per period unit (regular hours of a US stock), for the 1000-bar check
UNIT_MINUTES = {"min": 1, "h": 60, "d": 390, "w": 1950, "m": 8190, "y": 98280}
MAX_POINTS = 1000

# listing exchange -> IANA time zone (IBKR's exchange codes); history bars carry
# epoch milliseconds, shown in the exchange's zone
EXCHANGE_ZONES = {
    **dict.fromkeys(
        (
            "NASDAQ",
            "NYSE",
            "ARCA",
            "NYSE ARCA",
            "AMEX",
            "BATS",
            "IEX",
            "PINK",
            "ISLAND",
            "CBOE",
            "SMART",
            "NYSENAT",
            "BEX",
            "EDGX",
            "MEMX",
        ),
        "America/New_York",
    ),
    **dict.fromkeys(("CME", "CBOT", "GLOBEX", "ECBOT"), "America/Chicago"),
    **dict.fromkeys(("NYMEX", "COMEX", "NYBOT"), "America/New_York"),
    **dict.fromkeys(("TSE", "VENTURE", "TSX"), "America/Toronto"),
    "MEXI": "America/Mexico_City",
    **dict.fromkeys(("LSE", "LSEETF", "ICEEU"), "Europe/London"),
    **dict.fromkeys(("FWB", "IBIS", "XETRA", "SWB", "GETTEX", "TGATE", "EUREX"), "Europe/Berlin"),
    **dict.fromkeys(("SBF", "MATIF", "MONEP"), "Europe/Paris"),
    "AEB": "Europe/Amsterdam",
    "ENEXT.BE": "Europe/Brussels",
    **dict.fromkeys(("EBS", "SWX", "VIRTX"), "Europe/Zurich"),
    "BVME": "Europe/Rome",
    "BM": "Europe/Madrid",
    "SFB": "Europe/Stockholm",
    "SEHK": "Asia/Hong_Kong",
    "TSEJ": "Asia/Tokyo",
    "ASX": "Australia/Sydney",
    "SGX": "Asia/Singapore",
    "NSE": "Asia/Kolkata",
    "KSE": "Asia/Seoul",
}


def parse_period(value) -> str:
    text = str(value or "").strip().lower()
    m = PERIOD_RE.fullmatch(text)
    if m is None or not 1 <= int(m.group(1)) <= PERIOD_LIMITS[m.group(2)]:
        raise UsageError(
            f"period {str(value)[:16]!r}: IBKR allows {PERIODS_TEXT} (e.g. 1d, 1w, 1m, 1y)",
            reason="invalid-period",
        )
    return f"{int(m.group(1))}{m.group(2)}"


def parse_bar(value) -> str:
    text = str(value or "").strip().lower()
    if text not in BARS:
        raise UsageError(
            f"bar {str(value)[:16]!r}: IBKR allows {', '.join(BARS)}", reason="invalid-bar"
        )
    return text


def _zone(exchange: str | None):
    from zoneinfo import ZoneInfo

    name = EXCHANGE_ZONES.get((exchange or "").strip().upper())
    return (ZoneInfo(name), name) if name else (datetime.UTC, None)


def _listing_exchange(ctx, conid: int) -> tuple[str | None, str | None]:
    """(symbol, listing exchange) of a conid from /trsrv/secdef, or Nones."""
    try:
        data = ctx.call(SECDEF, query={"conids": str(conid)})
    except (NotServed, UsageError):
        return None, None
    entries = data.get("secdef") if isinstance(data, dict) else None
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and integer(e.get("conid")) == conid:
            return text_value(e.get("ticker")), text_value(e.get("listingExchange"))
    return None, None


def _iso(t: datetime.datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def fetch_history(
    ctx, symbol, period="1w", bar="1d", outside_rth=None, sec_type="STK", exchange=None
):
    period = parse_period(period)
    bar = parse_bar(bar)
    m = PERIOD_RE.fullmatch(period)
    asked = int(m.group(1)) * UNIT_MINUTES[m.group(2)] * (2.5 if outside_rth else 1)
    estimate = asked / BAR_MINUTES[bar]
    text = symbol.strip().upper()
    notes = []
    if is_conid(text):
        conid = int(text)
        label, listing = _listing_exchange(ctx, conid)
        label = label or str(conid)
    else:
        contract = contract_for(ctx, text, sec_type, exchange)
        conid, label, listing = int(contract["conid"]), contract["symbol"], contract["exchange"]
    query = {"conid": conid, "period": period, "bar": bar}
    if outside_rth is not None:
        query["outsideRth"] = bool(outside_rth)
    try:
        data = ctx.call(HISTORY, query=query)
    except UsageError as exc:
        if exc.reason != "gateway-rejected":
            raise
        raise UsageError(
            f"IBKR has no {period} of {bar} bars for {label}",
            reason="no-history",
            hint="Check the symbol or conid; some contracts have no chart data.",
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("data", []), list):
        raise Unavailable(
            "unexpected answer from /iserver/marketdata/history", reason="malformed-response"
        )
    zone, zone_name = _zone(listing)
    if zone_name is None:
        notes.append(
            f"time zone of exchange {listing or 'unknown'} not known: 'time' is UTC as well"
        )
    rows = []
    for b in data.get("data") or []:
        if not isinstance(b, dict):
            continue
        ms = number(b.get("t"))
        if ms is None:
            continue
        try:
            t = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.UTC)
        except (OverflowError, OSError, ValueError):
            continue
        rows.append(
            {
                "time": _iso(t.astimezone(zone)),
                "time_utc": _iso(t),
                "open": number(b.get("o")),
                "high": number(b.get("h")),
                "low": number(b.get("l")),
                "close": number(b.get("c")),
                "volume": number(b.get("v")),
            }
        )
    rows.sort(key=lambda r: r["time_utc"])
    where = f"{label} ({conid}{', ' + listing if listing else ''}{', ' + zone_name if zone_name else ''})"
    notes.insert(0, f"{where}: {len(rows)} bars of {bar} over {period}")
    if not rows:
        notes.append("no bars in this period (market closed, or no trades)")
    if estimate > MAX_POINTS and len(rows) >= MAX_POINTS * 0.9:
        notes.append(
            f"IBKR sends at most {MAX_POINTS} bars: the oldest of about {int(estimate):,} "
            "are left out (use a larger --bar or a shorter --period)"
        )
    delay = number(data.get("mktDataDelay"))
    if delay and delay > 0:
        notes.append(f"IBKR marks these bars as delayed ({int(delay / 60000) or 1} min)")
    return Result(rows, provenance="documented", variant=HISTORY.key, notes=notes)
