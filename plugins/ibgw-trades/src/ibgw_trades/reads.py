"""Fetch function and schema of ``ibgw trades`` (imported only when it runs).

Answer of ``GET /iserver/account/trades`` (IBKR's OpenAPI spec v2.29.0, official
example): a list of executions ``{"execution_id", "symbol", "side": "B"|"S", "size":
5.0, "price": "192.26", "commission": "1.01", "net_amount": 961.3, "exchange",
"account", "trade_time": "20231211-18:00:49", "trade_time_r": 1702317649000, "conid",
"sec_type", "order_description", "company_name", ...}``. Numbers arrive as numbers or
strings. ``trade_time`` is UTC; ``trade_time_r`` the same instant in epoch ms.
User names (``submitter``) and order references are not shown.
"""

from __future__ import annotations

import datetime as dt
import re

from marshmallow import Schema, fields

from ibgw.errors import Unavailable
from ibgw.parse import integer, number

from . import TRADES

SIDES = {"B": "BUY", "BOT": "BUY", "BUY": "BUY", "S": "SELL", "SLD": "SELL", "SELL": "SELL"}
_TRADE_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})")


class ExecutionSchema(Schema):
    time = fields.String(allow_none=True)
    account = fields.String(allow_none=True)
    symbol = fields.String(allow_none=True)
    side = fields.String(allow_none=True)
    size = fields.Float(allow_none=True)
    price = fields.Float(allow_none=True)
    commission = fields.Float(allow_none=True)
    net_amount = fields.Float(allow_none=True)
    exchange = fields.String(allow_none=True)
    conid = fields.Integer(allow_none=True)
    sec_type = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    execution_id = fields.String(allow_none=True)
    order_id = fields.Integer(allow_none=True)


def _text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def iso_utc(ms, text) -> str | None:
    """``2023-12-11T18:00:49Z`` from epoch milliseconds, else from ``20231211-18:00:49``."""
    millis = number(ms)
    if millis is not None and 0 < millis < 1e14:
        moment = dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    m = _TRADE_TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    if m:
        try:
            moment = dt.datetime(*(int(g) for g in m.groups()), tzinfo=dt.UTC)
        except ValueError:
            return None
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def execution_row(t) -> dict | None:
    if not isinstance(t, dict):
        return None
    side = _text(t.get("side"))
    return {
        "time": iso_utc(t.get("trade_time_r"), t.get("trade_time")),
        "account": _text(t.get("account")) or _text(t.get("accountCode")),
        "symbol": _text(t.get("symbol")) or _text(t.get("contract_description_1")),
        "side": SIDES.get(side.upper(), side.upper()) if side else None,
        "size": number(t.get("size")),
        "price": number(t.get("price")),
        "commission": number(t.get("commission")),
        "net_amount": number(t.get("net_amount")),
        "exchange": _text(t.get("exchange")),
        "conid": integer(t.get("conid")),
        "sec_type": _text(t.get("sec_type")),
        "description": _text(t.get("order_description")),
        "execution_id": _text(t.get("execution_id")),
        "order_id": integer(t.get("order_id")),
    }


def execution_rows(data) -> list[dict]:
    if data is None:  # 204: nothing executed
        return []
    if not isinstance(data, list):
        raise Unavailable(f"unexpected answer from {TRADES.path}", reason="malformed-response")
    rows = [r for r in (execution_row(t) for t in data) if r is not None]
    rows.sort(key=lambda r: r["time"] or "", reverse=True)
    return rows


def fetch_trades(ctx, days=None, account=None):
    # one account when asked for (here or with the global --account), else all of them
    explicit = account or getattr(ctx.config, "account", None)
    wanted = ctx.account(account) if explicit else None
    query = {"days": days} if days is not None else {}
    rows = execution_rows(ctx.call(TRADES, query=query))
    if wanted is not None:
        rows = [r for r in rows if r["account"] == wanted]
    if not rows:
        when = "today" if days is None else f"today or the {days} prior day" + "s" * (days > 1)
        ctx.note(f"no executions {when}")
    return rows
