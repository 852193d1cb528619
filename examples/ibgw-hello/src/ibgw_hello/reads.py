"""Fetch function and schema of ``ibgw hello contract`` (imported when the read runs)."""

from marshmallow import Schema, fields

from ibgw.errors import Unavailable, UsageError
from ibgw.parse import integer

from . import SECDEF

MAX_CONIDS = 200  # IBKR's limit per /trsrv/secdef request


class ContractSchema(Schema):
    conid = fields.Integer()
    ticker = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    asset_class = fields.String(allow_none=True)
    type = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    exchange = fields.String(allow_none=True)
    has_options = fields.Boolean(allow_none=True)


def _text(value):
    return value if isinstance(value, str) and value else None


def fetch_contracts(ctx, conid):
    conids = list(dict.fromkeys(conid))  # keep the order, drop repeats
    if len(conids) > MAX_CONIDS:
        raise UsageError(f"conid: at most {MAX_CONIDS} at a time", reason="too-many-conids")
    data = ctx.call(SECDEF, query={"conids": ",".join(str(c) for c in conids)})
    if data is None:  # 204 No Content: IBKR knows none of them
        return []
    if not isinstance(data, dict) or not isinstance(data.get("secdef"), list):
        raise Unavailable("unexpected answer from /trsrv/secdef", reason="malformed-response")
    rows = []
    for item in data["secdef"]:
        if not isinstance(item, dict) or integer(item.get("conid")) is None:
            continue
        has_options = item.get("hasOptions")
        rows.append(
            {
                "conid": integer(item.get("conid")),
                "ticker": _text(item.get("ticker")),
                "name": _text(item.get("name")),
                "asset_class": _text(item.get("assetClass")),
                "type": _text(item.get("type")),
                "currency": _text(item.get("currency")),
                "exchange": _text(item.get("listingExchange")),
                "has_options": has_options if isinstance(has_options, bool) else None,
            }
        )
    return rows
