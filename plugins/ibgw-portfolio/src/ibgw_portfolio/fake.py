"""Computed fake-backend answers for ibgw-portfolio (standard library only).

``POST /pa/performance`` answers in the shape of IBKR's spec example for the two
fixture accounts: daily NAVs and cumulative returns over the requested period, ending
on the day before today at the account's net liquidation of ``fixtures/accounts.json``
(DU1234567 1,005,165.50 USD; U7654321 48,211.90 USD).
"""

from __future__ import annotations

import datetime as dt
import math

END_NAV = {"DU1234567": 1005165.5, "U7654321": 48211.9}
DRIFT = {"DU1234567": 0.0004, "U7654321": -0.0002}  # daily drift of the synthetic return
DAYS = {"1D": 1, "7D": 7, "1M": 30, "3M": 91, "6M": 182, "12M": 365}
PERIODS = (*DAYS, "MTD", "YTD")


def _days(period: str, end: dt.date) -> list[dt.date]:
    if period == "MTD":
        start = end.replace(day=1)
    elif period == "YTD":
        start = end.replace(month=1, day=1)
    else:
        start = end - dt.timedelta(days=DAYS[period] - 1)
    out, day = [], start
    while day <= end:
        if day.weekday() < 5:
            out.append(day)
        day += dt.timedelta(days=1)
    return out or [end]


def performance(request):
    body = request.body if isinstance(request.body, dict) else {}
    accounts = body.get("acctIds")
    period = body.get("period", "12M")
    if (
        not isinstance(accounts, list)
        or len(accounts) != 1
        or accounts[0] not in END_NAV
        or period not in PERIODS
    ):
        return 400, {"error": "Bad Request: invalid acctIds or period", "statusCode": 400}
    acct = accounts[0]
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    days = _days(period, end)
    n = len(days)
    cum = [round(DRIFT[acct] * (i + 1) + 0.0015 * math.sin(i / 3), 8) for i in range(n)]
    start_nav = END_NAV[acct] / (1 + cum[-1])
    navs = [round(start_nav * (1 + r), 2) for r in cum]
    navs[-1] = END_NAV[acct]
    dates = [d.strftime("%Y%m%d") for d in days]
    first, last = dates[0], dates[-1]
    item = {"id": acct, "idType": "acctid", "start": first, "end": last, "baseCurrency": "USD"}
    months = sorted({d[:6] for d in dates})
    return 200, {
        "currencyType": "base",
        "pm": "TWR",
        "nd": n,
        "rc": 0,
        "id": "getPerformanceData",
        "included": [acct],
        "cps": {"freq": "D", "dates": dates, "data": [dict(item, returns=cum)]},
        "tpps": {
            "freq": "M",
            "dates": months,
            "data": [dict(item, returns=[round(cum[-1] / len(months), 8)] * len(months))],
        },
        "nav": {
            "freq": "D",
            "dates": dates,
            "data": [
                dict(
                    item,
                    navs=navs,
                    startNAV={
                        "date": (days[0] - dt.timedelta(days=1)).strftime("%Y%m%d"),
                        "val": round(start_nav, 2),
                    },
                )
            ],
        },
    }
