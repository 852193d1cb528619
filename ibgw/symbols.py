"""Symbol to contract resolution and account discovery, shared by every plugin.

``/iserver/secdef/search`` is also the prerequisite IBKR requires before
``/iserver/secdef/strikes`` and ``/iserver/secdef/info``; results are cached per
process (per gateway session), so a read that resolved a symbol has satisfied it.
"""

from __future__ import annotations

import re

from . import endpoints as E
from .errors import UsageError

US_EXCHANGES = ("NASDAQ", "NYSE", "ARCA", "AMEX", "BATS", "IEX", "NYSE ARCA", "PINK")
SYMBOL_RE = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,11}")


def normalise_symbol(symbol: str) -> str:
    value = (symbol or "").strip().upper()
    if not SYMBOL_RE.fullmatch(value):
        raise UsageError("symbol: expected a ticker such as AAPL or BRK.B", reason="invalid-symbol")
    return value


def _exchange_of(entry: dict) -> str:
    desc = entry.get("description")
    if isinstance(desc, str) and desc:
        return desc.upper()
    header = entry.get("companyHeader") or ""
    return header.rsplit(" - ", 1)[-1].upper() if " - " in header else ""


def _contract(entry: dict, symbol: str) -> dict:
    months, opt_exchanges = [], []
    for section in entry.get("sections") or []:
        if isinstance(section, dict) and section.get("secType") == "OPT":
            months = [m for m in str(section.get("months") or "").split(";") if m]
            opt_exchanges = [x for x in str(section.get("exchange") or "").split(";") if x]
    try:
        conid = int(str(entry.get("conid")))
    except (TypeError, ValueError):
        raise UsageError(f"unknown symbol {symbol}", reason="unknown-symbol") from None
    return {
        "conid": conid,
        "symbol": str(entry.get("symbol") or symbol),
        "exchange": _exchange_of(entry),
        "company": entry.get("companyName") or "",
        "months": months,
        "option_exchanges": opt_exchanges,
    }


def resolve_symbol(ctx, symbol: str, sec_type: str = "STK", exchange: str | None = None) -> dict:
    """The contract for ``symbol``: the US primary listing unless ``exchange`` is given."""
    symbol = normalise_symbol(symbol)
    cache = ctx._memo("symbols")
    key = (symbol, sec_type)
    results = cache.get(key)
    if results is None:
        results = ctx.call(E.SECDEF_SEARCH, query={"symbol": symbol, "secType": sec_type})
        if not isinstance(results, list):
            results = []
        cache[key] = results
    entries = [
        r for r in results if isinstance(r, dict) and str(r.get("symbol", "")).upper() == symbol
    ]
    entries = entries or [r for r in results if isinstance(r, dict)]
    if not entries:
        raise UsageError(
            f"unknown symbol {symbol}",
            reason="unknown-symbol",
            hint="Check the ticker; use --conid to give a contract id directly.",
        )
    if exchange:
        wanted = exchange.strip().upper()
        chosen = [e for e in entries if _exchange_of(e) == wanted]
        if not chosen:
            raise UsageError(f"{symbol} is not listed on {wanted}", reason="unknown-exchange")
        return _contract(chosen[0], symbol)
    us = [e for e in entries if _exchange_of(e) in US_EXCHANGES]
    return _contract((us or entries)[0], symbol)


def account_ids(ctx) -> list[str]:
    data = ctx.call(E.PORTFOLIO_ACCOUNTS)
    ctx._mark_primed("portfolio-accounts")
    ids = []
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict):
            ident = entry.get("accountId") or entry.get("id")
            if isinstance(ident, str) and ident:
                ids.append(ident)
    return ids


def choose_account(ctx, explicit: str | None = None) -> str:
    wanted = explicit or getattr(ctx.config, "account", None)
    ids = account_ids(ctx)
    if not ids:
        raise UsageError("no accounts are visible to this login", reason="no-accounts")
    if wanted is None:
        return ids[0]
    if wanted not in ids:
        raise UsageError(
            "account: not one of this login's accounts (see 'ibgw accounts')",
            reason="unknown-account",
        )
    return wanted
