"""A consistent simulated option market for the fake backend.

Registered through ``ibgw_fake_fixtures`` (entry point ``fake-market``), it answers
the calls an option chain and a greeks read make, for the underlyings the core
search fixture lists (``fixtures/contracts.json``):

==========  =======  =========  ======  ==========================================
symbol      conid    spot       step    months (as ``/iserver/secdef/search``)
==========  =======  =========  ======  ==========================================
SPY         756733   501.42     5       APR26 MAY26 JUN26 (monthly + one weekly)
AAPL        265598   189.63     2.5     APR26 MAY26 JUN26 JUL26 SEP26 DEC26
SPX         416904   5014.20    25      APR26 MAY26 JUN26 (an index: ``secType=IND``)
==========  =======  =========  ======  ==========================================

``GET /trsrv/secdef?conids=``
    ``{"secdef": [...]}`` with one definition per known conid (stocks, the index,
    FX pairs, every option; keys as reference §2): an option's ``ticker`` is its
    underlying's symbol and ``undConid`` the underlying's conid. Unknown conids
    are left out.

``GET /iserver/secdef/strikes``
    ``{"call": [...], "put": [...]}`` (numbers, the same list for both rights):
    100 strikes for SPY APR26 (250 ... 745, so its full chain is 200 contract
    look-ups), 40 strikes for every other listed month. A month that is not
    listed, another ``sectype`` or an unknown conid answer empty arrays.

``GET /iserver/secdef/info``
    An array with one contract per expiry of the month (the third Friday; SPY
    also has the weekly a week earlier), keys as the endpoint reference §4.
    Option conids are 9-digit numbers from a SHA-256 of
    ``symbol|YYYYMMDD|strike|right``: the same on every run and every machine.
    A strike that is not listed, or a month that is not, answers ``[]``; a
    missing ``conid``/``month``/``strike`` or a ``right`` other than ``C``/``P``
    answers 400 ``{"error": ..., "statusCode": 400}``.

``GET /iserver/marketdata/snapshot``
    Stateful pre-flight like the real gateway: the first request that names a
    conid (per router, i.e. per fake backend or fake gateway server) answers
    only ``{"conid", "conidEx"}`` for it; later requests carry the requested
    fields as strings formatted the way IBKR sends them (reference §5.1):
    sizes with thousands separators (``"1,300"``), volume with K/M suffixes
    (``"45.2M"``), percentages with ``%`` (``"24.6%"``). Stocks (SPY, AAPL),
    FX pairs (EUR.USD 12087792, GBP.USD, USD.JPY, USD.CHF) and every option
    conid the info route hands out are known. Option greeks come from
    Black-Scholes with a volatility smile, valued as of :data:`MARKET_DATE`
    (a fixed date, so answers never drift). A conid the market does not know
    answers only ``{"conid", "conidEx"}`` on every request: no data ever
    arrives for it, which is also what a live gateway shows for a contract
    without market data (a client that re-polls gives up and says so).
    ``conids`` must hold 1 to 100 numbers, else 400.

Scenario ``no-option-data`` (based on ``connected``): option market data is not
subscribed: option conids answer ``6509: "N"`` and their static identity
fields only (no prices, no greeks); stocks and FX are unchanged.

Everything is computed with the standard library, deterministically; a
100-conid snapshot takes well under 5 ms. The functions below (``strikes``,
``contracts``, ``option``, ``fields_for``, ...) are the model's API for tests
and other plugins.
"""

from __future__ import annotations

import datetime
import math
import threading
import time

from ibgw import FakeRoute, hookimpl

MARKET_DATE = datetime.date(2026, 4, 1)  # options are valued as of this day
RATE = 0.04  # risk-free rate, continuous
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
NO_OPTION_DATA = "no-option-data"
MAX_CONIDS = 100

OPTION_EXCHANGES = (
    "SMART,AMEX,CBOE,PHLX,PSE,ISE,BOX,BATS,NASDAQOM,CBOE2,NASDAQBX,MIAX,GEMINI,EDGX,"
    "MERCURY,PEARL,EMERALD,MEMX,IBUSOPT"
)

# The underlyings: what the core search fixture lists (months included).
UNDERLYINGS: dict[str, dict] = {
    "SPY": {
        "conid": 756733,
        "spot": 501.42,
        "step": 5.0,
        "months": ("APR26", "MAY26", "JUN26"),
        "strike_counts": {"APR26": 100},  # others: DEFAULT_STRIKES
        "weekly": True,
        "iv": 0.16,
        "dividend_yield": 0.013,
        "company": "SPDR S&P 500 ETF TRUST",
        "listing": "ARCA",
        "industry": "Funds",
        "category": "Equity Fund",
        "dividends": ("6.88", "6.71"),
        "ema": ("476.20", "489.55", "495.80", "499.10"),
        "iv_30d": "16.2%",
        "hv_30d": "13.8%",
        "volume": (45_213_876, "45.2M"),
        "high_low": ("503.10", "498.75"),
        "prior_close": 499.05,
        "option_volume": "6.1M",
        "option_oi": "18,342,110",
    },
    "AAPL": {
        "conid": 265598,
        "spot": 189.63,
        "step": 2.5,
        "months": ("APR26", "MAY26", "JUN26", "JUL26", "SEP26", "DEC26"),
        "strike_counts": {},
        "weekly": False,
        "iv": 0.25,
        "dividend_yield": 0.005,
        "company": "APPLE INC",
        "listing": "NASDAQ",
        "industry": "Technology",
        "category": "Computers",
        "dividends": ("1.00", "0.98"),
        "ema": ("181.40", "185.05", "187.90", "188.70"),
        "iv_30d": "24.9%",
        "hv_30d": "22.1%",
        "volume": (52_845_310, "52.8M"),
        "high_low": ("191.20", "187.45"),
        "prior_close": 188.21,
        "option_volume": "1.4M",
        "option_oi": "4,120,562",
    },
    "SPX": {
        "conid": 416904,
        "sec_type": "IND",
        "spot": 5014.20,
        "step": 25.0,
        "months": ("APR26", "MAY26", "JUN26"),
        "strike_counts": {},
        "weekly": False,
        "iv": 0.15,
        "dividend_yield": 0.013,
        "company": "S&P 500 Stock Index",
        "listing": "CBOE",
        "industry": "Indices",
        "category": "Broad Range Equity Index",
        "dividends": ("", ""),
        "ema": ("4762.00", "4895.50", "4958.00", "4991.00"),
        "iv_30d": "15.1%",
        "hv_30d": "12.9%",
        "volume": (0, "0"),
        "high_low": ("5031.00", "4987.50"),
        "prior_close": 4990.50,
        "option_volume": "3.2M",
        "option_oi": "14,870,230",
    },
}
DEFAULT_STRIKES = 40

# FX pairs (reference §11, /iserver/currency/pairs): conid -> (symbol, rate, name)
FX_PAIRS: dict[int, tuple[str, float, str]] = {
    12087792: ("EUR.USD", 1.08525, "European Monetary Union Euro"),
    12087797: ("GBP.USD", 1.26550, "British pound"),
    15016059: ("USD.JPY", 151.320, "US dollar"),
    12087820: ("USD.CHF", 0.90120, "US dollar"),
}

GREEK_FIELDS = ("7308", "7309", "7310", "7311", "7633")
PRICE_FIELDS = ("31", "84", "85", "86", "87", "88", "7635", "7638", "7089", "70", "71", "82", "83")
STATIC_FIELDS = ("55", "6070", "201", "6457", "7219", "7220", "7221")


# --------------------------------------------------------------------------- calendar


def month_date(month: str) -> tuple[int, int] | None:
    """``(year, month)`` for ``MMMYY`` such as ``APR26``, or ``None``."""
    if not isinstance(month, str) or len(month) != 5 or month[:3] not in MONTHS:
        return None
    if not month[3:].isdigit():
        return None
    return 2000 + int(month[3:]), MONTHS.index(month[:3]) + 1


def third_friday(year: int, month: int) -> datetime.date:
    first = datetime.date(year, month, 1)
    offset = (4 - first.weekday()) % 7  # Friday is weekday 4
    return first + datetime.timedelta(days=offset + 14)


def expiries(symbol: str, month: str) -> list[datetime.date]:
    """The expiry dates of ``symbol`` in ``month`` (weekly first), or ``[]``."""
    und = UNDERLYINGS.get(symbol)
    ym = month_date(month)
    if und is None or ym is None or month not in und["months"]:
        return []
    monthly = third_friday(*ym)
    return [monthly - datetime.timedelta(days=7), monthly] if und["weekly"] else [monthly]


# --------------------------------------------------------------------------- chain


def _strike_text(strike: float) -> str:
    return f"{strike:g}" if strike != int(strike) else str(int(strike))


def strikes(symbol: str, month: str) -> list[float]:
    """The listed strikes (the same for calls and puts), ascending, or ``[]``."""
    und = UNDERLYINGS.get(symbol)
    if und is None or not expiries(symbol, month):
        return []
    count = und["strike_counts"].get(month, DEFAULT_STRIKES)
    step = und["step"]
    atm = round(und["spot"] / step) * step
    return [round(atm + (i - count // 2) * step, 4) for i in range(count)]


def _symbol_for_conid(conid) -> str | None:
    for symbol, und in UNDERLYINGS.items():
        if str(und["conid"]) == str(conid):
            return symbol
    return None


def _hash_conid(text: str) -> int:
    import hashlib  # lazily: this module is an entry point, loaded by every ibgw start

    digest = hashlib.sha256(text.encode()).hexdigest()
    return 100_000_000 + int(digest[:15], 16) % 900_000_000


def _desc2(expiry: datetime.date, strike: float, right: str) -> str:
    return (
        f"{MONTHS[expiry.month - 1]} {expiry.day:02d} '{expiry.year % 100:02d} "
        f"{_strike_text(strike)} {'Call' if right == 'C' else 'Put'}"
    )


_universe: dict[int, dict] | None = None
_fields_cache: dict[int, dict[str, str] | None] = {}
_by_key: dict[tuple, int] = {}
_universe_lock = threading.Lock()


def _build_universe() -> dict[int, dict]:
    """Every option contract of the market, conid -> contract (built once)."""
    global _universe
    if _universe is not None:
        return _universe
    with _universe_lock:
        if _universe is not None:
            return _universe
        universe: dict[int, dict] = {}
        by_key: dict[tuple, int] = {}
        for symbol, und in UNDERLYINGS.items():
            for month in und["months"]:
                for expiry in expiries(symbol, month):
                    ymd = expiry.strftime("%Y%m%d")
                    for strike in strikes(symbol, month):
                        for right in ("C", "P"):
                            key = (symbol, ymd, _strike_text(strike), right)
                            conid = _hash_conid("|".join(key))
                            while conid in universe:  # deterministic probing on a clash
                                conid = 100_000_000 + (conid - 99_999_999) % 900_000_000
                            universe[conid] = {
                                "conid": conid,
                                "symbol": symbol,
                                "month": month,
                                "expiry": expiry,
                                "strike": strike,
                                "right": right,
                            }
                            by_key[key] = conid
        _by_key.update(by_key)
        # price every option now (about 40 ms once per process) so that no snapshot
        # pays for it: a 100-conid snapshot stays well under 5 ms
        _fields_cache.update((conid, _option_fields(opt)) for conid, opt in universe.items())
        _universe = universe
        return universe


def option(conid) -> dict | None:
    """The option contract with ``conid`` (symbol, month, expiry date, strike,
    right), or ``None``."""
    try:
        return _build_universe().get(int(conid))
    except (TypeError, ValueError):
        return None


def option_conid(symbol: str, expiry: str, strike: float, right: str) -> int | None:
    """The conid of an option (``expiry`` as ``YYYYMMDD``), or ``None``."""
    _build_universe()
    return _by_key.get((symbol, expiry, _strike_text(float(strike)), right))


def info_record(opt: dict, exchange: str = "SMART") -> dict:
    """The ``/iserver/secdef/info`` entry for an option contract."""
    return {
        "conid": opt["conid"],
        "symbol": opt["symbol"],
        "secType": "OPT",
        "exchange": exchange,
        "listingExchange": None,
        "right": opt["right"],
        "strike": float(opt["strike"]),
        "currency": "USD",
        "cusip": None,
        "coupon": "No Coupon",
        "desc1": opt["symbol"],
        "desc2": _desc2(opt["expiry"], opt["strike"], opt["right"]),
        "maturityDate": opt["expiry"].strftime("%Y%m%d"),
        "multiplier": "100",
        "tradingClass": opt["symbol"],
        "validExchanges": OPTION_EXCHANGES,
    }


def contracts(
    symbol: str, month: str, strike: float, right: str, exchange: str = "SMART"
) -> list[dict]:
    """What ``/iserver/secdef/info`` answers for one strike and right of a month."""
    listed = strikes(symbol, month)
    if right not in ("C", "P") or not any(abs(k - strike) < 1e-6 for k in listed):
        return []
    strike = next(k for k in listed if abs(k - strike) < 1e-6)
    out = []
    for expiry in expiries(symbol, month):
        conid = option_conid(symbol, expiry.strftime("%Y%m%d"), strike, right)
        out.append(info_record(option(conid), exchange))
    return out


# --------------------------------------------------------------------------- pricing


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def implied_vol(symbol: str, strike: float, years: float) -> float:
    """The model's volatility smile: put skew plus curvature, a slight term slope."""
    und = UNDERLYINGS[symbol]
    m = math.log(strike / und["spot"])
    iv = und["iv"] * (1.0 + 0.15 * math.sqrt(max(years, 1e-6))) - 0.18 * m + 0.55 * m * m
    return max(iv, 0.05)


def black_scholes(spot, strike, years, vol, rate, div, right) -> dict:
    """Price and greeks (theta per calendar day, vega per 1 vol point)."""
    sqrt_t = math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate - div + 0.5 * vol * vol) * years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    disc_q, disc_r = math.exp(-div * years), math.exp(-rate * years)
    pdf = _norm_pdf(d1)
    gamma = disc_q * pdf / (spot * vol * sqrt_t)
    vega = spot * disc_q * pdf * sqrt_t / 100.0
    decay = -spot * disc_q * pdf * vol / (2.0 * sqrt_t)
    if right == "C":
        price = spot * disc_q * _norm_cdf(d1) - strike * disc_r * _norm_cdf(d2)
        delta = disc_q * _norm_cdf(d1)
        theta = decay - rate * strike * disc_r * _norm_cdf(d2) + div * spot * disc_q * _norm_cdf(d1)
    else:
        price = strike * disc_r * _norm_cdf(-d2) - spot * disc_q * _norm_cdf(-d1)
        delta = -disc_q * _norm_cdf(-d1)
        theta = (
            decay + rate * strike * disc_r * _norm_cdf(-d2) - div * spot * disc_q * _norm_cdf(-d1)
        )
    return {"price": price, "delta": delta, "gamma": gamma, "theta": theta / 365.0, "vega": vega}


def _short(n: float) -> str:
    """IBKR's formatted volume: ``45.2M``, ``5.21K``, ``812``."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.2f}K"
    return str(int(n))


def _money(x: float) -> str:
    return f"{x:.2f}"


def _fixed(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.000"


def _option_fields(opt: dict) -> dict[str, str]:
    symbol, strike, right = opt["symbol"], opt["strike"], opt["right"]
    und = UNDERLYINGS[symbol]
    years = max((opt["expiry"] - MARKET_DATE).days, 1) / 365.0
    vol = implied_vol(symbol, strike, years)
    g = black_scholes(und["spot"], strike, years, vol, RATE, und["dividend_yield"], right)
    mark = max(round(g["price"], 2), 0.01)
    half = max(0.01, round(mark * 0.01, 2))
    m = math.log(strike / und["spot"])
    import hashlib

    noise = int(hashlib.sha256(str(opt["conid"]).encode()).hexdigest()[:16], 16)
    oi = int(25_000 * math.exp(-25 * m * m)) + noise % 900 + 10
    volume = int(oi * (0.08 + (noise >> 10) % 100 / 400.0))
    return {
        "31": f"{mark:.2f}",
        "84": f"{max(mark - half, 0.0):.2f}",
        "86": f"{mark + half:.2f}",
        "88": str(10 + (noise >> 20) % 490),
        "85": str(10 + (noise >> 30) % 490),
        "87": _short(volume),
        "7762": str(volume),  # the contract's day volume, unabbreviated
        "7635": f"{mark:.2f}",
        "70": f"{mark * 1.08:.2f}",
        "71": f"{max(mark * 0.93, 0.01):.2f}",
        "82": f"{mark * 0.02:.2f}",
        "83": "2.00%",
        "7308": _fixed(g["delta"], 3),
        "7309": _fixed(g["gamma"], 4),
        "7310": _fixed(g["theta"], 3),
        "7311": _fixed(g["vega"], 3),
        "7633": f"{vol * 100:.1f}%",
        "7638": str(oi),
        # 7089 is the *underlying's* option volume (IBKR: "Option Volume"), the same on
        # every option of one underlying; the contract's own volume is 87/7762
        "7089": und["option_volume"],
        "55": symbol,
        "6070": "OPT",
        "201": right,
        "6457": str(und["conid"]),
        "7219": symbol,
        "7220": _desc2(opt["expiry"], strike, right),
        "6509": "RpB",
    }


def _stock_fields(symbol: str) -> dict[str, str]:
    und = UNDERLYINGS[symbol]
    spot, prior = und["spot"], und["prior_close"]
    change = spot - prior
    return {
        "31": _money(spot),
        "84": _money(spot - 0.01),
        "86": _money(spot + 0.01),
        "88": "1,300",
        "85": "2,100",
        "87": und["volume"][1],
        "7762": str(und["volume"][0]),
        "7635": _money(spot),
        "7741": _money(prior),
        "7295": _money(prior + change * 0.3),  # open
        "7296": _money(spot),  # today's close (the model's prices are as of the close)
        "7059": "100",
        "70": und["high_low"][0],
        "71": und["high_low"][1],
        "82": _money(change),
        "83": f"{change / prior * 100:.2f}%",
        "55": symbol,
        "6070": und.get("sec_type", "STK"),
        "6457": "0",
        "7219": symbol,
        "7220": und["company"],
        "7221": und["listing"],
        "7051": und["company"],
        "7280": und["industry"],
        "7281": und["category"],
        "7671": und["dividends"][0],
        "7672": und["dividends"][1],
        "7674": und["ema"][0],
        "7675": und["ema"][1],
        "7676": und["ema"][2],
        "7677": und["ema"][3],
        "7283": und["iv_30d"],
        "7087": und["hv_30d"],
        "7638": und["option_oi"],
        "7089": und["option_volume"],
        "6509": "RpB",
    }


def _fx_fields(conid: int) -> dict[str, str]:
    symbol, rate, name = FX_PAIRS[conid]
    digits = 3 if rate > 20 else 5
    tick = 10**-digits
    return {
        "31": f"{rate:.{digits}f}",
        "84": f"{rate - 5 * tick:.{digits}f}",
        "86": f"{rate + 5 * tick:.{digits}f}",
        "88": "1,000,000",
        "85": "2,000,000",
        "7635": f"{rate:.{digits}f}",
        "70": f"{rate * 1.002:.{digits}f}",
        "71": f"{rate * 0.997:.{digits}f}",
        "82": f"{rate * 0.001:.{digits}f}",
        "83": "0.10%",
        "55": symbol,
        "6070": "CASH",
        "7219": symbol,
        "7220": name,
        "7051": name,
        "6509": "RpB",
    }


def fields_for(conid) -> dict[str, str] | None:
    """Every snapshot field the market has for ``conid`` (strings, as IBKR
    sends them), or ``None`` for a conid it does not know."""
    try:
        conid = int(conid)
    except (TypeError, ValueError):
        return None
    if conid in _fields_cache:
        return _fields_cache[conid]
    symbol = _symbol_for_conid(conid)
    if symbol is not None:
        fields = _stock_fields(symbol)
    elif conid in FX_PAIRS:
        fields = _fx_fields(conid)
    else:
        opt = option(conid)
        fields = _option_fields(opt) if opt is not None else None
    if fields is None:  # the simulated stocks beside the option market
        from . import stocks

        fields = stocks.fields_for(conid)
    _fields_cache[conid] = fields
    return fields


# --------------------------------------------------------------------------- routes


def _bad_request(message: str):
    return 400, {"error": message, "statusCode": 400}


def _q(request, name: str) -> str:
    value = request.query.get(name)
    return value.strip() if isinstance(value, str) else ""


def secdef_record(conid) -> dict | None:
    """The ``/trsrv/secdef`` definition of a conid the market knows, or ``None``."""
    try:
        conid = int(conid)
    except (TypeError, ValueError):
        return None
    symbol = _symbol_for_conid(conid)
    if symbol is not None:
        und = UNDERLYINGS[symbol]
        return {
            "conid": conid,
            "currency": "USD",
            "name": und["company"].upper(),
            "assetClass": und.get("sec_type", "STK"),
            "expiry": None,
            "lastTradingDay": None,
            "putOrCall": None,
            "strike": "0",
            "ticker": symbol,
            "undConid": 0,
            "multiplier": 0.0,
            "hasOptions": True,
            "fullName": symbol,
            "isUS": True,
            "listingExchange": und["listing"],
            "countryCode": "US",
        }
    if conid in FX_PAIRS:
        pair, _, name = FX_PAIRS[conid]
        return {
            "conid": conid,
            "currency": pair.split(".")[1],
            "name": name,
            "assetClass": "CASH",
            "ticker": pair.split(".")[0],
            "undConid": 0,
            "fullName": pair,
            "isUS": False,
        }
    opt = option(conid)
    if opt is None:
        from . import stocks  # the simulated stock market beside the option market

        return stocks.secdef(conid)
    return {
        "conid": conid,
        "currency": "USD",
        "name": UNDERLYINGS[opt["symbol"]]["company"].upper(),
        "assetClass": "OPT",
        "expiry": opt["expiry"].strftime("%Y%m%d"),
        "lastTradingDay": opt["expiry"].strftime("%Y%m%d"),
        "putOrCall": opt["right"],
        "strike": _strike_text(opt["strike"]),
        "ticker": opt["symbol"],
        "undConid": UNDERLYINGS[opt["symbol"]]["conid"],
        "multiplier": 100.0,
        "hasOptions": False,
        "fullName": f"{opt['symbol']} {_desc2(opt['expiry'], opt['strike'], opt['right'])}",
        "isUS": True,
        "listingExchange": None,
        "countryCode": "US",
    }


class MarketRoutes:
    """The route handlers of one router; holds the pre-flight state (the conids
    whose market-data stream is already open)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: set[int] = set()

    def strikes(self, request):
        symbol = _symbol_for_conid(_q(request, "conid"))
        if symbol is None or _q(request, "sectype") != "OPT":
            return 200, {"call": [], "put": []}
        listed = strikes(symbol, _q(request, "month"))
        return 200, {"call": list(listed), "put": list(listed)}

    def info(self, request):
        conid, month, right = _q(request, "conid"), _q(request, "month"), _q(request, "right")
        if not conid or not month:
            return _bad_request("conid and month are required")
        if _q(request, "sectype") != "OPT":
            return 200, []
        try:
            strike = float(_q(request, "strike"))
        except ValueError:
            return _bad_request("strike is required for options")
        if right not in ("C", "P"):
            return _bad_request("right must be C or P")
        symbol = _symbol_for_conid(conid)
        if symbol is None:
            return 200, []
        return 200, contracts(symbol, month, strike, right, _q(request, "exchange") or "SMART")

    def secdef(self, request):
        raw = [c.strip() for c in _q(request, "conids").split(",") if c.strip()]
        if not raw or len(raw) > 200 or not all(c.isdigit() for c in raw):
            return _bad_request("conids: 1 to 200 contract ids")
        found = [r for r in (secdef_record(c) for c in raw) if r is not None]
        return 200, {"secdef": found}

    def snapshot(self, request):
        raw = [c for c in _q(request, "conids").split(",") if c.strip()]
        if not raw or len(raw) > MAX_CONIDS or not all(c.strip().isdigit() for c in raw):
            return _bad_request("conids: 1 to 100 contract ids")
        wanted = [f.strip() for f in _q(request, "fields").split(",") if f.strip()]
        no_option_data = request.scenario == NO_OPTION_DATA
        now = int(time.time() * 1000)
        out = []
        for text in raw:
            conid = int(text)
            entry = {"conid": conid, "conidEx": str(conid)}
            with self._lock:
                first = conid not in self._open
                self._open.add(conid)
            fields = None if first else fields_for(conid)
            if fields is not None:
                if no_option_data and fields.get("6070") == "OPT":
                    fields = {k: v for k, v in fields.items() if k in STATIC_FIELDS}
                    fields["6509"] = "N"
                entry["_updated"] = now
                entry["server_id"] = "q0"
                entry["6119"] = "q0"
                for f in wanted or fields:
                    value = fields.get(f)
                    if value:
                        entry[f] = value
            out.append(entry)
        return 200, out


SCENARIO_FIXTURE = {
    "description": "Scenarios of the simulated option market (ibgw_fake.market).",
    "scenarios": {
        NO_OPTION_DATA: {
            "description": "option market data not subscribed (6509=N, no greeks)",
            "base": "connected",
            "hide": [],
        }
    },
}


@hookimpl
def ibgw_fake_fixtures(register):
    """Register the market's computed routes (fresh pre-flight state per router)
    and the ``no-option-data`` scenario."""
    routes = MarketRoutes()
    register(FakeRoute("GET", "/iserver/secdef/strikes", routes.strikes, source="market"))
    register(FakeRoute("GET", "/iserver/secdef/info", routes.info, source="market"))
    register(FakeRoute("GET", "/iserver/marketdata/snapshot", routes.snapshot, source="market"))
    register(FakeRoute("GET", "/trsrv/secdef", routes.secdef, source="market"))
    register(SCENARIO_FIXTURE)
    from . import stocks  # quotes, history and contract details of ~200 stocks

    stocks.register_routes(register)
