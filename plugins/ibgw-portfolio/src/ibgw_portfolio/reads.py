"""Fetch functions and schemas of ``ibgw portfolio`` (imported only when a read runs).

Answers, as in IBKR's OpenAPI spec v2.29.0 (official examples) and the reference:

* ``GET /iserver/account/pnl/partitioned``: ``{"upnl": {"U1234567.Core": {"rowType": 1,
  "dpl": -12510.0, "nl": 1290000.0, "upl": 256000.0, "el": 824600.0, "mv": 1700000.0}}}``;
  the first request after login may answer ``{"upnl": {}}``.
* ``POST /pa/performance``: ``{"nav": {"dates": ["20230102", ...], "data": [{"id",
  "navs": [...], "startNAV": {"date", "val"}, "baseCurrency"}]}, "cps": {"dates", "data":
  [{"id", "returns": [...]}]}, "tpps": {...monthly}, "pm": "TWR", ...}`` (cps: cumulative
  returns as fractions).
* ``GET /portfolio/{accountId}/allocation``: ``{"assetClass": {"long": {"STK": 1564447.6},
  "short": {"STK": -103716.1}}, "sector": {...}, "group": {...}}``.
"""

from __future__ import annotations

import re

from marshmallow import Schema, fields

from ibgw.cache import once_per_window
from ibgw.errors import Unavailable

from . import ALLOCATION, PA_PERFORMANCE, PERIOD_ALIASES, PNL

PA_WINDOW = 900.0  # IBKR: /pa/performance once per 15 minutes
BREAKDOWNS = (("asset-class", "assetClass"), ("sector", "sector"), ("group", "group"))


def _num(value) -> float | None:
    from ibgw.parse import number

    return number(value)


def _text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _malformed(path: str) -> Unavailable:
    return Unavailable(f"unexpected answer from {path}", reason="malformed-response")


# -- pnl -------------------------------------------------------------------------------
class PnlSchema(Schema):
    account = fields.String()
    segment = fields.String(allow_none=True)
    daily_pnl = fields.Float(allow_none=True)
    unrealized_pnl = fields.Float(allow_none=True)
    net_liquidation = fields.Float(allow_none=True)
    market_value = fields.Float(allow_none=True)
    excess_liquidity = fields.Float(allow_none=True)


def pnl_rows(data) -> list[dict]:
    upnl = data.get("upnl") if isinstance(data, dict) else None
    if not isinstance(upnl, dict):
        raise _malformed(PNL.path)
    rows = []
    for key, item in upnl.items():
        if not isinstance(key, str) or not isinstance(item, dict):
            continue
        account, _, segment = key.partition(".")
        if not account:
            continue
        rows.append(
            {
                "account": account,
                "segment": segment or None,
                "daily_pnl": _num(item.get("dpl")),
                "unrealized_pnl": _num(item.get("upl")),
                "net_liquidation": _num(item.get("nl")),
                "market_value": _num(item.get("mv")),
                "excess_liquidity": _num(item.get("el")),
            }
        )
    rows.sort(key=lambda r: (r["account"], r["segment"] or ""))
    return rows


def fetch_pnl(ctx, account=None):
    # one account when asked for (here or with the global --account), else all of them
    explicit = account or getattr(ctx.config, "account", None)
    wanted = ctx.account(account) if explicit else None
    rows = pnl_rows(ctx.call(PNL))
    if wanted is not None:
        rows = [r for r in rows if r["account"] == wanted]
    if not rows:
        ctx.note(
            "no P&L yet: the gateway starts computing it on the first request after login; "
            "ask again in a few seconds"
        )
    return rows


# -- performance -----------------------------------------------------------------------
class PerformanceSchema(Schema):
    date = fields.String(allow_none=True)
    nav = fields.Float(allow_none=True)
    return_pct = fields.Float(allow_none=True)
    currency = fields.String(allow_none=True)


def iso_day(value) -> str | None:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if re.fullmatch(r"\d{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None


def _series(section, account: str):
    """``(dates, item)`` of ``section`` (``nav`` or ``cps``) for ``account``: the item
    whose ``id`` is the account, else the only (consolidated) item."""
    if not isinstance(section, dict):
        return [], None
    dates = section.get("dates")
    data = section.get("data")
    if not isinstance(dates, list) or not isinstance(data, list):
        return [], None
    items = [d for d in data if isinstance(d, dict)]
    item = next((d for d in items if d.get("id") == account), items[0] if items else None)
    return dates, item


def parse_performance(data, account: str) -> dict:
    """``{"rows": [...oldest first], "start_nav", "currency", "method", "monthly": [...]}``."""
    if not isinstance(data, dict) or not isinstance(data.get("nav", {}), dict):
        raise _malformed(PA_PERFORMANCE.path)
    nav_dates, nav = _series(data.get("nav"), account)
    cps_dates, cps = _series(data.get("cps"), account)
    navs = nav.get("navs") if isinstance(nav, dict) else None
    navs = navs if isinstance(navs, list) else []
    returns = cps.get("returns") if isinstance(cps, dict) else None
    returns = returns if isinstance(returns, list) else []
    by_day: dict[str, dict] = {}
    currency = None
    for item in (nav, cps):
        if isinstance(item, dict) and currency is None:
            currency = _text(item.get("baseCurrency"))
    for day, value in zip(nav_dates, navs, strict=False):
        iso = iso_day(day)
        if iso is not None:
            by_day.setdefault(iso, {"date": iso, "nav": None, "return_pct": None})
            by_day[iso]["nav"] = _num(value)
    for day, value in zip(cps_dates, returns, strict=False):
        iso, ret = iso_day(day), _num(value)
        if iso is not None:
            by_day.setdefault(iso, {"date": iso, "nav": None, "return_pct": None})
            by_day[iso]["return_pct"] = None if ret is None else round(ret * 100, 4)
    rows = [dict(by_day[k], currency=currency) for k in sorted(by_day)]
    start = nav.get("startNAV") if isinstance(nav, dict) else None
    return {
        "rows": rows,
        "start_nav": _num(start.get("val")) if isinstance(start, dict) else None,
        "currency": currency,
        "method": _text(data.get("pm")),
    }


def fetch_performance(ctx, period="1M", account=None):
    period = PERIOD_ALIASES.get(period, period)
    acct = ctx.account(account)
    # the account id lives only inside the key, which DiskCache hashes into the file name
    key = ctx.cache_key("pa-performance", acct, period)
    report = once_per_window(
        ctx,
        key,
        PA_WINDOW,
        lambda: parse_performance(
            ctx.call(PA_PERFORMANCE, body={"acctIds": [acct], "period": period}), acct
        ),
        rule="IBKR allows one performance report per 15 minutes",
        missing=f"for {period}",
    )
    return _performance_rows(ctx, report, period)


def _performance_rows(ctx, report, period: str) -> list[dict]:
    rows = report.get("rows") if isinstance(report, dict) else None
    rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    if not rows:
        ctx.note(f"no performance data for {period}")
        return rows
    last = rows[-1]
    ret = last.get("return_pct")
    ccy = report.get("currency")
    method = report.get("method") or "TWR"
    text = f"{period} ({method}) {rows[0]['date']} to {last['date']}"
    if isinstance(ret, int | float):
        text += f": {ret:+.2f}%"
    start, end = report.get("start_nav"), last.get("nav")
    if isinstance(start, int | float) and isinstance(end, int | float):
        text += f", NAV {start:,.2f} -> {end:,.2f}" + (f" {ccy}" if isinstance(ccy, str) else "")
    ctx.note(text)
    return rows


# -- allocation ------------------------------------------------------------------------
class AllocationSchema(Schema):
    breakdown = fields.String()
    name = fields.String()
    long = fields.Float(allow_none=True)
    short = fields.Float(allow_none=True)
    net = fields.Float(allow_none=True)
    weight_pct = fields.Float(allow_none=True)


def _side(section, side: str) -> dict[str, float]:
    values = section.get(side) if isinstance(section, dict) else None
    out = {}
    for name, value in (values or {}).items() if isinstance(values, dict) else ():
        amount = _num(value)
        if isinstance(name, str) and name.strip() and amount is not None:
            out[name.strip()] = amount
    return out


def allocation_rows(data, by: str = "all") -> list[dict]:
    if not isinstance(data, dict):
        raise _malformed(ALLOCATION.path)
    rows = []
    for breakdown, key in BREAKDOWNS:
        if by not in ("all", breakdown):
            continue
        section = data.get(key)
        if section is not None and not isinstance(section, dict):
            raise _malformed(ALLOCATION.path)
        long, short = _side(section, "long"), _side(section, "short")
        names = sorted(set(long) | set(short))
        nets = {n: round(long.get(n, 0.0) + short.get(n, 0.0), 2) for n in names}
        total = sum(nets.values())
        part = []
        for name in names:
            part.append(
                {
                    "breakdown": breakdown,
                    "name": name,
                    "long": round(long[name], 2) if name in long else None,
                    "short": round(short[name], 2) if name in short else None,
                    "net": nets[name],
                    "weight_pct": round(nets[name] / total * 100, 2) if total else None,
                }
            )
        part.sort(key=lambda r: -abs(r["net"]))
        rows += part
    return rows


def fetch_allocation(ctx, by="all", account=None):
    acct = ctx.account(account)
    rows = allocation_rows(ctx.call(ALLOCATION, path={"accountId": acct}), by)
    if not rows:
        ctx.note("no allocation: the account holds no positions")
    return rows
