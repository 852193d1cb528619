"""Fetch functions and schemas of the option reads (imported when a read runs).

Request shapes follow the endpoint reference §4: ``/iserver/secdef/strikes`` with
``conid``, ``sectype=OPT``, ``month`` (MMMYY) and ``exchange``;
``/iserver/secdef/info`` with the same plus ``strike`` and ``right``, answering an
array (one contract per expiry of the month). ``ctx.resolve_symbol`` has called
``/iserver/secdef/search`` first, which IBKR requires before either.
"""

from __future__ import annotations

import re
import threading
import time

from marshmallow import Schema, fields

from ibgw import Result
from ibgw.cache import age_text
from ibgw.contracts import (
    expiry_month,
    month_key,
    parse_month,
    parse_right,
    poll_interval,
    strike_text,
)
from ibgw.contracts import join_limited as _join
from ibgw.contracts import strike_list as _strike_list
from ibgw.contracts import text_value as _text
from ibgw.errors import Unavailable, UsageError
from ibgw.parse import integer, number

from . import INFO, SNAPSHOT, STRIKES

CACHE_MAX_AGE = 12 * 3600.0  # contract definitions: half a day
WORKERS = 4  # info look-ups in flight; the core pacer keeps the request rate
PRICE_POLLS = 5  # snapshot polls for the underlying's price (the first is a pre-flight)
PRICE_INTERVAL = 0.3  # seconds between polls on a live gateway


# -- schemas ------------------------------------------------------------------------------
class ExpirationSchema(Schema):
    month = fields.String()
    expiry_month = fields.String()
    exchanges = fields.String(allow_none=True)


class StrikeSchema(Schema):
    strike = fields.Float()
    call = fields.Boolean()
    put = fields.Boolean()


class ContractSchema(Schema):
    conid = fields.Integer()
    symbol = fields.String(allow_none=True)
    expiry = fields.String(allow_none=True)
    strike = fields.Float(allow_none=True)
    right = fields.String(allow_none=True)
    trading_class = fields.String(allow_none=True)
    multiplier = fields.Integer(allow_none=True)
    exchange = fields.String(allow_none=True)
    description = fields.String(allow_none=True)


# -- input --------------------------------------------------------------------------------
def parse_exchange(value: str | None) -> str:
    text = str(value or "SMART").strip().upper()
    if not re.fullmatch(r"[A-Z0-9]{1,16}", text):
        raise UsageError(
            "exchange: expected an exchange code such as SMART", reason="invalid-exchange"
        )
    return text


# -- shared steps -------------------------------------------------------------------------
def underlying(ctx, symbol: str, sec_type: str = "STK") -> dict:
    """The underlying's contract from the search (``sec_type`` STK, IND or BOND; a
    STK search that finds nothing is retried as IND); a usage error when it has no
    options."""
    und = ctx.resolve_symbol(symbol, sec_type=sec_type or "STK")
    if not und.get("months"):
        raise UsageError(f"{und['symbol']} has no listed options", reason="no-options")
    return und


def listed_months(und: dict) -> list[str]:
    return sorted(dict.fromkeys(m.upper() for m in und["months"]), key=month_key)


def choose_month(ctx, und: dict, month: str | None) -> str:
    months = listed_months(und)
    if month is None:
        chosen = months[0]
        ctx.note(f"month {chosen} (the nearest listed; choose another with --month)")
        return chosen
    month = parse_month(month)
    if month not in months:
        raise UsageError(
            f"month {month} is not listed for {und['symbol']} options (listed: {_join(months)})",
            reason="month-not-listed",
        )
    return month


def check_exchange(und: dict, exchange: str) -> None:
    listed = [x.upper() for x in und.get("option_exchanges") or []]
    if listed and exchange not in listed:
        raise UsageError(
            f"{und['symbol']} options are not listed on {exchange} (listed: {_join(listed)})",
            reason="exchange-not-listed",
        )


def fetch_strike_lists(
    ctx, und: dict, month: str, exchange: str
) -> tuple[list[float], list[float]]:
    """``(calls, puts)``: the strikes ``/iserver/secdef/strikes`` lists (numbers or strings)."""
    data = ctx.call(
        STRIKES,
        query={"conid": und["conid"], "sectype": "OPT", "month": month, "exchange": exchange},
    )
    if data is None:
        return [], []
    if not isinstance(data, dict):
        raise Unavailable(
            "unexpected answer from /iserver/secdef/strikes", reason="malformed-response"
        )
    return _strike_list(data.get("call")), _strike_list(data.get("put"))


def _expiry(value) -> str | None:
    text = _text(value)
    if text and re.fullmatch(r"[0-9]{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None


def contract_row(entry: dict, und: dict, strike: float, right: str, exchange: str) -> dict | None:
    """One chain row from an ``/iserver/secdef/info`` entry (``None`` without a conid)."""
    conid = integer(entry.get("conid"))
    if conid is None or conid <= 0:
        return None
    got_right = (_text(entry.get("right")) or right).upper()[:1]
    got_strike = number(entry.get("strike"))
    return {
        "conid": conid,
        "symbol": _text(entry.get("symbol")) or _text(entry.get("ticker")) or und["symbol"],
        "expiry": _expiry(entry.get("maturityDate")),
        "strike": got_strike if got_strike else strike,
        "right": got_right if got_right in ("C", "P") else right,
        "trading_class": _text(entry.get("tradingClass")),
        "multiplier": integer(entry.get("multiplier")),
        "exchange": _text(entry.get("exchange")) or exchange,
        "description": _text(entry.get("desc2")),
    }


def fetch_contracts(
    ctx, und: dict, month: str, strike: float, right: str, exchange: str
) -> list[dict]:
    data = ctx.call(
        INFO,
        query={
            "conid": und["conid"],
            "sectype": "OPT",
            "month": month,
            "strike": strike_text(strike),
            "right": right,
            "exchange": exchange,
        },
    )
    if data is None:
        return []
    if isinstance(data, dict):  # one contract instead of an array
        data = [data]
    if not isinstance(data, list):
        raise Unavailable(
            "unexpected answer from /iserver/secdef/info", reason="malformed-response"
        )
    rows = []
    for entry in data:
        if isinstance(entry, dict):
            row = contract_row(entry, und, strike, right, exchange)
            if row is not None:
                rows.append(row)
    return rows


def underlying_price(ctx, und: dict) -> float | None:
    """The underlying's last price (or bid/ask mid) from a snapshot, re-polling past the
    pre-flight answer: at most PRICE_POLLS calls, PRICE_INTERVAL apart."""
    conid = und["conid"]
    interval = poll_interval(ctx, PRICE_INTERVAL)
    for poll in range(PRICE_POLLS):
        if poll:
            time.sleep(interval)
        data = ctx.call(SNAPSHOT, query={"conids": str(conid), "fields": "31,84,86"})
        for entry in data if isinstance(data, list) else []:
            if not isinstance(entry, dict) or integer(entry.get("conid")) != conid:
                continue
            last = number(entry.get("31"))
            if last and last > 0:
                return last
            bid, ask = number(entry.get("84")), number(entry.get("86"))
            if bid and ask and bid > 0 and ask > 0:
                return (bid + ask) / 2
    return None


# -- reads --------------------------------------------------------------------------------
def fetch_expirations(ctx, symbol, exchange=None, sec_type="STK"):
    und = underlying(ctx, symbol, sec_type)
    exchanges = [x.upper() for x in und.get("option_exchanges") or []]
    if exchange is not None:
        wanted = parse_exchange(exchange)
        check_exchange(und, wanted)
        exchanges = [wanted]
    return [
        {"month": m, "expiry_month": expiry_month(m), "exchanges": ",".join(exchanges) or None}
        for m in listed_months(und)
    ]


def fetch_strikes(ctx, symbol, month=None, exchange="SMART", sec_type="STK"):
    exchange = parse_exchange(exchange)
    if month is not None:
        parse_month(month)
    und = underlying(ctx, symbol, sec_type)
    month = choose_month(ctx, und, month)
    check_exchange(und, exchange)
    calls, puts = fetch_strike_lists(ctx, und, month, exchange)
    call_set, put_set = set(calls), set(puts)
    rows = [
        {"strike": k, "call": k in call_set, "put": k in put_set}
        for k in sorted(call_set | put_set)
    ]
    notes = []
    if not rows:
        notes.append(f"no strikes listed for {und['symbol']} {month} on {exchange}")
    return Result(rows, notes=notes)


class _Progress:
    """``ctx.progress`` made safe to advance from worker threads."""

    def __init__(self, bar):
        self.bar, self.lock = bar, threading.Lock()

    def advance(self):
        with self.lock:
            self.bar.advance()


def fetch_chain(
    ctx,
    symbol,
    month=None,
    right=None,
    strikes_around=None,
    min_strike=None,
    max_strike=None,
    exchange="SMART",
    sec_type="STK",
):
    # input first: nothing is sent for a request that cannot be right
    rights = parse_right(right)
    exchange = parse_exchange(exchange)
    if month is not None:
        parse_month(month)
    if strikes_around is not None and (min_strike is not None or max_strike is not None):
        raise UsageError(
            "give --strikes-around or --min-strike/--max-strike, not both",
            reason="invalid-parameter",
        )
    if min_strike is not None and max_strike is not None and min_strike > max_strike:
        raise UsageError("min-strike is above max-strike", reason="invalid-parameter")

    und = underlying(ctx, symbol, sec_type)
    month = choose_month(ctx, und, month)
    check_exchange(und, exchange)
    calls, puts = fetch_strike_lists(ctx, und, month, exchange)
    listed = {"C": set(calls), "P": set(puts)}
    strikes = sorted(set().union(*(listed[r] for r in rights)))
    label = f"{und['symbol']} {month}"
    if not strikes:
        return Result([], notes=[f"no strikes listed for {label} on {exchange}"])

    if min_strike is not None or max_strike is not None:
        low = min_strike if min_strike is not None else 0.0
        high = max_strike if max_strike is not None else float("inf")
        chosen = [k for k in strikes if low - 1e-9 <= k <= high + 1e-9]
        if not chosen:
            return Result(
                [],
                notes=[
                    f"no strikes of {label} in that range (listed: "
                    f"{strike_text(strikes[0])} to {strike_text(strikes[-1])})"
                ],
            )
    elif strikes_around is not None:
        price = underlying_price(ctx, und)
        if price is None:
            price = strikes[len(strikes) // 2]
            ctx.note(
                f"no price for {und['symbol']} after {PRICE_POLLS} snapshots; "
                f"centred on the middle strike {strike_text(price)}"
            )
        below = [k for k in strikes if k < price][-strikes_around:]
        above = [k for k in strikes if k >= price][:strikes_around]
        chosen = below + above
    else:
        chosen = strikes

    pairs = [(k, r) for k in chosen for r in rights if k in listed[r]]
    cache = ctx.cache

    def key(pair):
        k, r = pair
        return ctx.cache_key("option-contracts", und["conid"], month, strike_text(k), r, exchange)

    found: dict[tuple, list] = {}
    todo, oldest = [], None
    for pair in pairs:
        hit = cache.get(key(pair), max_age=CACHE_MAX_AGE)
        if hit is not None and isinstance(hit[0], list) and hit[0]:
            found[pair] = hit[0]
            oldest = hit[1] if oldest is None else max(oldest, hit[1])
        else:
            todo.append(pair)

    bar = ctx.progress(len(todo), f"{label} contracts")
    progress = _Progress(bar)

    def look_up(pair):
        rows = fetch_contracts(ctx, und, month, pair[0], pair[1], exchange)
        if rows:
            cache.set(key(pair), rows)
        progress.advance()
        return pair, rows

    try:
        for pair, rows in ctx.parallel(look_up, todo, workers=WORKERS):
            found[pair] = rows
    finally:
        bar.close()

    seen, records = set(), []
    for pair in pairs:
        for row in found.get(pair) or []:
            if isinstance(row, dict) and row.get("conid") not in seen:
                seen.add(row["conid"])
                records.append(row)
    records.sort(
        key=lambda r: (r.get("expiry") or "", r.get("strike") or 0.0, r.get("right") or "")
    )

    notes = []
    if found and oldest is not None:
        cached = len(pairs) - len(todo)
        notes.append(
            f"{cached} of {len(pairs)} contract look-ups from the cache (cached {age_text(oldest)} ago)"
        )
    if pairs and not records:
        notes.append(f"the gateway listed strikes for {label} but returned no contracts")
    return Result(records, provenance="documented", variant=INFO.key, notes=notes)
