"""``ibgw depth SYMBOL``: the order book over the gateway's websocket (imported lazily).

Steps (endpoint reference §6 and §1.4):

1. the contract: ``ctx.resolve_symbol`` (``/iserver/secdef/search``), or ``--conid``;
2. the account (``ctx.account()``);
3. the websocket, opened by the core (``ctx.websocket()``, :mod:`ibgw.websocket`):
   it calls ``/iserver/accounts`` once (the brokerage prerequisite for market data)
   and ``/tickle`` (the brokerage session must be usable; its ``session`` is the
   websocket credential, which this plugin never sees), and checks every message
   sent against the websocket policy. Wait briefly for the hello (``system``/``sts``;
   ``sts`` with ``authenticated: false`` is a manual-action state), send
   ``sbd+ACCT+CONID[+EXCHANGE]``, read ``sbd`` messages until a book with at least
   one bid or ask arrives (within the configured timeout), send ``ubd+ACCT`` and
   close. An ``error`` on the ``sbd`` topic, or no book before the deadline, means
   no market-depth entitlement (exit 5).
4. ``--watch``: print every update until Ctrl-C, then unsubscribe, close, and return
   the last book (printed once more as the result).

A book message is a price ladder: ``{"topic": "sbd...", "data": [{"row": 0,
"focus": 0, "price": 501.43, "ask": 200}, {"row": 1, "focus": 1, "price": 501.42},
{"row": 2, "price": 501.41, "bid": 400}, ...]}``; prices and sizes may be numbers
or strings (``"1,300"``). Rows are merged by ``row`` (later messages replace rows);
bids are ordered from the highest price, asks from the lowest, and level N pairs
the N-th of each.
"""

from __future__ import annotations

import datetime
import json
import sys
import time

from marshmallow import Schema, fields

from ibgw import Result
from ibgw.errors import UsageError
from ibgw.parse import integer, number
from ibgw.runner import not_entitled

COLUMNS = ("level", "bid_size", "bid", "ask", "ask_size")
WS_VARIANT = "WS /ws sbd"
HELLO_WAIT_S = 3.0  # how long to wait for the gateway's sts/system hello
TIC_INTERVAL_S = 50.0  # keepalive on the websocket while watching (IBKR: at least once a minute)


class LevelSchema(Schema):
    level = fields.Integer()
    bid_size = fields.Float(allow_none=True)
    bid = fields.Float(allow_none=True)
    ask = fields.Float(allow_none=True)
    ask_size = fields.Float(allow_none=True)


# -- the book -----------------------------------------------------------------------------


def merge_rows(ladder: dict, data) -> bool:
    """Merge a message's ``data`` rows into ``ladder`` (row index -> row). Returns
    True when at least one row was usable."""
    if not isinstance(data, list):
        return False
    changed = False
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            continue
        index = integer(row.get("row"))
        key = index if index is not None else i
        ladder[key] = row
        changed = True
    return changed


def levels_of(ladder: dict, levels: int) -> list[dict]:
    """The book as levels: bids from the highest price, asks from the lowest."""
    bids, asks = [], []
    for row in ladder.values():
        price = number(row.get("price"))
        if price is None:
            continue
        bid, ask = number(row.get("bid")), number(row.get("ask"))
        if bid is not None and bid > 0:
            bids.append((price, bid))
        if ask is not None and ask > 0:
            asks.append((price, ask))
    bids.sort(key=lambda pair: -pair[0])
    asks.sort(key=lambda pair: pair[0])
    out = []
    for i in range(min(levels, max(len(bids), len(asks)))):
        bid = bids[i] if i < len(bids) else (None, None)
        ask = asks[i] if i < len(asks) else (None, None)
        out.append(
            {"level": i + 1, "bid_size": bid[1], "bid": bid[0], "ask": ask[0], "ask_size": ask[1]}
        )
    return out


def _topic_matches(topic, conid: int) -> bool:
    """``sbd`` or ``sbd+ACCT+CONID...`` for our conid."""
    if not isinstance(topic, str) or not topic.startswith("sbd"):
        return False
    if topic == "sbd":
        return True
    parts = topic.split("+")
    return parts[0] == "sbd" and (len(parts) < 3 or parts[2] == str(conid))


def _sts_denied(message) -> bool:
    if not isinstance(message, dict) or message.get("topic") != "sts":
        return False
    args = message.get("args")
    return isinstance(args, dict) and args.get("authenticated") is False


# -- the read -----------------------------------------------------------------------------


def fetch_book(ctx, symbol=None, conid=None, exchange=None, levels=10, watch=False):
    if watch and ctx.actor != "cli":
        raise UsageError(
            "watch: streaming is available on the command line only", reason="invalid-parameter"
        )
    if conid is None and not symbol:
        raise UsageError("give a SYMBOL or --conid", reason="invalid-parameter")
    if conid is not None:
        label = f"conid {conid}"
    else:
        contract = ctx.resolve_symbol(symbol)
        conid = contract["conid"]
        label = contract["symbol"]
    exchange = exchange.upper() if exchange else None
    account = ctx.account()
    subscribe = f"sbd+{account}+{conid}" + (f"+{exchange}" if exchange else "")
    notes: list[str] = []
    with ctx.websocket() as sock:
        _await_hello(sock, sock.deadline)
        sock.send(subscribe)
        try:
            ladder = _first_book(sock, conid, label)
            rows = levels_of(ladder, levels)
            if watch:
                rows, count = _watch(ctx, sock, conid, label, ladder, rows, levels)
                notes.append(f"watch stopped after {count} updates; unsubscribed")
        finally:
            _unsubscribe(sock, account)
    if len(rows) < levels:
        notes.append(f"the book of {label} has {len(rows)} levels")
    # Served by the websocket topic sbd: documented in IBKR's websocket guide [S4]
    # (the OpenAPI spec covers REST only), so not an undocumented endpoint.
    return Result(records=rows, notes=notes, provenance="documented", variant=WS_VARIANT)


def _await_hello(sock, deadline: float) -> None:
    """Read the gateway's hello messages (``system``, ``sts``) for a short while;
    ``sts`` saying not authenticated ends the read."""
    until = min(deadline, time.monotonic() + HELLO_WAIT_S)
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        message = sock.recv(timeout=left)
        if message is None:
            return
        if _sts_denied(message):
            from ibgw.gateway import error_for

            raise error_for("not-authenticated")
        if isinstance(message, dict) and (
            message.get("topic") == "sts"
            or (message.get("topic") == "system" and "success" in message)
        ):
            return


def _first_book(sock, conid: int, label: str) -> dict:
    """Read until a book with at least one bid or ask arrives (within the deadline)."""
    ladder: dict = {}
    while True:
        message = sock.recv()
        if message is None:
            raise not_entitled(
                f"market depth for {label}",
                hint="No book arrived in time: check your market-depth "
                "subscriptions in Client Portal.",
            )
        if _sts_denied(message):
            from ibgw.gateway import error_for

            raise error_for("not-authenticated")
        if not isinstance(message, dict) or not _topic_matches(message.get("topic"), conid):
            continue
        if "error" in message:
            raise not_entitled(f"market depth for {label}")
        merge_rows(ladder, message.get("data"))
        if levels_of(ladder, 1):
            return ladder


def _unsubscribe(sock, account: str) -> None:
    try:
        sock.send(f"ubd+{account}")
    except Exception:  # noqa: BLE001 - the connection may already be gone
        pass


def _watch(ctx, sock, conid, label, ladder, rows, levels):
    """Print every book update until Ctrl-C; returns the last rows and the count."""
    from ibgw.output import emit

    fmt = ctx.output
    redraw = fmt == "table" and sys.stdout.isatty()
    count = 0
    next_tic = time.monotonic() + TIC_INTERVAL_S
    try:
        _show(emit, fmt, label, rows, redraw, first=True)
        count = 1
        while True:
            now = time.monotonic()
            if now >= next_tic:
                sock.send("tic")
                next_tic = now + TIC_INTERVAL_S
            message = sock.recv(timeout=max(0.05, next_tic - now))
            if message is None:
                continue
            if _sts_denied(message):
                from ibgw.gateway import error_for

                raise error_for("not-authenticated")
            if not isinstance(message, dict) or not _topic_matches(message.get("topic"), conid):
                continue
            if "error" in message:
                raise not_entitled(f"market depth for {label}")
            if merge_rows(ladder, message.get("data")):
                rows = levels_of(ladder, levels)
                _show(emit, fmt, label, rows, redraw, first=False)
                count += 1
    except KeyboardInterrupt:
        # the last book follows as the read's result: on a terminal it replaces the
        # stream, elsewhere a blank line separates it
        emit("\x1b[H\x1b[2J" if redraw else "\n")
    return rows, count


def _show(emit, fmt: str, label: str, rows: list[dict], redraw: bool, first: bool) -> None:
    from ibgw.output import render

    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    if fmt == "json":
        emit(json.dumps({"time": stamp, "book": label, "rows": rows}, separators=(",", ":")) + "\n")
    elif fmt == "csv":
        text = render([{"time": stamp, **r} for r in rows], ("time", *COLUMNS), "csv")
        emit(text if first else text.split("\n", 1)[1])
    else:
        prefix = "\x1b[H\x1b[2J" if redraw else ("" if first else "\n")
        emit(
            f"{prefix}{label} market depth at {stamp} (Ctrl-C to stop)\n"
            + render(rows, COLUMNS, "table")
        )
