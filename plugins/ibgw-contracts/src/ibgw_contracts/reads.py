"""Fetch functions and schemas of ibgw-contracts (imported when a read runs).

``/iserver/secdef/search`` (reference §3) answers a list of entries, one per
listing: ``conid`` (a string), ``symbol``, ``companyName``, ``description`` (the
exchange), ``sections`` (the security types offered: STK, OPT with months, WAR,
CFD, BAG, FUT ...). A bond search answers issuer groups (``issuers``) under a
placeholder conid. ``/iserver/contract/{conid}/info`` and ``/trsrv/secdef``
describe one contract each way.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from ibgw import Result
from ibgw.contracts import text_value
from ibgw.errors import NotServed, Unavailable, UsageError
from ibgw.parse import integer, number
from ibgw.symbols import normalise_symbol

from . import CONTRACT_INFO, SECDEF, SECDEF_SEARCH

PLACEHOLDER_CONID = 2147483647  # bond issuer groups carry no real conid


class SearchSchema(Schema):
    conid = fields.Integer(allow_none=True)
    symbol = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    exchange = fields.String(allow_none=True)
    sec_types = fields.String(allow_none=True)
    option_months = fields.String(allow_none=True)
    issuer_id = fields.String(allow_none=True)


class InfoSchema(Schema):
    conid = fields.Integer()
    symbol = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    sec_type = fields.String(allow_none=True)
    type = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    listing_exchange = fields.String(allow_none=True)
    exchanges = fields.String(allow_none=True)
    local_symbol = fields.String(allow_none=True)
    trading_class = fields.String(allow_none=True)
    multiplier = fields.Float(allow_none=True)
    expiry = fields.String(allow_none=True)
    strike = fields.Float(allow_none=True)
    right = fields.String(allow_none=True)
    underlying_conid = fields.Integer(allow_none=True)
    sector = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    has_options = fields.Boolean(allow_none=True)
    regular_hours_only = fields.Boolean(allow_none=True)
    description = fields.String(allow_none=True)


# -- search -------------------------------------------------------------------------------
def _exchange(entry: dict) -> str | None:
    desc = text_value(entry.get("description"))
    if desc:
        return desc.upper()
    header = text_value(entry.get("companyHeader")) or ""
    return header.rsplit(" - ", 1)[-1].upper() if " - " in header else None


def _sections(entry: dict) -> list[dict]:
    return [s for s in entry.get("sections") or [] if isinstance(s, dict)]


def _rows(entry: dict) -> list[dict]:
    conid = integer(entry.get("conid"))
    sections = _sections(entry)
    sec_types = list(dict.fromkeys(str(s.get("secType")) for s in sections if s.get("secType")))
    issuers = [i for i in entry.get("issuers") or [] if isinstance(i, dict)]
    if conid == PLACEHOLDER_CONID or (conid is None and issuers):
        return [
            {
                "conid": None,
                "symbol": None,
                "name": text_value(i.get("name")),
                "exchange": None,
                "sec_types": "BOND",
                "option_months": None,
                "issuer_id": text_value(i.get("id")),
            }
            for i in issuers
        ]
    if conid is None or conid <= 0:
        return []
    months = next(
        (text_value(s.get("months")) for s in sections if s.get("secType") == "OPT"), None
    )
    return [
        {
            "conid": conid,
            "symbol": text_value(entry.get("symbol")),
            "name": text_value(entry.get("companyName")) or text_value(entry.get("companyHeader")),
            "exchange": _exchange(entry),
            "sec_types": ",".join(sec_types) or None,
            "option_months": ",".join(m for m in (months or "").split(";") if m) or None,
            "issuer_id": None,
        }
    ]


def _search(ctx, text: str, by_name: bool, sec_type: str | None) -> list:
    query = {"symbol": text, "secType": sec_type}
    if by_name:
        query["name"] = True
    try:
        data = ctx.call(SECDEF_SEARCH, query=query)
    except UsageError as exc:
        if exc.reason != "gateway-rejected":
            raise
        return []  # IBKR answers 400 for some texts it finds nothing for
    if data is None:
        return []
    if isinstance(data, dict) and not data:
        return []
    if not isinstance(data, list):
        raise Unavailable(
            "unexpected answer from /iserver/secdef/search", reason="malformed-response"
        )
    return [e for e in data if isinstance(e, dict)]


def fetch_search(ctx, text, type=None):
    query = " ".join(str(text or "").split()).upper()
    if not query:
        raise UsageError("give a company name or ticker", reason="invalid-parameter")
    sec_types = {"IND": ["IND"], "BOND": ["BOND"], "FUT": [None, "IND"]}.get(type, [None])
    entries: list[dict] = []
    for sec_type in sec_types:
        # by name first, by ticker last: a name search leaves IBKR's strikes lookup
        # empty for the underlying until the next ticker search (reference §3)
        entries += _search(ctx, query, True, sec_type)
        try:
            ticker = normalise_symbol(query)
        except UsageError:
            ticker = None  # not ticker-shaped (spaces): a name search only
        if ticker is not None:
            found = _search(ctx, ticker, False, sec_type)
            exact = [e for e in found if str(e.get("symbol") or "").upper() == ticker]
            entries = exact + entries + [e for e in found if e not in exact]
    rows, seen = [], set()
    for entry in entries:
        for row in _rows(entry):
            key = (row["conid"], row["issuer_id"])
            if key in seen:
                continue
            seen.add(key)
            rows.append(row)
    if type in ("OPT", "FUT", "CASH", "STK"):
        rows = [r for r in rows if type in (r["sec_types"] or "").split(",")]
    notes = []
    if not rows:
        notes.append(f"IBKR found no {type + ' ' if type else ''}contracts for {query!r}")
    return Result(rows, provenance="documented", variant=SECDEF_SEARCH.key, notes=notes)


# -- info ---------------------------------------------------------------------------------
def _yyyymmdd(value) -> str | None:
    text = text_value(value)
    if text and len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return None


def _bool(value):
    return value if isinstance(value, bool) else None


def _secdef(ctx, conid: int) -> dict:
    try:
        data = ctx.call(SECDEF, query={"conids": str(conid)})
    except (NotServed, UsageError):
        return {}
    entries = data.get("secdef") if isinstance(data, dict) else None
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and integer(e.get("conid")) == conid:
            return e
    return {}


def fetch_info(ctx, contract):
    text = str(contract or "").strip().upper()
    if text.isdigit() and int(text) > 0:
        conid = int(text)
    else:
        conid = int(ctx.resolve_symbol(text)["conid"])
    try:
        info = ctx.call(CONTRACT_INFO, path={"conid": conid})
    except UsageError as exc:
        if exc.reason != "gateway-rejected":
            raise
        raise UsageError(
            f"IBKR knows no contract {conid}",
            reason="unknown-conid",
            hint="Find conids with 'ibgw contracts search TEXT'.",
        ) from None
    if not isinstance(info, dict) or not info:
        raise UsageError(
            f"IBKR knows no contract {conid}",
            reason="unknown-conid",
            hint="Find conids with 'ibgw contracts search TEXT'.",
        )
    sd = _secdef(ctx, conid)
    right = (text_value(info.get("right")) or text_value(sd.get("putOrCall")) or "")[:1].upper()
    strike = number(info.get("strike"))
    if strike is None:
        strike = number(sd.get("strike"))
    multiplier = number(info.get("multiplier"))
    if multiplier is None:
        multiplier = number(sd.get("multiplier"))
    row = {
        "conid": integer(info.get("con_id")) or conid,
        "symbol": text_value(info.get("symbol")) or text_value(sd.get("ticker")),
        "name": text_value(info.get("company_name")) or text_value(sd.get("name")),
        "sec_type": text_value(info.get("instrument_type")) or text_value(sd.get("assetClass")),
        "type": text_value(sd.get("type")),
        "currency": text_value(info.get("currency")) or text_value(sd.get("currency")),
        "listing_exchange": text_value(sd.get("listingExchange")),
        "exchanges": text_value(info.get("valid_exchanges")),
        "local_symbol": text_value(info.get("local_symbol")),
        "trading_class": text_value(info.get("trading_class")),
        "multiplier": multiplier or None,
        "expiry": _yyyymmdd(info.get("expiry_full")) or _yyyymmdd(info.get("maturity_date")),
        "strike": strike or None,
        "right": right if right in ("C", "P") else None,
        "underlying_conid": integer(info.get("underlying_con_id")) or None,
        "sector": text_value(sd.get("sector")),
        "industry": text_value(info.get("industry")) or text_value(sd.get("group")),
        "category": text_value(info.get("category")) or text_value(sd.get("sectorGroup")),
        "country": text_value(sd.get("countryCode")),
        "has_options": _bool(sd.get("hasOptions")),
        "regular_hours_only": _bool(info.get("r_t_h")),
        "description": text_value(info.get("text")),
    }
    notes = [] if sd else ["/trsrv/secdef gave nothing for this conid: some fields are empty"]
    return Result(row, provenance="documented", variant=CONTRACT_INFO.key, notes=notes)
