"""Computed fake-backend answer for ibgw-trades (standard library only).

``GET /iserver/account/trades`` in the shape of IBKR's spec example: executions of the
two fixture accounts (DU1234567, U7654321) in contracts of ``fixtures/positions.json``,
at fixed ages before now; ``days`` (1 to 7) widens the window from today alone, as the
real gateway does.
"""

from __future__ import annotations

import datetime as dt

# (age in hours, account, conid, symbol, sec_type, side, size, price, commission, exchange)
EXECUTIONS = (
    (0.5, "DU1234567", 265598, "AAPL", "STK", "B", 10.0, 189.12, 1.0, "ISLAND"),
    (2.0, "U7654321", 265598, "AAPL", "STK", "S", 20.0, 189.85, 1.0, "NYSE"),
    (50.0, "DU1234567", 756733, "SPY", "STK", "S", 5.0, 499.31, 1.02, "ARCA"),
    (74.0, "U7654321", 756733, "SPY", "STK", "B", 3.0, 497.8, 1.0, "ARCA"),
    (
        122.0,
        "DU1234567",
        600090019,
        "QQQ JUN2026 460 C",
        "OPT",
        "S",
        2.0,
        20.55,
        1.3,
        "CBOE",
    ),
    (240.0, "DU1234567", 265598, "AAPL", "STK", "B", 15.0, 184.4, 1.0, "ISLAND"),  # > 7 days
)


def _execution(now, i, row):
    age, acct, conid, symbol, sec_type, side, size, price, fee, exchange = row
    at = now - dt.timedelta(hours=age)
    mult = 100 if sec_type == "OPT" else 1
    net = round(size * price * mult, 2)  # as in IBKR's example: the gross, before commission
    verb = "Sold" if side == "S" else "Bought"
    return {
        "execution_id": f"0000e0d5.6576fd{i:02d}.01.01",
        "symbol": symbol.split()[0],
        "supports_tax_opt": "1",
        "side": side,
        "order_description": f"{verb} {size:g} @ {price} on {exchange}",
        "trade_time": at.strftime("%Y%m%d-%H:%M:%S"),
        "trade_time_r": int(at.timestamp() * 1000),
        "size": size,
        "price": f"{price}",
        "order_ref": f"Order{i}",
        "submitter": "user1234",
        "exchange": exchange,
        "commission": f"{fee}",
        "net_amount": net,
        "account": acct,
        "accountCode": acct,
        "account_allocation_name": acct,
        "company_name": symbol,
        "contract_description_1": symbol,
        "sec_type": sec_type,
        "listing_exchange": exchange,
        "conid": conid,
        "conidEx": str(conid),
        "clearing_id": "IB",
        "clearing_name": "IB",
        "liquidation_trade": "0",
        "is_event_trading": "0",
        "order_id": 1743789790 + i,
    }


def trades(request):
    raw = request.query.get("days")
    if raw is None:
        hours = 24.0
    elif isinstance(raw, str) and raw.isdigit() and 1 <= int(raw) <= 7:
        hours = 24.0 * (int(raw) + 1)
    else:
        return 400, {"error": "Bad Request: days must be 1 to 7", "statusCode": 400}
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return 200, [_execution(now, i, row) for i, row in enumerate(EXECUTIONS) if row[0] < hours]
