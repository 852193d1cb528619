"""Fetch functions and schemas for ibgw-fx (imported only when a read runs)."""

from marshmallow import Schema, fields

from ibgw.errors import Unavailable, UsageError
from ibgw.parse import integer, number

from . import CURRENCY_PAIRS, EXCHANGE_RATE


class RateSchema(Schema):
    source = fields.String()
    target = fields.String()
    rate = fields.Float(allow_none=True)
    inverse = fields.Float(allow_none=True)


class PairSchema(Schema):
    symbol = fields.String(allow_none=True)
    conid = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)
    base = fields.String(allow_none=True)
    quote = fields.String(allow_none=True)


def _unknown(what: str) -> UsageError:
    return UsageError(
        f"no exchange rate for {what}",
        reason="unknown-currency",
        hint="Check the currency codes (ISO 4217, e.g. USD, EUR).",
    )


def _code(value: str) -> str:
    # the runner already checked the pattern [A-Za-z]{3}
    return value.strip().upper()


def fetch_rate(ctx, source: str, target: str):
    source, target = _code(source), _code(target)
    if source == target:
        raise UsageError(
            f"source and target are the same currency ({source})", reason="same-currency"
        )
    try:
        data = ctx.call(EXCHANGE_RATE, query={"source": source, "target": target})
    except UsageError as exc:
        if exc.reason != "gateway-rejected":
            raise
        raise _unknown(f"{source}/{target}") from None
    rate = number(data.get("rate")) if isinstance(data, dict) else None
    if rate is None:
        # null, {} or a rate that is not a number: the gateway's answer is at fault,
        # not the currency codes (IBKR answers {"rate": <number>})
        raise Unavailable(
            "unexpected answer from /iserver/exchangerate (no rate in it)",
            reason="malformed-response",
        )
    if rate <= 0:
        raise _unknown(f"{source}/{target}")
    # the gateway gives about 8 significant digits; the inverse carries no more
    return {"source": source, "target": target, "rate": rate, "inverse": float(f"{1.0 / rate:.8g}")}


def _text(value):
    return value.strip() if isinstance(value, str) and value.strip() else None


def fetch_pairs(ctx, currency: str):
    currency = _code(currency)
    try:
        data = ctx.call(CURRENCY_PAIRS, query={"currency": currency})
    except UsageError as exc:
        if exc.reason != "gateway-rejected":
            raise
        raise UsageError(
            f"the gateway rejected currency {currency}",
            reason="unknown-currency",
            hint="Check the currency code (ISO 4217, e.g. USD, EUR).",
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Unavailable(
            "unexpected answer from /iserver/currency/pairs", reason="malformed-response"
        )
    entries = data.get(currency)
    if entries is None and len(data) == 1:  # keyed differently (case): take the only list
        entries = next(iter(data.values()))
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise Unavailable(
            "unexpected answer from /iserver/currency/pairs", reason="malformed-response"
        )
    rows = []
    for e in entries:
        if not isinstance(e, dict):
            continue
        symbol = _text(e.get("symbol"))
        base, _, quote = (symbol or "").partition(".")
        rows.append(
            {
                "symbol": symbol,
                "conid": integer(e.get("conid")),
                "currency": _text(e.get("ccyPair")),
                "base": base or None,
                "quote": quote or None,
            }
        )
    rows.sort(key=lambda r: (r["currency"] or "", r["symbol"] or ""))
    if not rows:
        ctx.note(f"the gateway lists no FX pairs for {currency}")
    return rows
