"""Fetch function and schema for ``ibgw fundamentals`` (imported only when it runs).

Every section yields the same rows: ``field``, ``value`` (text as IBKR formats it),
``number`` (the value parsed, when it is one), ``period`` and ``source`` (which part
of which answer). The undocumented answers are parsed defensively: the shapes come
from the answers [S11] recorded in 2020 (``samples/responses/*.json``), which the
fake fixtures copy; the ``/iserver/fundamentals/{conid}/summary`` answer was never
recorded, so its parser accepts a flat object of values or landing-style widgets
(our guess, which the fixture follows). An answer in none of the known shapes is
treated as "not served" so the next variant is tried.
"""

from __future__ import annotations

import html
import re

from marshmallow import Schema, fields

from ibgw.contracts import poll_snapshot
from ibgw.errors import NotServed, UsageError
from ibgw.parse import integer, number
from ibgw.runner import not_entitled

from . import (
    DIVIDENDS,
    FINANCIALS,
    ISERVER_SUMMARY,
    LANDING,
    RATIO_DETAILS,
    SECTION_VARIANTS,
    SNAPSHOT,
)

SNAPSHOT_POLLS = 6  # the pre-flight call plus up to 5 re-polls
POLL_INTERVAL = 0.5  # seconds between re-polls on a live gateway
FAKE_INTERVAL = 0.02  # the fake backend fills a snapshot on the second call
TEXT_CHARS = 300
HISTORY = 4  # dividend history rows shown

LANDING_WIDGETS = {
    "summary": "profile,ratings",
    "financials": "financials",
    "ratios": "key_ratios",
    "dividends": "dividends",
}
# The search ids [S11] shows, with a label for answers that carry none.
RATIO_SEARCH_IDS = (
    ("C|PENORM,LAST_DAY,0", "P/E (normalised)"),
    ("C|GROSMGN,TTM,0", "Gross margin"),
    ("C|PR2TANBK,LAST_DAY,0,((C|TANBVPS,LFI,0))", "Price to tangible book"),
)
# Documented snapshot fields (OpenAPI mdFields, reference §5.1) per section.
SNAPSHOT_FIELDS = {
    "summary": {
        "7051": "company name",
        "7280": "industry",
        "7281": "category",
        "31": "last price",
        "7293": "52-week high",
        "7294": "52-week low",
        "7671": "dividends (forward)",
        "7672": "dividends (trailing 12 months)",
        "7674": "EMA 200",
        "7675": "EMA 100",
        "7676": "EMA 50",
        "7677": "EMA 20",
        "7283": "option implied vol (30 days)",
        "7087": "historical vol (30 days)",
    },
    "dividends": {
        "7671": "dividends (forward)",
        "7672": "dividends (trailing 12 months)",
        "31": "last price",
    },
}
TEXT_FIELDS = {"7051", "7280", "7281"}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class FundamentalSchema(Schema):
    section = fields.String()
    field = fields.String()
    value = fields.String(allow_none=True)
    number = fields.Float(allow_none=True)
    period = fields.String(allow_none=True)
    source = fields.String()


class Unrecognised(Exception):
    """An answer in none of the shapes we know."""


# -- helpers ----------------------------------------------------------------------
_TAG = re.compile(r"<[^>]{0,500}>")
_SPACE = re.compile(r"\s+")


def text(value, limit: int = TEXT_CHARS) -> str | None:
    """Plain one-line text from a string or number; ``None`` for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        return None
    out = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()
    if len(out) > limit:
        out = out[: limit - 1].rstrip() + "…"
    return out or None


_CURRENCY = re.compile(r"^[$€£¥]\s*|\s+[A-Z]{3}$")


def as_number(shown: str | None) -> float | None:
    """The displayed value as a number: ``"0.52%"`` -> 0.52 (percent points),
    ``"420.45B"`` -> 4.2045e11, ``"$0.25"``/``"0.25 USD"`` -> 0.25, ``"C189.63"``
    (prior close) -> 189.63; ``None`` for text and dates."""
    if shown is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", shown):
        return None
    return number(_CURRENCY.sub("", shown))


def row(
    section: str, field: str, value, source: str, period=None, numeric: bool = True
) -> dict | None:
    shown = text(value)
    if shown is None or not field:
        return None
    return {
        "section": section,
        "field": field,
        "value": shown,
        "number": as_number(shown) if numeric else None,
        "period": text(period),
        "source": source,
    }


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def ymd(value) -> str | None:
    """``YYYY-MM-DD`` from ``{"d": 7, "m": "FEB", "y": 2020}`` or ``"20200207"``."""
    if isinstance(value, dict):
        day, year = integer(value.get("d")), integer(value.get("y"))
        month = str(value.get("m") or "").upper()[:3]
        if day and year and month in MONTHS:
            return f"{year:04d}-{MONTHS.index(month) + 1:02d}-{day:02d}"
        return None
    digits = str(value or "")
    if re.fullmatch(r"\d{8}", digits):
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    return None


def _label(key: str) -> str:
    """``marketCap`` -> ``market cap``; ``dividend_yield`` -> ``dividend yield``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ")
    return _SPACE.sub(" ", spaced).strip().lower()


# -- landing widgets [S11 samples/responses/widgets-all.json] -----------------------------
def _about(section, widget, src):
    content = widget.get("content")
    return [row(section, "description", content if isinstance(content, str) else None, src)]


def _ratings(section, widget, src):
    summary = _dict(_dict(widget.get("content")).get("summary"))
    rows = [row(section, "analyst consensus", summary.get("consensus"), src)]
    for key in ("buy", "hold", "sell"):
        rows.append(row(section, f"analysts: {key}", summary.get(key), src))
    names = {"AVG": "average", "MED": "median", "HIGH": "high", "LOW": "low"}
    for target in _list(summary.get("targets")):
        t = _dict(target)
        kind = names.get(str(t.get("kind") or "").upper())
        if kind:
            rows.append(
                row(section, f"price target ({kind})", t.get("formatted_abs") or t.get("abs"), src)
            )
    return rows


def _financial(section, widget, src):
    rows = []
    for item in _list(_dict(widget.get("content")).get("data")):
        item = _dict(item)
        trend = [_dict(t) for t in _list(item.get("trend"))]
        period = trend[-1].get("year") if trend else None
        rows.append(row(section, text(item.get("name")) or "", item.get("current"), src, period))
    return rows


def _key_ratios(section, widget, src):
    rows = []
    for item in _list(_dict(widget.get("content")).get("data")):
        item = _dict(item)
        name = text(item.get("name")) or ""
        rows.append(row(section, name, item.get("value"), src))
        rows.append(row(section, f"{name} (industry average)", item.get("indAvg"), src))
    return rows


def _dividend_widget(section, widget, src):
    content = _dict(widget.get("content"))
    data = _dict(content.get("dividend_data"))
    return [
        row(section, "dividend yield", content.get("formatted_yield_ttm"), src, "TTM"),
        row(section, "payout ratio", content.get("formatted_payout_ratio"), src),
        row(section, "annual dividend", data.get("formatted_annual_dividend_ttm"), src, "TTM"),
        row(section, "next dividend", data.get("formatted_next_payment"), src),
        # sic: the recorded widget spells it 'ex_divident_date'
        row(
            section,
            "next ex-dividend date",
            ymd(data.get("ex_divident_date") or data.get("ex_dividend_date")),
            src,
        ),
    ]


WIDGETS = {  # answer key -> parser; 'profile' is answered as 'about', 'financials' as 'financial'
    "about": _about,
    "profile": _about,
    "ratings": _ratings,
    "financial": _financial,
    "financials": _financial,
    "key_ratios": _key_ratios,
    "dividends": _dividend_widget,
}


def parse_widgets(section: str, data, prefix: str) -> list[dict]:
    """Rows from every known widget in ``data``; raises Unrecognised when it holds none."""
    if not isinstance(data, dict):
        raise Unrecognised
    found, rows = False, []
    for key, parse in WIDGETS.items():
        widget = data.get(key)
        if isinstance(widget, dict):
            found = True
            rows += parse(section, widget, f"{prefix}:{key}")
    if not found:
        raise Unrecognised
    return [r for r in rows if r]


# -- /iserver/fundamentals/{conid}/summary (shape never recorded: guessed) -----------------
_SKIP = {"conid", "conidex", "error", "statuscode"}


def parse_summary(section: str, data) -> list[dict]:
    """Guess: landing-style widgets, or a flat object of values (``companyName``,
    ``industry``, ``marketCap``, ...). Scalars become rows labelled from their keys."""
    if not isinstance(data, dict) or not data or "error" in data:
        raise Unrecognised
    try:
        rows = parse_widgets(section, data, "summary")
    except Unrecognised:
        rows = []
    for key, value in data.items():
        if key.lower() in _SKIP or key in WIDGETS or isinstance(value, dict | list):
            continue
        rows.append(row(section, _label(key), value, f"summary:{key}"))
    rows = [r for r in rows if r]
    if not rows and not any(key in WIDGETS for key in data):
        raise Unrecognised
    return rows


# -- /fundamentals/financials [S11 samples/responses/financials-income.json] --------------
def parse_financials(section: str, data, kind: str) -> tuple[list[dict], str | None]:
    """Rows for the latest period of the statement, and the unit note
    (``IN MILLIONS OF USD (except per share item)``)."""
    if not isinstance(data, dict) or not ({"table", "generalInfo"} & set(data)):
        raise Unrecognised
    src = f"financials:{kind}"
    table = _dict(data.get("table"))
    columns = [_dict(c) for c in _list(table.get("columns"))]
    unit = None
    if columns:
        unit = " ".join(
            x for x in (text(columns[0].get("value")), text(columns[0].get("secondaryValue"))) if x
        )
    latest = next(
        (c for c in columns[1:] if c.get("name") not in ("change", "trend", "metric_name")), None
    )
    rows = []
    if latest is not None:
        name, label = latest.get("name"), text(latest.get("value"))
        for item in _list(table.get("rows")):
            item = _dict(item)
            rows.append(
                row(section, text(item.get("metric_name")) or "", item.get(name), src, label)
            )
    if not rows:
        for item in _list(data.get("generalInfo")):
            item = _dict(item)
            rows.append(
                row(
                    section,
                    text(item.get("name")) or "",
                    item.get("value"),
                    f"{src}:generalInfo",
                    ymd(item.get("date")) or item.get("date"),
                )
            )
    return [r for r in rows if r], unit or None


# -- /fundamentals/ratio_details [S11 samples/responses/ratios.json] ----------------------
def parse_ratio(section: str, data, search_id: str, label: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise Unrecognised
    meta = _dict(data.get("meta"))
    name = text(meta.get("trend")) or label
    mine = next((_dict(d) for d in data["data"] if _dict(d).get("isRequestedTicker")), None)
    if mine is None:
        return []
    code = search_id.split("|", 1)[1].split(",", 1)[0]
    src = f"ratio_details:{code}"
    return [
        r
        for r in (
            row(section, name, mine.get("ttm"), src, text(meta.get("ttm")) or "TTM"),
            row(
                section,
                f"{name} ({text(meta.get('average')) or '5Y AVG'})",
                mine.get("average"),
                src,
            ),
        )
        if r
    ]


# -- /fundamentals/dividends [S11 samples/responses/fundamentals-dividends.json] ----------
COMPARISON = {"div_yield": ("dividend yield", "TTM"), "div_per_share": ("annual dividend", None)}


def parse_dividends(section: str, data) -> list[dict]:
    keys = {"history", "payout_ratio", "industry_comparison", "next_dividend"}
    if not isinstance(data, dict) or not (keys & set(data)):
        raise Unrecognised
    rows = []
    for item in _list(_dict(data.get("industry_comparison")).get("content")):
        item = _dict(item)
        field, period = COMPARISON.get(
            item.get("search_id"), ((text(item.get("title")) or "").lower(), None)
        )
        rows.append(
            row(
                section, field, item.get("formatted_value"), "dividends:industry_comparison", period
            )
        )
    payout = _dict(_dict(data.get("payout_ratio")).get("content"))
    rows.append(
        row(section, "payout ratio", payout.get("formatted_value"), "dividends:payout_ratio")
    )
    nxt = _dict(_dict(data.get("next_dividend")).get("content"))
    rows.append(
        row(
            section,
            "next dividend",
            nxt.get("formatted_dividend_amount"),
            "dividends:next_dividend",
        )
    )
    rows.append(
        row(
            section,
            "next ex-dividend date",
            ymd(nxt.get("ex_dividend_date")),
            "dividends:next_dividend",
        )
    )
    rows.append(
        row(section, "next payment date", ymd(nxt.get("payment_date")), "dividends:next_dividend")
    )
    history = []
    for series in _list(_dict(data.get("history")).get("series")):
        series = _dict(series)
        if series.get("name") == "dividends":
            history = [
                _dict(p)
                for p in _list(series.get("plotData"))
                if _dict(p).get("type") != "ESTIMATE"
            ]
    for point in sorted(history, key=lambda p: number(p.get("x")) or 0, reverse=True)[:HISTORY]:
        rows.append(
            row(
                section,
                "dividend paid",
                point.get("formatted_amount") or point.get("amount"),
                "dividends:history",
                ymd(point.get("ex_dividend_date")),
            )
        )
    return [r for r in rows if r]


# -- snapshot (documented) ----------------------------------------------------------------
def snapshot_rows(ctx, section: str, conid: int, shown: str) -> list[dict]:
    """The section's snapshot fields, past the pre-flight (the first call for a conid
    answers only conid/conidEx): up to SNAPSHOT_POLLS calls, POLL_INTERVAL apart."""
    wanted = SNAPSHOT_FIELDS.get(section)
    if not wanted:
        raise NotServed(
            f"no documented snapshot field carries {section}",
            reason="not-served",
            tried=[SNAPSHOT.key],
        )
    interval = FAKE_INTERVAL if getattr(ctx.config, "backend", "live") == "fake" else POLL_INTERVAL

    def arrived(v: dict) -> bool:
        return any(v.get(f) not in (None, "") for f in wanted)

    def settled(v: dict) -> bool:  # fields arrived, or not entitled: waiting will not help
        return arrived(v) or str(v.get("6509") or "").startswith("N")

    fields = ",".join([*wanted, "6509"])
    values = poll_snapshot(ctx, [conid], fields, settled, interval=interval, polls=SNAPSHOT_POLLS)
    values = values[conid]
    if not arrived(values) and str(values.get("6509") or "").startswith("N"):
        raise not_entitled(f"market data for {shown} (snapshot availability 'N')")
    rows = []
    for field_id, label in wanted.items():
        value = values.get(field_id)
        rows.append(
            row(section, label, value, f"snapshot:{field_id}", numeric=field_id not in TEXT_FIELDS)
        )
    rows = [r for r in rows if r]
    if not rows:
        raise NotServed(
            f"no snapshot fields arrived for {shown} after {SNAPSHOT_POLLS} calls",
            reason="no-data",
            tried=[SNAPSHOT.key],
            hint="The market-data stream may need a subscription, or more time: retry shortly.",
        )
    return rows


# -- the read -------------------------------------------------------------------------------
def _call(ctx, endpoint, **kw):
    """Call an undocumented variant; a 400 means this build does not know it the way the
    sources did: treated like "not served" so the next variant is tried."""
    try:
        return ctx.call(endpoint, **kw)
    except UsageError as exc:
        if exc.reason != "gateway-rejected":
            raise
        raise NotServed(
            f"{endpoint.key} rejected the request", reason="rejected", tried=[endpoint.key]
        ) from None


def _unrecognised(endpoint) -> NotServed:
    return NotServed(
        f"{endpoint.key} answered in an unknown shape",
        reason="unexpected-answer",
        tried=[endpoint.key],
    )


def fetch_fundamentals(ctx, symbol, section="summary"):
    contract = ctx.resolve_symbol(symbol)
    conid, shown = contract["conid"], contract["symbol"]

    def attempt(endpoint):
        try:
            rows = _attempt(ctx, endpoint, section, conid, shown)
        except Unrecognised:
            raise _unrecognised(endpoint) from None
        if not rows:
            ctx.note(f"the gateway answered ({endpoint.path}) with no {section} for {shown}")
        return rows

    try:
        return ctx.variants(SECTION_VARIANTS[section], attempt)
    except NotServed as exc:
        hint = exc.hint
        if section in ("financials", "ratios"):
            hint = (
                f"No documented endpoint carries {section}; 'ibgw fundamentals {shown}' (summary) "
                "and '--section dividends' fall back to the documented snapshot."
            )
        raise NotServed(
            f"no {section} source is served by this gateway (tried: {'; '.join(exc.tried)})",
            reason=exc.reason,
            tried=exc.tried,
            hint=hint,
        ) from None


def _attempt(ctx, endpoint, section, conid, shown) -> list[dict]:
    if endpoint is SNAPSHOT:
        rows = snapshot_rows(ctx, section, conid, shown)
        ctx.note("from the documented market-data snapshot: the fundamentals it carries as fields")
        return rows
    if endpoint is LANDING:
        data = _call(
            ctx,
            LANDING,
            path={"conid": conid},
            query={"widgets": LANDING_WIDGETS[section], "lang": "en"},
        )
        return parse_widgets(section, data, "landing")
    if endpoint is ISERVER_SUMMARY:
        return parse_summary(section, _call(ctx, ISERVER_SUMMARY, path={"conid": conid}))
    if endpoint is FINANCIALS:
        data = _call(
            ctx, FINANCIALS, path={"conid": conid}, query={"annual": "true", "type": "income"}
        )
        rows, unit = parse_financials(section, data, "income")
        if unit and rows:
            ctx.note(f"annual income statement, {unit}")
        return rows
    if endpoint is RATIO_DETAILS:
        rows = []
        for index, (search_id, label) in enumerate(RATIO_SEARCH_IDS):
            try:
                data = _call(
                    ctx, RATIO_DETAILS, path={"conid": conid}, query={"search_id": search_id}
                )
                rows += parse_ratio(section, data, search_id, label)
            except (NotServed, Unrecognised):
                if index == 0:
                    raise  # the first ratio decides whether the endpoint is there at all
        return rows
    if endpoint is DIVIDENDS:
        return parse_dividends(section, _call(ctx, DIVIDENDS, path={"conid": conid}))
    raise NotServed(
        f"{endpoint.key} is not a {section} variant", tried=[endpoint.key]
    )  # pragma: no cover
