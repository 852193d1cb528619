"""Fetch functions and schemas for the news reads (imported only when a read runs).

The headline variants are undocumented and their answers only partly known, so the
parsers here are defensive: each looks for the headline list in the places the
sources suggest, maps item keys from several spellings, and reports an answer it
does not recognise as "not served" (the next variant is tried) rather than
guessing. Fixtures in ``fixtures/news.json`` follow exactly the shapes guessed here.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import re

from marshmallow import Schema, fields

from ibgw.cache import age_text
from ibgw.errors import NotServed, Unavailable, UsageError
from ibgw.parse import integer, number

from . import (
    FYI_NOTIFICATIONS,
    FYI_UNREAD,
    HEADLINE_VARIANTS,
    LANDING_NEWS,
    PORTFOLIO_NEWS,
)

log = logging.getLogger("ibgw.news")  # --debug: each variant's outcome (paths and counts only)

# IBKR: /fyi/unreadnumber "not more than 1 time in 5 minutes" (423 otherwise)
UNREAD_MAX_AGE = 300.0
BODY_CHARS = 100


class HeadlineSchema(Schema):
    time = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    provider = fields.String(allow_none=True)
    headline = fields.String()
    sentiment = fields.Float(allow_none=True)
    id = fields.String(allow_none=True)


class FyiSchema(Schema):
    time = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    headline = fields.String(allow_none=True)
    body = fields.String(allow_none=True)
    id = fields.String(allow_none=True)
    read = fields.Boolean(allow_none=True)


# -- small parsers ---------------------------------------------------------------
_TAG = re.compile(r"<[^>]{0,500}>")
_SPACE = re.compile(r"\s+")


def clean_text(value, limit: int | None = None) -> str | None:
    """One line of plain text: HTML tags dropped, entities decoded, blanks collapsed."""
    if not isinstance(value, str):
        return None
    text = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()
    if not text:
        return None
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def iso_time(value) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC) from epoch seconds or milliseconds (number or
    numeric string) or an ISO-like string; ``None`` when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    seconds = (
        number(value)
        if not isinstance(value, str) or re.fullmatch(r"\s*\d+(\.\d*)?\s*", value)
        else None
    )
    if seconds is not None:
        if seconds > 1e11:  # epoch milliseconds
            seconds /= 1000.0
        try:
            moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        text = re.sub(r"\.\d+", "", text)  # fractional seconds: "2020-03-06 02:35:53.0"
        try:
            moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:  # the sources' naive times match their epoch times in UTC
            moment = moment.replace(tzinfo=_dt.UTC)
        return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def _first(item: dict, *keys):
    for key in keys:
        value = item.get(key)
        if value not in (None, ""):
            return value
    return None


# -- headline answers --------------------------------------------------------------
# Where the list of items may sit. Recorded [S11 news-data.json]:
#   {"news": {"title": "News", "content": [item, ...]}}
# Guessed (no recording; other IBKR widget answers use these wrappers):
#   [item, ...]                        (S12's empty answer was a bare array)
#   {"news": [item, ...]}  {"articles"|"headlines"|"content"|"data": [item, ...]}
_LIST_KEYS = ("news", "articles", "headlines", "content", "data", "items")


def headline_items(data) -> list | None:
    """The headline items in ``data``, ``[]`` for a recognised empty answer, or
    ``None`` when the shape is not one we know."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        return None
    for key in _LIST_KEYS:
        value = data.get(key)
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            inner = value.get("content")
            if isinstance(inner, list):
                return inner
            if inner is None and not value.get("error"):
                # {"news": {"title": "News"}}: widget present but empty
                # (S11 shows '"news": {"title": "News", "content": []}' for a fund)
                if set(value) <= {"title", "content"}:
                    return []
    return None


def headline_row(item) -> dict | None:
    """A row from one item.

    Recorded keys: landing widget [S11] newsId, headlineContent, source, conid, time
    (epoch ms), displayTime, sentiment; portfolio news (build 10.46.1l, issue 17) id,
    headline, source, provider, sentiment, receiptTime, tickers. Accepted too
    (guessed): articleId, title, sourceName, date/published strings."""
    if not isinstance(item, dict):
        return None
    headline = clean_text(_first(item, "headlineContent", "headline", "title", "hl"), limit=300)
    if headline is None:
        return None
    ident = _first(item, "newsId", "id", "articleId", "news_id")
    source = _first(item, "source", "sourceName")
    provider = _first(item, "provider", "providerCode")
    if source is None and provider is not None:
        source = provider
    when = iso_time(
        _first(item, "time", "receiptTime", "timestamp", "date", "displayTime", "published")
    )
    sentiment = number(item.get("sentiment"))
    return {
        "time": when,
        "source": clean_text(source) if isinstance(source, str) else None,
        "provider": clean_text(provider) if isinstance(provider, str) else None,
        "headline": headline,
        "sentiment": sentiment if sentiment is not None and -100 <= sentiment <= 100 else None,
        "id": str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None,
    }


_TICKER_SPLIT = re.compile(r"[\s,;]+")


def _tickers(value) -> set[str]:
    """Ticker symbols from a ``tickers`` value: a list of strings (or of objects with
    ``symbol``/``ticker``), or one string separated by commas, semicolons or blanks."""
    out: set[str] = set()
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, dict):
            v = _first(v, "symbol", "ticker")
        if isinstance(v, str):
            out.update(t.upper() for t in _TICKER_SPLIT.split(v.strip()) if t)
    return out


def _about(item, conid: int, symbol: str) -> bool:
    """Whether a portfolio-news item is about the contract: its ``tickers`` name the
    symbol, or a ``conid``/``conids`` key (where a build sends one) names the conid."""
    if not isinstance(item, dict):
        return False
    if symbol.upper() in _tickers(item.get("tickers")):
        return True
    if integer(item.get("conid")) == conid:
        return True
    conids = item.get("conids")
    if isinstance(conids, list | str):
        values = conids.split(",") if isinstance(conids, str) else conids
        return any(integer(v) == conid for v in values)
    return False


def _variant_query(endpoint, conid: int) -> tuple[dict, dict]:
    if endpoint is LANDING_NEWS:
        return {"conid": conid}, {"widgets": "news", "lang": "en"}
    return {}, {}


def _call_variant(ctx, endpoint, path, query):
    """Call an undocumented variant. A 400 from one of them means this build does not
    know it the way the sources did, and a 5xx that it fails right now: either is
    treated like "not served" so that the next variant is tried."""
    try:
        return ctx.call(endpoint, path=path, query=query)
    except UsageError as exc:
        if exc.reason != "gateway-rejected":
            raise
        raise NotServed(
            f"{endpoint.key} rejected the request", reason="rejected", tried=[endpoint.key]
        ) from None
    except Unavailable as exc:
        if exc.reason != "gateway-error":
            raise
        raise NotServed(
            f"{endpoint.key} answered with a server error",
            reason="gateway-error",
            tried=[endpoint.key],
        ) from None


def _none_served(exc: NotServed) -> NotServed | Unavailable:
    """The runner's "none of the variants" error, with the variants named in the
    message itself (the table output shows only the message and hint). When every
    variant failed with a server error the gateway is at fault: ``unavailable``."""
    failed = [t for t in exc.tried if not t.endswith("(gateway-error)")]
    if exc.tried and not failed:
        return Unavailable(
            f"every headline source failed with a server error (tried: {'; '.join(exc.tried)})",
            reason="gateway-error",
        )
    return NotServed(
        f"no headline source is served by this gateway (tried: {'; '.join(exc.tried)})",
        reason=exc.reason,
        tried=exc.tried,
        hint=exc.hint,
    )


def fetch_headlines(ctx, symbol, limit=10):
    if not getattr(ctx.config, "allow_undocumented", True):
        raise NotServed(
            "news headlines need undocumented gateway endpoints, and allow_undocumented is off",
            reason="undocumented-disabled",
            tried=[f"{e.key} (undocumented, disabled)" for e in HEADLINE_VARIANTS],
            hint="IBKR documents no news endpoint; set allow_undocumented = true (or IBGW_ALLOW_UNDOCUMENTED=1) "
            "to use them, or see 'ibgw news fyi'.",
        )
    contract = ctx.resolve_symbol(symbol)
    conid, shown = contract["conid"], contract["symbol"]

    def attempt(endpoint):
        path, query = _variant_query(endpoint, conid)
        try:
            data = _call_variant(ctx, endpoint, path, query)
        except NotServed as exc:
            log.debug("news variant %s: %s", endpoint.key, exc.reason)
            raise
        items = headline_items(data)
        if items is None:
            log.debug("news variant %s: unexpected-answer", endpoint.key)
            raise NotServed(
                f"{endpoint.key} answered in an unknown shape",
                reason="unexpected-answer",
                tried=[endpoint.key],
            )
        total = len(items)
        if endpoint is PORTFOLIO_NEWS:
            items = [i for i in items if _about(i, conid, shown)]
        rows = [r for r in (headline_row(i) for i in items) if r is not None]
        log.debug(
            "news variant %s: works (%d items, %d headlines about %s)",
            endpoint.key,
            total,
            len(rows),
            shown,
        )
        if not rows:
            if endpoint is PORTFOLIO_NEWS:
                ctx.note(
                    f"this gateway only serves news about held positions: it returned "
                    f"{total} item{'s' if total != 1 else ''}, none about {shown}"
                )
            else:
                ctx.note(
                    f"the gateway answered ({endpoint.path}) with {total} "
                    f"item{'s' if total != 1 else ''} and no headlines for {shown}"
                )
        return rows

    try:
        rows = ctx.variants(HEADLINE_VARIANTS, attempt)
    except NotServed as exc:
        raise _none_served(exc) from None
    rows.sort(key=lambda r: r["time"] or "", reverse=True)
    seen, unique = set(), []
    for row in rows:  # the recorded answer repeats items under new ids: drop exact repeats
        key = (row["time"], row["headline"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique[:limit]


# -- FYI notifications -------------------------------------------------------------
def fyi_row(item) -> dict | None:
    """Documented keys [S1, S3]: R (read 0/1), D (epoch seconds as a string), MS
    (headline), MD (HTML body), ID, HT, FC (category code)."""
    if not isinstance(item, dict):
        return None
    read = item.get("R")
    ident = item.get("ID")
    return {
        "time": iso_time(item.get("D")),
        "category": item.get("FC") if isinstance(item.get("FC"), str) else None,
        "headline": clean_text(item.get("MS")),
        "body": clean_text(item.get("MD"), limit=BODY_CHARS),
        "id": str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None,
        "read": None if integer(read) is None else integer(read) != 0,
    }


def _unread_count(ctx) -> tuple[int | None, float | None]:
    """IBKR's unread count and its age in seconds: cached for five minutes because
    IBKR answers 423 to a second call within that time."""
    key = ctx.cache_key("fyi-unreadnumber")
    cached = ctx.cache.get(key, UNREAD_MAX_AGE)
    if cached is not None:
        return cached[0], cached[1]
    try:
        data = ctx.call(FYI_UNREAD)
    except Unavailable:
        stale = ctx.cache.get(key)  # 423 (too soon), paced or rate-limited: any older count
        return (stale[0], stale[1]) if stale is not None else (None, None)
    count = integer(data.get("BN")) if isinstance(data, dict) else None
    if count is not None:
        ctx.cache.set(key, count)
    return count, 0.0 if count is not None else None


def fetch_fyi(ctx, limit=10, unread=False):
    data = ctx.call(FYI_NOTIFICATIONS, query={"max": limit})
    if data is None:
        data = []
    if not isinstance(data, list):
        raise Unavailable("unexpected answer from /fyi/notifications", reason="malformed-response")
    rows = [r for r in (fyi_row(i) for i in data) if r is not None]
    rows.sort(key=lambda r: r["time"] or "", reverse=True)
    if unread:
        rows = [r for r in rows if r["read"] is False]
        count, age = _unread_count(ctx)
        if count is None:
            ctx.note(
                "IBKR's unread count is not available right now (it may be read once per 5 minutes)"
            )
        else:
            when = "just now" if not age else f"checked {age_text(age)} ago"
            ctx.note(
                f"IBKR reports {count} unread notification{'s' if count != 1 else ''} ({when})"
            )
    return rows[:limit]
