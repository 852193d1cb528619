"""Fetch functions and schemas for ibgw-scanners (imported only when a read runs).

The scanner parameter tree is parsed into a small dict and cached on disk (key
``cache_key("scanner-params")``); every read here works from that copy:

``{"version": 1, "scan_types": [{"code", "name", "instruments"}],
"instruments": [{"type", "name", "filters"}], "filters": [{"code", "name", "group", "kind"}],
"locations": [{"location", "name", "group"}]}``
"""

from __future__ import annotations

import re

from marshmallow import Schema, fields

from ibgw import Result
from ibgw.cache import age_text
from ibgw.errors import Unavailable, UsageError
from ibgw.parse import integer

from . import SCANNER_PARAMS, SCANNER_RUN

MAX_AGE = 24 * 3600  # refresh the parameter tree once a day
MAX_RESULTS = 50
TREE_VERSION = 1
_FILTER = re.compile(r"([A-Za-z][A-Za-z0-9_]{0,63})=([A-Za-z0-9_.:,+\-]{1,64})")
_INT = re.compile(r"[-+]?\d{1,18}")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d{1,3})?")


# -- schemas --------------------------------------------------------------------
class ScanTypeSchema(Schema):
    code = fields.String()
    name = fields.String(allow_none=True)
    instruments = fields.List(fields.String())


class LocationSchema(Schema):
    location = fields.String()
    name = fields.String(allow_none=True)
    group = fields.String(allow_none=True)


class FilterSchema(Schema):
    code = fields.String()
    name = fields.String(allow_none=True)
    group = fields.String(allow_none=True)
    kind = fields.String(allow_none=True)


class ScanResultSchema(Schema):
    rank = fields.Integer(allow_none=True)
    symbol = fields.String(allow_none=True)
    conid = fields.Integer(allow_none=True)
    company = fields.String(allow_none=True)
    exchange = fields.String(allow_none=True)
    sec_type = fields.String(allow_none=True)
    scan_value = fields.String(allow_none=True)
    scan_column = fields.String(allow_none=True)


# -- the parameter tree -----------------------------------------------------------
def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _strings(value) -> list[str]:
    return (
        [v.strip() for v in value if isinstance(v, str) and v.strip()]
        if isinstance(value, list)
        else []
    )


def _flatten_locations(nodes, group: str | None, out: list, depth: int = 0) -> None:
    if not isinstance(nodes, list) or depth > 8:
        return
    for node in nodes:
        if not isinstance(node, dict):
            continue
        code = _text(node.get("type"))
        children = node.get("locations")
        top = group if depth else code
        if code and (depth or not children):
            out.append({"location": code, "name": _text(node.get("display_name")), "group": top})
        _flatten_locations(children, top, out, depth + 1)


def parse_tree(raw) -> dict:
    """The parsed tree from a ``/iserver/scanner/params`` answer."""
    if not isinstance(raw, dict):
        raise Unavailable(
            "unexpected answer from /iserver/scanner/params", reason="malformed-response"
        )
    scan_types = []
    for e in raw.get("scan_type_list") or []:
        if isinstance(e, dict) and _text(e.get("code")):
            scan_types.append(
                {
                    "code": _text(e["code"]),
                    "name": _text(e.get("display_name")),
                    "instruments": _strings(e.get("instruments")),
                }
            )
    instruments = []
    for e in raw.get("instrument_list") or []:
        if isinstance(e, dict) and _text(e.get("type")):
            instruments.append(
                {
                    "type": _text(e["type"]),
                    "name": _text(e.get("display_name")),
                    "filters": _strings(e.get("filters")),
                }
            )
    filters = []
    for e in raw.get("filter_list") or []:
        if isinstance(e, dict) and _text(e.get("code")):
            kind = _text(e.get("type")) or (
                "combo" if isinstance(e.get("combo_values"), list) else None
            )
            filters.append(
                {
                    "code": _text(e["code"]),
                    "name": _text(e.get("display_name")),
                    "group": _text(e.get("group")),
                    "kind": kind,
                }
            )
    locations: list[dict] = []
    _flatten_locations(raw.get("location_tree"), None, locations)
    if not scan_types:
        raise Unavailable(
            "the scanner parameters list no scan types",
            reason="malformed-response",
            hint="Try again later; run 'ibgw probe' if it persists.",
        )
    return {
        "version": TREE_VERSION,
        "scan_types": scan_types,
        "instruments": instruments,
        "filters": filters,
        "locations": locations,
    }


def _valid_cached(entry):
    if entry is None:
        return None
    tree, age = entry
    if (
        isinstance(tree, dict)
        and tree.get("version") == TREE_VERSION
        and all(
            isinstance(tree.get(k), list)
            for k in ("scan_types", "instruments", "filters", "locations")
        )
    ):
        return tree, age
    return None


def get_tree(ctx, refresh: bool = False) -> dict:
    """The scanner parameter tree: the disk copy when younger than a day (and no
    ``refresh``), else a fresh fetch; when IBKR's 15-minute pacing forbids the
    fetch, the disk copy of any age with a note."""
    key = ctx.cache_key("scanner-params")
    cached = _valid_cached(ctx.cache.get(key))
    if cached is not None and not refresh and cached[1] <= MAX_AGE:
        ctx.note(f"scanner parameters cached {age_text(cached[1])} ago")
        return cached[0]
    try:
        raw = ctx.call(SCANNER_PARAMS)
    except Unavailable as exc:
        if exc.reason == "paced" and cached is not None:
            ctx.note(
                f"scanner parameters cached {age_text(cached[1])} ago; not refreshed: "
                f"IBKR allows one fetch per 15 min ({exc.hint})"
            )
            return cached[0]
        raise
    tree = parse_tree(raw)
    ctx.cache.set(key, tree)
    return tree


def _known_instruments(tree: dict) -> list[str]:
    seen: dict[str, None] = {}
    for i in tree["instruments"]:
        seen.setdefault(i["type"], None)
    for s in tree["scan_types"]:
        for i in s["instruments"]:
            seen.setdefault(i, None)
    return list(seen)


def _some(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _instrument(tree: dict, value: str | None) -> str | None:
    if value is None:
        return None
    known = _known_instruments(tree)
    match = next((k for k in known if k.upper() == value.strip().upper()), None)
    if match is None:
        raise UsageError(
            f"instrument: unknown instrument type {value.strip()} (known: {_some(known)})",
            reason="unknown-instrument",
            hint="See 'ibgw scanners params' for the instruments of each scan type.",
        )
    return match


# -- reads ----------------------------------------------------------------------
def fetch_params(ctx, instrument=None, search=None, refresh=False):
    tree = get_tree(ctx, bool(refresh))
    wanted = _instrument(tree, instrument)
    needle = search.strip().lower() if search else None
    rows = []
    for s in tree["scan_types"]:
        if wanted and wanted not in s["instruments"]:
            continue
        if needle and needle not in s["code"].lower() and needle not in (s["name"] or "").lower():
            continue
        rows.append(dict(s))
    return rows


def _location_matches(row: dict, instrument: str) -> bool:
    group = row["group"] or ""
    head = instrument.split(".")[0]
    return (
        group == instrument
        or row["location"].startswith(instrument + ".")
        or group.split(".")[0] == head
        or row["location"].split(".")[0] == head
    )


def fetch_locations(ctx, instrument=None, refresh=False):
    tree = get_tree(ctx, bool(refresh))
    wanted = _instrument(tree, instrument)
    rows = [dict(r) for r in tree["locations"] if not wanted or _location_matches(r, wanted)]
    if wanted and not rows:
        ctx.note(f"no location is grouped under {wanted}; showing every location")
        rows = [dict(r) for r in tree["locations"]]
    return rows


def fetch_filters(ctx, instrument=None, refresh=False):
    tree = get_tree(ctx, bool(refresh))
    wanted = _instrument(tree, instrument)
    rows = [dict(f) for f in tree["filters"]]
    if wanted:
        entry = next((i for i in tree["instruments"] if i["type"] == wanted), None)
        names = set(entry["filters"]) if entry else set()
        if names:
            rows = [f for f in rows if f["code"] in names or (f["group"] or "") in names]
        else:
            ctx.note(f"the parameters list no filters for {wanted}; showing every filter")
    return rows


def parse_filter(text: str) -> tuple[str, object]:
    """``"priceAbove=5"`` -> ``("priceAbove", 5)``; numbers become numbers."""
    m = _FILTER.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        shown = (
            text if isinstance(text, str) and len(text) <= 40 and text.isprintable() else "value"
        )
        raise UsageError(
            f"filter: expected CODE=VALUE such as priceAbove=5, not {shown!r}",
            reason="invalid-filter",
        )
    code, raw = m.group(1), m.group(2)
    value: object = raw
    if _INT.fullmatch(raw):
        value = int(raw)
    elif _FLOAT.fullmatch(raw):
        number = float(raw)
        value = int(number) if number.is_integer() and abs(number) < 1e15 else number
    elif raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return code, value


def _scan_row(i: int, c: dict, column: str | None) -> dict:
    rank = integer(c.get("server_id"))
    conid = integer(c.get("con_id"))
    if conid is None:
        conid = integer(c.get("conidex"))
    data = c.get("scan_data")
    value = _text(data) if isinstance(data, str) else (None if data is None else str(data))
    return {
        "rank": rank + 1 if rank is not None and rank >= 0 else i + 1,
        "symbol": _text(c.get("symbol")) or _text(c.get("contract_description_1")),
        "conid": conid,
        "company": _text(c.get("company_name")),
        "exchange": _text(c.get("listing_exchange")),
        "sec_type": _text(c.get("sec_type")),
        "scan_value": value,
        "scan_column": column if value is not None else None,
    }


def fetch_run(ctx, type, instrument, location, filter=None):
    parsed = [parse_filter(f) for f in (filter or [])]  # syntax first: no call on bad input
    tree = get_tree(ctx)
    inst = _instrument(tree, instrument)
    code = type.strip()
    scan = next((s for s in tree["scan_types"] if s["code"].upper() == code.upper()), None)
    if scan is None:
        raise UsageError(
            f"type: unknown scan type {code}",
            reason="unknown-scan-type",
            hint=f"See 'ibgw scanners params --instrument {inst}'.",
        )
    if inst not in scan["instruments"]:
        raise UsageError(
            f"type: scan type {scan['code']} is not available for {inst} "
            f"(it is for {_some(scan['instruments'])})",
            reason="unknown-scan-type",
            hint=f"See 'ibgw scanners params --instrument {inst}'.",
        )
    loc = next(
        (
            r["location"]
            for r in tree["locations"]
            if r["location"].upper() == location.strip().upper()
        ),
        None,
    )
    if loc is None:
        raise UsageError(
            f"location: unknown scanner location {location.strip()}",
            reason="unknown-location",
            hint=f"See 'ibgw scanners locations --instrument {inst}'.",
        )
    codes = {f["code"].upper(): f["code"] for f in tree["filters"]}
    body_filters = []
    for fcode, value in parsed:
        canonical = codes.get(fcode.upper())
        if canonical is None:
            raise UsageError(
                f"filter: unknown filter code {fcode}",
                reason="unknown-filter",
                hint=f"See 'ibgw scanners filters --instrument {inst}'.",
            )
        body_filters.append({"code": canonical, "value": value})
    data = ctx.call(
        SCANNER_RUN,
        body={"instrument": inst, "location": loc, "type": scan["code"], "filter": body_filters},
    )
    if data is None:
        data = {}
    if isinstance(data, list):
        contracts, column = data, None
    elif isinstance(data, dict):
        contracts, column = data.get("contracts"), _text(data.get("scan_data_column_name"))
        if contracts is None:
            contracts = []
    else:
        contracts = None
    if not isinstance(contracts, list):
        raise Unavailable(
            "unexpected answer from /iserver/scanner/run", reason="malformed-response"
        )
    contracts = [c for c in contracts if isinstance(c, dict)]
    if column is None:
        column = next(
            (_text(c.get("column_name")) for c in contracts if _text(c.get("column_name"))), None
        )
    rows = [_scan_row(i, c, column) for i, c in enumerate(contracts[:MAX_RESULTS])]
    rows.sort(key=lambda r: r["rank"])
    if column and any(r["scan_value"] is not None for r in rows):
        ctx.note(f"scan_value is {column}")
    if not rows:
        ctx.note("the scanner returned no contracts")
    return Result(rows, provenance=SCANNER_RUN.provenance, variant=SCANNER_RUN.key)
