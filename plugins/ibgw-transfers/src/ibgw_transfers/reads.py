"""Fetch function and schema for ``ibgw transfers`` (imported only when it runs).

Answer of ``POST /pa/transactions`` (recorded [S3], official example [S1]):
``{"currency", "from", "to", "nd", "rpnl": {"amt", "data"}, "transactions": [{"cur",
"date": "Tue Mar 31 00:00:00 EDT 2026", "rawDate": "20260331", "fxRate", "pr",
"qty", "acctid", "amt", "conid", "type", "desc"}]}``. The official example has no
``rawDate``: the date is then read from ``date``.
"""

from __future__ import annotations

import re

from marshmallow import Schema, fields

from ibgw.cache import once_per_window
from ibgw.errors import Unavailable, UsageError
from ibgw.parse import number

from . import PA_TRANSACTIONS

PA_WINDOW = 900.0  # IBKR: /pa/transactions once per 15 minutes
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_JAVA_DATE = re.compile(
    r"[A-Za-z]{3} ([A-Za-z]{3}) (\d{1,2}) \d{2}:\d{2}:\d{2} [A-Za-z+\-0-9:]{1,9} (\d{4})"
)


class TransactionSchema(Schema):
    date = fields.String(allow_none=True)
    type = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    quantity = fields.Float(allow_none=True)
    price = fields.Float(allow_none=True)
    amount = fields.Float(allow_none=True)
    currency = fields.String(allow_none=True)
    fx_rate = fields.Float(allow_none=True)


def iso_date(raw_date, date_text) -> str | None:
    """``YYYY-MM-DD`` from ``rawDate`` (``20260331``) or, failing that, from the
    Java-style ``date`` (``Tue Mar 31 00:00:00 EDT 2026``)."""
    digits = (
        str(raw_date) if isinstance(raw_date, str | int) and not isinstance(raw_date, bool) else ""
    )
    if re.fullmatch(r"\d{8}", digits):
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    m = _JAVA_DATE.fullmatch(date_text.strip()) if isinstance(date_text, str) else None
    if m and m.group(1).title() in MONTHS:
        return f"{m.group(3)}-{MONTHS.index(m.group(1).title()) + 1:02d}-{int(m.group(2)):02d}"
    return None


def _text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def transaction_row(t) -> dict | None:
    if not isinstance(t, dict):
        return None
    return {
        "date": iso_date(t.get("rawDate"), t.get("date")),
        "type": _text(t.get("type")),
        "description": _text(t.get("desc")),
        "quantity": number(t.get("qty")),
        "price": number(t.get("pr")),
        "amount": number(t.get("amt")),
        "currency": _text(t.get("cur")),
        "fx_rate": number(t.get("fxRate")),
    }


def parse_report(data) -> dict:
    """``{"rows": [...newest first], "rpnl": realized P&L of the period, "currency"}``."""
    if not isinstance(data, dict) or not isinstance(data.get("transactions", []), list):
        raise Unavailable("unexpected answer from /pa/transactions", reason="malformed-response")
    rows = [
        r for r in (transaction_row(t) for t in data.get("transactions") or []) if r is not None
    ]
    rows.sort(key=lambda r: r["date"] or "", reverse=True)
    rpnl = data.get("rpnl")
    return {
        "rows": rows,
        "rpnl": number(rpnl.get("amt")) if isinstance(rpnl, dict) else None,
        "currency": _text(data.get("currency")),
    }


def _contract(ctx, symbol, conid) -> tuple[int, str]:
    if (symbol is None) == (conid is None):
        raise UsageError("give a symbol or a conid (one of them)", reason="invalid-parameter")
    if conid is not None:
        return int(conid), f"conid {int(conid)}"
    contract = ctx.resolve_symbol(symbol)
    return contract["conid"], contract["symbol"]


def fetch_transactions(ctx, symbol=None, conid=None, days=90, currency="USD", account=None):
    conid, shown = _contract(ctx, symbol, conid)
    acct = ctx.account(account)
    # the account id lives only inside the key, which DiskCache hashes into the file name
    key = ctx.cache_key("pa-transactions", acct, conid, days, currency)
    body = {"acctIds": [acct], "conids": [conid], "currency": currency, "days": days}
    report = once_per_window(
        ctx,
        key,
        PA_WINDOW,
        lambda: parse_report(ctx.call(PA_TRANSACTIONS, body=body)),
        rule="IBKR allows one transactions report per 15 minutes",
        missing=f"for {shown} over {days} days",
    )
    return _report_rows(ctx, report, shown, days)


def _report_rows(ctx, report, shown: str, days: int) -> list[dict]:
    rows = report.get("rows") if isinstance(report, dict) else None
    rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    if not rows:
        ctx.note(f"no transactions for {shown} in the last {days} days")
    rpnl = report.get("rpnl") if isinstance(report, dict) else None
    if isinstance(rpnl, int | float) and rpnl:
        ccy = report.get("currency")
        ctx.note(
            f"realized P&L over the period: {rpnl:,.2f}"
            + (f" {ccy}" if isinstance(ccy, str) else "")
        )
    return rows
