"""Fetch functions and schemas for the built-in account reads (imported lazily)."""

from marshmallow import Schema, fields

from ibgw.endpoints import (
    PORTFOLIO_ACCOUNTS,
    PORTFOLIO_LEDGER,
    PORTFOLIO_POSITIONS,
    PORTFOLIO_SUMMARY,
)
from ibgw.errors import Unavailable
from ibgw.parse import integer, number

MAIN_METRICS = (
    "netliquidation",
    "totalcashvalue",
    "settledcash",
    "buyingpower",
    "availablefunds",
    "excessliquidity",
    "initmarginreq",
    "maintmarginreq",
    "equitywithloanvalue",
    "grosspositionvalue",
    "cushion",
    "daytradesremaining",
    "accruedcash",
)
MAX_PAGES = 2000


class AccountSchema(Schema):
    account = fields.String()
    alias = fields.String(allow_none=True)
    type = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    trading_type = fields.String(allow_none=True)
    business_type = fields.String(allow_none=True)


class SummarySchema(Schema):
    metric = fields.String()
    amount = fields.Float(allow_none=True)
    currency = fields.String(allow_none=True)
    value = fields.String(allow_none=True)


class LedgerSchema(Schema):
    currency = fields.String()
    cash_balance = fields.Float(allow_none=True)
    settled_cash = fields.Float(allow_none=True)
    net_liquidation = fields.Float(allow_none=True)
    stock_market_value = fields.Float(allow_none=True)
    option_market_value = fields.Float(allow_none=True)
    unrealized_pnl = fields.Float(allow_none=True)
    realized_pnl = fields.Float(allow_none=True)
    interest = fields.Float(allow_none=True)
    dividends = fields.Float(allow_none=True)
    exchange_rate = fields.Float(allow_none=True)


# Fields that read a position as the gateway sends it. The positions schema maps and
# types each raw position in one pass: a large account has 5,000 of them, and a
# marshmallow Function field costs half of a typed field fed by a separate mapping.
class GatewayText(fields.Function):
    """The first non-empty text among the gateway's ``keys``, else None."""

    def __init__(self, *keys: str):
        def first_text(p: dict):
            for key in keys:
                value = p.get(key)
                if value and isinstance(value, str):
                    return value
            return None

        super().__init__(serialize=first_text)
        self.gateway_keys = keys


class GatewayNumber(fields.Function):
    """The gateway's ``key`` as a float (``ibgw.parse.number``); with ``zero_is_none``
    a zero is None too (a strike of 0 means no option)."""

    def __init__(self, key: str, zero_is_none: bool = False):
        if zero_is_none:
            super().__init__(serialize=lambda p: number(p.get(key)) or None)
        else:
            super().__init__(serialize=lambda p: number(p.get(key)))
        self.gateway_keys = (key,)


class GatewayInteger(fields.Function):
    """The gateway's ``key`` as an int (``ibgw.parse.integer``)."""

    def __init__(self, key: str):
        super().__init__(serialize=lambda p: integer(p.get(key)))
        self.gateway_keys = (key,)


class PositionSchema(Schema):
    """A position from ``/portfolio/{accountId}/positions/{pageId}``."""

    account = GatewayText("acctId")
    conid = GatewayInteger("conid")
    description = GatewayText("contractDesc", "fullName")
    ticker = GatewayText("ticker")
    asset_class = GatewayText("assetClass")
    position = GatewayNumber("position")
    mkt_price = GatewayNumber("mktPrice")
    mkt_value = GatewayNumber("mktValue")
    currency = GatewayText("currency")
    avg_cost = GatewayNumber("avgCost")
    unrealized_pnl = GatewayNumber("unrealizedPnl")
    realized_pnl = GatewayNumber("realizedPnl")
    expiry = GatewayText("expiry")
    strike = GatewayNumber("strike", zero_is_none=True)
    right = GatewayText("putOrCall")


# The gateway keys the schema reads: each position keeps only these until it is dumped
# (a position has some 36 fields; 50,000 positions need not keep them all).
POSITION_KEYS = tuple(
    dict.fromkeys(k for field in PositionSchema().dump_fields.values() for k in field.gateway_keys)
)


def _s(value):
    return value if isinstance(value, str) and value else None


def fetch_accounts(ctx):
    data = ctx.call(PORTFOLIO_ACCOUNTS)
    ctx._mark_primed("portfolio-accounts")
    if not isinstance(data, list):
        raise Unavailable("unexpected answer from /portfolio/accounts", reason="malformed-response")
    rows = []
    for a in data:
        if not isinstance(a, dict):
            continue
        rows.append(
            {
                "account": a.get("accountId") or a.get("id"),
                "alias": _s(a.get("accountAlias")),
                "type": _s(a.get("type")),
                "currency": _s(a.get("currency")),
                "trading_type": _s(a.get("tradingType")),
                "business_type": _s(a.get("businessType")),
            }
        )
    return rows


def fetch_summary(ctx, account=None, all=False):
    acct = ctx.account(account)
    data = ctx.call(PORTFOLIO_SUMMARY, path={"accountId": acct})
    if not isinstance(data, dict):
        raise Unavailable("unexpected answer from the account summary", reason="malformed-response")
    rows = []
    names = sorted(data) if all else [m for m in MAIN_METRICS if m in data]
    for name in names:
        entry = data.get(name)
        if not isinstance(entry, dict) or entry.get("isNull") is True:
            continue
        value = entry.get("value")
        rows.append(
            {
                "metric": name,
                "amount": number(entry.get("amount")),
                "currency": _s(entry.get("currency")),
                "value": value if isinstance(value, str) and name != "accountcode" else None,
            }
        )
    return rows


def fetch_ledger(ctx, account=None):
    acct = ctx.account(account)
    data = ctx.call(PORTFOLIO_LEDGER, path={"accountId": acct})
    if not isinstance(data, dict):
        raise Unavailable("unexpected answer from the ledger", reason="malformed-response")
    rows = []
    for key in sorted(data, key=lambda k: (k == "BASE", k)):
        e = data[key]
        if not isinstance(e, dict):
            continue
        rows.append(
            {
                "currency": key,
                "cash_balance": number(e.get("cashbalance")),
                "settled_cash": number(e.get("settledcash")),
                "net_liquidation": number(e.get("netliquidationvalue")),
                "stock_market_value": number(e.get("stockmarketvalue")),
                "option_market_value": number(e.get("stockoptionmarketvalue")),
                "unrealized_pnl": number(e.get("unrealizedpnl")),
                "realized_pnl": number(e.get("realizedpnl")),
                "interest": number(e.get("interest")),
                "dividends": number(e.get("dividends")),
                "exchange_rate": number(e.get("exchangerate")),
            }
        )
    return rows


def fetch_positions(ctx, account=None):
    acct = ctx.account(account)
    rows: list[dict] = []
    for page in range(MAX_PAGES):
        data = ctx.call(PORTFOLIO_POSITIONS, path={"accountId": acct, "pageId": page})
        if not data:
            break
        if not isinstance(data, list):
            raise Unavailable("unexpected answer from positions", reason="malformed-response")
        rows.extend({k: p[k] for k in POSITION_KEYS if k in p} for p in data if isinstance(p, dict))
        size = next(
            (p.get("pageSize") for p in data if isinstance(p, dict) and p.get("pageSize")), 100
        )
        if len(data) < (integer(size) or 100):
            break
    return rows
