"""Fetch function and schema of the greeks read (imported when the read runs).

The snapshot (``/iserver/marketdata/snapshot``, reference §5.1) answers strings:
``"-0.412"``, ``"24.6%"``, ``"5,210"``, ``"C2.45"`` (prior close). The first request
for a conid only opens the market-data stream (pre-flight: ``conid``/``conidEx``
and nothing else); the read re-polls, at most SNAPSHOT_POLLS times, until every
conid has greeks or says it will not get them (``6509`` starting with ``N``).
"""

from __future__ import annotations

import re
import time

from marshmallow import Schema, fields

from ibgw import Result
from ibgw.contracts import join_limited as _join
from ibgw.contracts import month_key as _month_key
from ibgw.contracts import parse_month as _parse_month
from ibgw.contracts import parse_right as _parse_right
from ibgw.contracts import poll_interval as _interval
from ibgw.contracts import poll_snapshot as _poll_snapshot
from ibgw.contracts import strike_list as _strike_list
from ibgw.contracts import strike_text as _strike_text
from ibgw.contracts import text_value as _text
from ibgw.errors import IbgwError, NotServed, SessionError, Unavailable, UsageError
from ibgw.parse import integer, number, price_flag
from ibgw.runner import not_entitled

from . import INFO, SECDEF, SNAPSHOT, STRIKES

MAX_CONIDS = 100
SNAPSHOT_POLLS = 5
POLL_INTERVAL = 0.5  # seconds between snapshot polls on a live gateway
PRICE_INTERVAL = 0.3

GREEKS = {"7308": "delta", "7309": "gamma", "7310": "theta", "7311": "vega", "7633": "implied_vol"}
QUOTE = {"31": "last", "84": "bid", "86": "ask", "7635": "mark"}
IDENTITY = ("55", "6070", "201", "7219", "7220")
# volume: 7762 (the day volume as a whole number) where sent, else 87 ("1.2K"); never
# 7089, which is the *underlying's* option volume (reference §5.1 "option stats")
FIELDS = ",".join([*QUOTE, *GREEKS, "7638", "87", "7762", "6509", *IDENTITY])
OPTION_TYPES = ("OPT", "FOP", "WAR", "IOPT")
AVAILABILITY = {
    "R": "real-time",
    "D": "delayed",
    "Z": "frozen",
    "Y": "frozen delayed",
    "N": "not subscribed",
    "i": "incomplete",
    "v": "VDR exempt",
    "O": "market data API acknowledgement not signed",
}


class GreeksSchema(Schema):
    conid = fields.Integer()
    symbol = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    expiry = fields.String(allow_none=True)
    strike = fields.Float(allow_none=True)
    right = fields.String(allow_none=True)
    last = fields.Float(allow_none=True)
    bid = fields.Float(allow_none=True)
    ask = fields.Float(allow_none=True)
    mark = fields.Float(allow_none=True)
    delta = fields.Float(allow_none=True)
    gamma = fields.Float(allow_none=True)
    theta = fields.Float(allow_none=True)
    vega = fields.Float(allow_none=True)
    implied_vol = fields.Float(allow_none=True)
    open_interest = fields.Integer(allow_none=True)
    volume = fields.Integer(allow_none=True)
    availability = fields.String(allow_none=True)


# -- input --------------------------------------------------------------------------------
def _count(n: int) -> str:
    return f"{n} conid" if n == 1 else f"{n} conids"


# -- finding the contracts ----------------------------------------------------------------
def _underlying_price(ctx, conid: int) -> float | None:
    interval = _interval(ctx, PRICE_INTERVAL)
    for poll in range(SNAPSHOT_POLLS):
        if poll:
            time.sleep(interval)
        data = ctx.call(SNAPSHOT, query={"conids": str(conid), "fields": "31,84,86"})
        for entry in data if isinstance(data, list) else []:
            if isinstance(entry, dict) and integer(entry.get("conid")) == conid:
                last = number(entry.get("31"))
                if last and last > 0:
                    return last
                bid, ask = number(entry.get("84")), number(entry.get("86"))
                if bid and ask and bid > 0 and ask > 0:
                    return (bid + ask) / 2
    return None


def _contracts_for(
    ctx, symbol, month, strike, right, exchange, sec_type="STK"
) -> tuple[list[dict], dict]:
    """The option contracts of SYMBOL for the strike and rights, and the info rows by conid."""
    rights = _parse_right(right)
    exchange = str(exchange or "SMART").strip().upper()
    if month is not None:
        _parse_month(month)
    und = ctx.resolve_symbol(symbol, sec_type=sec_type or "STK")
    months = sorted(dict.fromkeys(m.upper() for m in und.get("months") or []), key=_month_key)
    if not months:
        raise UsageError(f"{und['symbol']} has no listed options", reason="no-options")
    if month is None:
        month = months[0]
        ctx.note(f"month {month} (the nearest listed; choose another with --month)")
    else:
        month = _parse_month(month)
        if month not in months:
            raise UsageError(
                f"month {month} is not listed for {und['symbol']} options (listed: {_join(months)})",
                reason="month-not-listed",
            )
    listed_exchanges = [x.upper() for x in und.get("option_exchanges") or []]
    if listed_exchanges and exchange not in listed_exchanges:
        raise UsageError(
            f"{und['symbol']} options are not listed on {exchange} (listed: {_join(listed_exchanges)})",
            reason="exchange-not-listed",
        )
    data = ctx.call(
        STRIKES,
        query={"conid": und["conid"], "sectype": "OPT", "month": month, "exchange": exchange},
    )
    if data is not None and not isinstance(data, dict):
        raise Unavailable(
            "unexpected answer from /iserver/secdef/strikes", reason="malformed-response"
        )
    data = data or {}
    listed = {"C": _strike_list(data.get("call")), "P": _strike_list(data.get("put"))}
    strikes = sorted(set().union(*(listed[r] for r in rights)))
    label = f"{und['symbol']} {month}"
    if not strikes:
        raise UsageError(f"no strikes are listed for {label} on {exchange}", reason="no-strikes")
    if strike is None:
        price = _underlying_price(ctx, und["conid"])
        if price is None:
            strike = strikes[len(strikes) // 2]
            ctx.note(
                f"no price for {und['symbol']}; using the middle strike {_strike_text(strike)}"
            )
        else:
            strike = min(strikes, key=lambda k: (abs(k - price), k))
            ctx.note(f"strike {_strike_text(strike)} (nearest the last price {price:g})")
    else:
        match = [k for k in strikes if abs(k - strike) < 1e-6]
        if not match:
            nearest = sorted(strikes, key=lambda k: (abs(k - strike), k))[:2]
            raise UsageError(
                f"strike {_strike_text(strike)} is not listed for {label} "
                f"(nearest: {', '.join(_strike_text(k) for k in sorted(nearest))})",
                reason="strike-not-listed",
            )
        strike = match[0]

    infos: dict[int, dict] = {}
    answered = False  # the info answers held entries (usable or not)
    for r in rights:
        if strike not in listed[r]:
            continue
        answer = ctx.call(
            INFO,
            query={
                "conid": und["conid"],
                "sectype": "OPT",
                "month": month,
                "strike": _strike_text(strike),
                "right": r,
                "exchange": exchange,
            },
        )
        if isinstance(answer, dict):
            answer = [answer]
        if answer is not None and not isinstance(answer, list):
            raise Unavailable(
                "unexpected answer from /iserver/secdef/info", reason="malformed-response"
            )
        answered = answered or bool(answer)
        for entry in answer or []:
            conid = integer(entry.get("conid")) if isinstance(entry, dict) else None
            if conid is None or conid <= 0 or conid in infos:
                continue
            maturity = _text(entry.get("maturityDate")) or ""
            desc2 = _text(entry.get("desc2"))
            sym = _text(entry.get("symbol")) or _text(entry.get("ticker")) or und["symbol"]
            infos[conid] = {
                "symbol": sym,
                "description": f"{sym} {desc2}" if desc2 else None,
                "expiry": f"{maturity[:4]}-{maturity[4:6]}-{maturity[6:]}"
                if re.fullmatch(r"[0-9]{8}", maturity)
                else None,
                "strike": number(entry.get("strike")) or strike,
                "right": ((_text(entry.get("right")) or r).upper()[:1]) or r,
            }
    if not infos:
        if answered:
            # entries came back, but none with a contract id: the answer is at fault
            raise Unavailable(
                "unexpected answer from /iserver/secdef/info (no contract ids)",
                reason="malformed-response",
            )
        raise UsageError(
            f"no option contracts for {label} strike {_strike_text(strike)}", reason="no-contracts"
        )
    ordered = sorted(infos, key=lambda c: (infos[c]["expiry"] or "", infos[c]["right"], c))
    return ordered, infos


# -- the snapshot -------------------------------------------------------------------------
def _has_greeks(values: dict) -> bool:
    return any(values.get(f) not in (None, "") for f in GREEKS)


def poll_snapshot(ctx, conids: list[int]) -> dict[int, dict]:
    """Field values per conid, re-polling past the pre-flight until every conid has
    greeks, says it will not (6509 ``N...``), is not an option, or SNAPSHOT_POLLS
    calls were made."""
    return _poll_snapshot(
        ctx, conids, FIELDS, _settled, interval=_interval(ctx, POLL_INTERVAL), polls=SNAPSHOT_POLLS
    )


def _settled(v: dict) -> bool:
    if _has_greeks(v):
        return True
    if str(v.get("6509") or "").startswith("N"):
        return True  # not subscribed: waiting will not help
    sectype = _text(v.get("6070"))
    return sectype is not None and sectype.upper() not in OPTION_TYPES


def availability(code) -> str | None:
    text = _text(code)
    if not text:
        return None
    return AVAILABILITY.get(text[0], f"unknown ({text[:3]})")


def _volume(v: dict) -> int | None:
    """The contract's day volume: 7762 (a whole number) where present, else 87
    (formatted, ``"1.2K"``). Field 7089 is the underlying's option volume, not this."""
    for field in ("7762", "87"):
        value = integer(v.get(field))
        if value is not None and value >= 0:
            return value
    return None


def _search_underlyings(ctx, conids: list[int], sec_type: str) -> None:
    """IBKR: "for derivative contracts /iserver/secdef/search must be called first".
    For bare conids the underlyings are found with ``/trsrv/secdef`` (an option's
    ``ticker`` is its underlying's symbol) and searched (cached for the session).
    When that cannot be done the snapshot is still tried, with a note."""
    try:
        data = ctx.call(SECDEF, query={"conids": ",".join(map(str, conids))})
    except (NotServed, UsageError):
        data = None
    except SessionError:
        raise
    entries = data.get("secdef") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        ctx.note(
            "the underlyings of these conids could not be looked up (/trsrv/secdef); "
            "the snapshot may stay empty"
        )
        return
    symbols = []
    for e in entries:
        if not isinstance(e, dict):
            continue
        kind = (_text(e.get("assetClass")) or "").upper()
        ticker = _text(e.get("ticker"))
        if kind in OPTION_TYPES and ticker and ticker.upper() not in symbols:
            symbols.append(ticker.upper())
    for ticker in symbols:
        try:
            ctx.resolve_symbol(ticker, sec_type=sec_type or "STK")
        except SessionError:
            raise
        except IbgwError:
            ctx.note(f"the contract search for the underlying {ticker} failed")


def _row(conid: int, v: dict, info: dict | None) -> dict:
    info = info or {}
    symbol = _text(v.get("55")) or info.get("symbol")
    desc = info.get("description")
    if desc is None:
        d1, d2 = _text(v.get("7219")), _text(v.get("7220"))
        if d2 and symbol and not d2.startswith(symbol):
            desc = f"{symbol} {d2}"
        else:
            desc = d2 or d1 or symbol
    right = info.get("right") or (_text(v.get("201")) or "").upper()[:1] or None
    row = {
        "conid": conid,
        "symbol": symbol,
        "description": desc,
        "expiry": info.get("expiry"),
        "strike": info.get("strike"),
        "right": right if right in ("C", "P") else None,
        "open_interest": integer(v.get("7638")),
        "volume": _volume(v),
        "availability": availability(v.get("6509")),
    }
    for f, name in {**QUOTE, **GREEKS}.items():
        row[name] = number(v.get(f))
    return row


def fetch_greeks(
    ctx,
    symbol=None,
    month=None,
    strike=None,
    right=None,
    exchange="SMART",
    conid=None,
    sec_type="STK",
):
    conids = list(dict.fromkeys(conid or []))
    if conids and symbol:
        raise UsageError("give a SYMBOL or --conid, not both", reason="invalid-parameter")
    if not conids and not symbol:
        raise UsageError(
            "give a SYMBOL (with --month, --strike, --right) or one or more --conid",
            reason="invalid-parameter",
        )
    if conids and (month is not None or strike is not None or right is not None):
        raise UsageError(
            "--month, --strike and --right go with a SYMBOL, not with --conid",
            reason="invalid-parameter",
        )
    if len(conids) > MAX_CONIDS:
        raise UsageError(f"at most {MAX_CONIDS} conids per snapshot", reason="too-many-conids")
    if any(c <= 0 for c in conids):
        raise UsageError("conid: expected a positive contract id", reason="invalid-parameter")

    infos: dict[int, dict] = {}
    if symbol:
        _parse_right(right)  # input errors before any call
        if month is not None:
            _parse_month(month)
        conids, infos = _contracts_for(ctx, symbol, month, strike, right, exchange, sec_type)
    else:
        _search_underlyings(ctx, conids, sec_type)

    values = poll_snapshot(ctx, conids)
    with_greeks = [c for c in conids if _has_greeks(values[c])]
    if not with_greeks:
        others = [
            (c, _text(values[c].get("6070")))
            for c in conids
            if _text(values[c].get("6070"))
            and _text(values[c].get("6070")).upper() not in OPTION_TYPES
        ]
        if others:
            c, kind = others[0]
            raise UsageError(
                f"conid {c} is a {kind}, not an option: greeks need option conids",
                reason="not-an-option",
            )
        states = sorted({availability(values[c].get("6509")) or "no data" for c in conids})
        raise not_entitled(
            f"option greeks for {_count(len(conids))} (market data availability: {', '.join(states)})",
            hint="Greeks need an option market-data subscription (OPRA for US options) "
            "in Client Portal; a pending stream can also take a few seconds: retry.",
        )

    rows = [_row(c, values[c], infos.get(c)) for c in conids]
    notes = []
    missing = [c for c in conids if c not in with_greeks]
    if missing:
        states = sorted({availability(values[c].get("6509")) or "no data" for c in missing})
        notes.append(
            f"no greeks for {len(missing)} of {_count(len(conids))} "
            f"(market data availability: {', '.join(states)}); their values are empty"
        )
    flags = [price_flag(values[c].get("31")) for c in conids]
    if "prior-close" in flags:
        notes.append(f"last is the prior close for {_count(flags.count('prior-close'))}")
    if "halted" in flags:
        notes.append(f"trading is halted for {_count(flags.count('halted'))}")
    return Result(rows, provenance="documented", variant=SNAPSHOT.key, notes=notes)
