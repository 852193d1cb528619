"""Symbol to contract resolution and account discovery, shared by every plugin.

``/iserver/secdef/search`` is also the prerequisite IBKR requires before
``/iserver/secdef/strikes``, ``/iserver/secdef/info`` and a derivative's market-data
snapshot; results are cached per transport and dropped when the brokerage session
changes (``Gateway._forget_session``, :func:`ibgw.session.observe_session`), so a
read that resolved a symbol in this session has satisfied it.

IBKR's search takes ``secType`` ``STK``, ``IND`` or ``BOND`` (spec v2.29.0). An
index (SPX, NDX, VIX) is found only with ``IND``: when a ``STK`` search has no entry
for the symbol itself, :func:`resolve_symbol` asks again with ``IND`` and says so
in a note.

A search answer that is not a list (``null``, an object) is a malformed gateway
answer (``unavailable``, exit 4), never "unknown symbol"; an empty list is.
"""

from __future__ import annotations

import re

from . import endpoints as E
from .errors import Unavailable, UsageError

US_EXCHANGES = ("NASDAQ", "NYSE", "ARCA", "AMEX", "BATS", "IEX", "NYSE ARCA", "PINK")
#: where US index options' underlyings are listed (the search's ``description``)
INDEX_EXCHANGES = ("CBOE", "NASDAQ", "CME", "NYSE", "CBOT", "ARCA")
SYMBOL_RE = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,11}")
SEC_TYPES = ("STK", "IND", "BOND")  # what /iserver/secdef/search accepts (spec v2.29.0)


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


def _contract(entry: dict, symbol: str, sec_type: str = "STK") -> dict:
    months, opt_exchanges = [], []
    for section in entry.get("sections") or []:
        if isinstance(section, dict) and section.get("secType") == "OPT":
            months = [m for m in str(section.get("months") or "").split(";") if m]
            opt_exchanges = [x for x in str(section.get("exchange") or "").split(";") if x]
    try:
        conid = int(str(entry.get("conid")))
    except (TypeError, ValueError):
        raise _malformed("the contract search (/iserver/secdef/search)") from None
    return {
        "conid": conid,
        "sec_type": sec_type,
        "symbol": str(entry.get("symbol") or symbol),
        "exchange": _exchange_of(entry),
        "company": entry.get("companyName") or "",
        "months": months,
        "option_exchanges": opt_exchanges,
    }


def _malformed(what: str) -> Unavailable:
    return Unavailable(
        f"the gateway's answer to {what} was malformed",
        reason="malformed-response",
        hint="The gateway answered with something other than the documented shape; retry, "
        "and if it persists run 'ibgw doctor' and report the gateway build.",
    )


def _search(ctx, symbol: str, sec_type: str) -> list:
    """The search answer for (symbol, secType), cached per transport (one brokerage
    session). A malformed answer raises and is not cached."""
    cache = ctx._memo("symbols")
    key = (symbol, sec_type)
    results = cache.get(key)
    if results is None:
        results = ctx.call(E.SECDEF_SEARCH, query={"symbol": symbol, "secType": sec_type})
        if not isinstance(results, list):
            raise _malformed("the contract search (/iserver/secdef/search)")
        cache[key] = results
    return results


def _matching(results: list, symbol: str) -> list[dict]:
    return [
        r for r in results if isinstance(r, dict) and str(r.get("symbol", "")).upper() == symbol
    ]


def resolve_symbol(ctx, symbol: str, sec_type: str = "STK", exchange: str | None = None) -> dict:
    """The contract for ``symbol``: the US primary listing unless ``exchange`` is given.

    ``sec_type`` is IBKR's search ``secType``: ``STK`` (default), ``IND`` or ``BOND``.
    With ``STK``, a search that has no entry for the symbol itself is repeated with
    ``IND`` (an index such as SPX); a note says so."""
    symbol = normalise_symbol(symbol)
    sec_type = str(sec_type or "STK").strip().upper()
    if sec_type not in SEC_TYPES:
        raise UsageError(
            f"sec-type: must be one of {', '.join(SEC_TYPES)}", reason="invalid-parameter"
        )
    results = _search(ctx, symbol, sec_type)
    entries = _matching(results, symbol)
    if not entries and sec_type == "STK":
        index = _matching(_search(ctx, symbol, "IND"), symbol)
        if index:
            entries, sec_type = index, "IND"
            note = getattr(ctx, "note", None)
            if note is not None:
                note(f"{symbol} is an index: resolved with --sec-type IND")
    entries = entries or [r for r in results if isinstance(r, dict)]
    if not entries:
        raise UsageError(
            f"unknown symbol {symbol}",
            reason="unknown-symbol",
            hint="Check the ticker (a bond needs --sec-type BOND; an index is tried "
            "automatically); use --conid to give a contract id directly.",
        )
    if exchange:
        wanted = exchange.strip().upper()
        chosen = [e for e in entries if _exchange_of(e) == wanted]
        if not chosen:
            raise UsageError(f"{symbol} is not listed on {wanted}", reason="unknown-exchange")
        return _contract(chosen[0], symbol, sec_type)
    home = US_EXCHANGES if sec_type != "IND" else INDEX_EXCHANGES + US_EXCHANGES
    us = [e for e in entries if _exchange_of(e) in home]
    return _contract((us or entries)[0], symbol, sec_type)


def account_ids(ctx) -> list[str]:
    """The account ids of ``/portfolio/accounts``. A malformed answer (``null``, an
    object) is ``unavailable``; an empty list is an empty list."""
    data = ctx.call(E.PORTFOLIO_ACCOUNTS)
    if not isinstance(data, list):
        raise _malformed("the account list (/portfolio/accounts)")
    ctx._mark_primed("portfolio-accounts")
    ids = []
    for entry in data:
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
