"""Computed fake-backend answers for ibgw-fx (standard library only).

Rates come from one table of US-dollar values so every pair is consistent:
``rate(A, B) * rate(B, C) == rate(A, C)`` up to rounding, and
``rate(A, B) == 1 / rate(B, A)``.
"""

# US dollars per one unit of each currency (synthetic, plausible values).
USD_VALUE = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 0.0067,
    "CHF": 1.12,
    "CAD": 0.73,
}


def rate(source: str, target: str) -> float:
    """Units of ``target`` per one unit of ``source``."""
    return round(USD_VALUE[source] / USD_VALUE[target], 8)


def exchange_rate(request):
    source = str(request.query.get("source") or "")
    target = str(request.query.get("target") or "")
    if source not in USD_VALUE or target not in USD_VALUE:
        return 400, {"error": "Bad Request: unknown currency", "statusCode": 400}
    return 200, {"rate": rate(source, target)}
