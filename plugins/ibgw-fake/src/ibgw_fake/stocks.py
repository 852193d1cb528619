"""A consistent simulated stock market for the fake backend (standard library only).

Beside the option market of :mod:`ibgw_fake.market` (whose SPY and AAPL it
reuses), this module models about 200 US stocks and ETFs so that quotes, price
history and contract look-ups of many symbols can be tried offline, and so that
the ``ibgw-marketdata`` and ``ibgw-contracts`` plugins, each installable alone,
find the same answers (a route registered by both would clash: the router skips
duplicates). Everything is derived deterministically from the ticker.

Routes (registered by :func:`register_routes`, called from the market's
``ibgw_fake_fixtures``):

``GET /iserver/secdef/search``
    ``?symbol=MSFT&secType=STK`` for every modelled ticker except SPY and AAPL
    (the core fixture ``contracts.json`` answers those), and company-name
    searches ``?symbol=APPLE&name=true`` (the first word of the name, upper
    case) for every one, SPY and AAPL included.
``GET /iserver/contract/{conid}/info``
    Stocks (reference §3 shape), the market's option conids (``OPT``) and FX
    pairs (``CASH``). An unknown conid answers 400 ``{"error": ...}``.
``GET /trsrv/secdef?conids=...``
    ``{"secdef": [...]}`` for the known conids among at most 200 (else 400);
    registered only while the option market does not serve it itself.
``GET /iserver/marketdata/history``
    OHLCV bars (reference §5.2) of a random walk that ends at the stock's last
    price at the close of :data:`ibgw_fake.market.MARKET_DATE`, on weekdays
    09:30-16:00 New York time (04:00-20:00 with ``outsideRth=true``); at most
    1000 points (the newest). ``bar`` and ``period`` are checked against IBKR's
    vocabulary (400 otherwise); an unknown conid answers 400.

:func:`fields_for` gives the snapshot fields of a modelled stock; the market's
snapshot route asks it for conids it does not know itself.
"""

from __future__ import annotations

import datetime
import math
import re

# ticker|company|listing exchange (synthetic prices; the names and tickers are real)
_TABLE = """
MSFT|MICROSOFT CORP|NASDAQ
NVDA|NVIDIA CORP|NASDAQ
AMZN|AMAZON.COM INC|NASDAQ
GOOGL|ALPHABET INC-CL A|NASDAQ
GOOG|ALPHABET INC-CL C|NASDAQ
META|META PLATFORMS INC-CLASS A|NASDAQ
TSLA|TESLA INC|NASDAQ
BRK.B|BERKSHIRE HATHAWAY INC-CL B|NYSE
AVGO|BROADCOM INC|NASDAQ
JPM|JPMORGAN CHASE & CO|NYSE
LLY|ELI LILLY & CO|NYSE
V|VISA INC-CLASS A SHARES|NYSE
UNH|UNITEDHEALTH GROUP INC|NYSE
XOM|EXXON MOBIL CORP|NYSE
MA|MASTERCARD INC - A|NYSE
JNJ|JOHNSON & JOHNSON|NYSE
PG|PROCTER & GAMBLE CO/THE|NYSE
HD|HOME DEPOT INC|NYSE
COST|COSTCO WHOLESALE CORP|NASDAQ
MRK|MERCK & CO. INC.|NYSE
ABBV|ABBVIE INC|NYSE
CVX|CHEVRON CORP|NYSE
CRM|SALESFORCE INC|NYSE
AMD|ADVANCED MICRO DEVICES|NASDAQ
PEP|PEPSICO INC|NASDAQ
KO|COCA-COLA CO/THE|NYSE
BAC|BANK OF AMERICA CORP|NYSE
NFLX|NETFLIX INC|NASDAQ
WMT|WALMART INC|NYSE
ADBE|ADOBE INC|NASDAQ
TMO|THERMO FISHER SCIENTIFIC INC|NYSE
MCD|MCDONALD'S CORP|NYSE
ACN|ACCENTURE PLC-CL A|NYSE
CSCO|CISCO SYSTEMS INC|NASDAQ
LIN|LINDE PLC|NASDAQ
ABT|ABBOTT LABORATORIES|NYSE
ORCL|ORACLE CORP|NYSE
DIS|WALT DISNEY CO/THE|NYSE
WFC|WELLS FARGO & CO|NYSE
INTC|INTEL CORP|NASDAQ
DHR|DANAHER CORP|NYSE
QCOM|QUALCOMM INC|NASDAQ
INTU|INTUIT INC|NASDAQ
CAT|CATERPILLAR INC|NYSE
VZ|VERIZON COMMUNICATIONS INC|NYSE
TXN|TEXAS INSTRUMENTS INC|NASDAQ
IBM|INTL BUSINESS MACHINES CORP|NYSE
AMGN|AMGEN INC|NASDAQ
PFE|PFIZER INC|NYSE
CMCSA|COMCAST CORP-CLASS A|NASDAQ
NOW|SERVICENOW INC|NYSE
UNP|UNION PACIFIC CORP|NYSE
PM|PHILIP MORRIS INTERNATIONAL|NYSE
GE|GENERAL ELECTRIC CO|NYSE
SPGI|S&P GLOBAL INC|NYSE
NEE|NEXTERA ENERGY INC|NYSE
ISRG|INTUITIVE SURGICAL INC|NASDAQ
HON|HONEYWELL INTERNATIONAL INC|NASDAQ
AMAT|APPLIED MATERIALS INC|NASDAQ
RTX|RTX CORP|NYSE
UBER|UBER TECHNOLOGIES INC|NYSE
GS|GOLDMAN SACHS GROUP INC|NYSE
LOW|LOWE'S COS INC|NYSE
BKNG|BOOKING HOLDINGS INC|NASDAQ
T|AT&T INC|NYSE
ELV|ELEVANCE HEALTH INC|NYSE
MS|MORGAN STANLEY|NYSE
PLD|PROLOGIS INC|NYSE
SYK|STRYKER CORP|NYSE
BLK|BLACKROCK INC|NYSE
AXP|AMERICAN EXPRESS CO|NYSE
MDT|MEDTRONIC PLC|NYSE
LMT|LOCKHEED MARTIN CORP|NYSE
TJX|TJX COMPANIES INC|NYSE
VRTX|VERTEX PHARMACEUTICALS INC|NASDAQ
BA|BOEING CO/THE|NYSE
SCHW|SCHWAB (CHARLES) CORP|NYSE
DE|DEERE & CO|NYSE
C|CITIGROUP INC|NYSE
ADP|AUTOMATIC DATA PROCESSING|NASDAQ
MDLZ|MONDELEZ INTERNATIONAL INC-A|NASDAQ
LRCX|LAM RESEARCH CORP|NASDAQ
REGN|REGENERON PHARMACEUTICALS|NASDAQ
ADI|ANALOG DEVICES INC|NASDAQ
MMC|MARSH & MCLENNAN COS|NYSE
CB|CHUBB LTD|NYSE
BMY|BRISTOL-MYERS SQUIBB CO|NYSE
SBUX|STARBUCKS CORP|NASDAQ
PANW|PALO ALTO NETWORKS INC|NASDAQ
GILD|GILEAD SCIENCES INC|NASDAQ
MU|MICRON TECHNOLOGY INC|NASDAQ
CI|CIGNA GROUP/THE|NYSE
AMT|AMERICAN TOWER CORP|NYSE
KLAC|KLA CORP|NASDAQ
SO|SOUTHERN CO/THE|NYSE
ETN|EATON CORP PLC|NYSE
ZTS|ZOETIS INC|NYSE
SNPS|SYNOPSYS INC|NASDAQ
CDNS|CADENCE DESIGN SYS INC|NASDAQ
DUK|DUKE ENERGY CORP|NYSE
MO|ALTRIA GROUP INC|NYSE
ICE|INTERCONTINENTAL EXCHANGE IN|NYSE
SHW|SHERWIN-WILLIAMS CO/THE|NYSE
BSX|BOSTON SCIENTIFIC CORP|NYSE
CL|COLGATE-PALMOLIVE CO|NYSE
EQIX|EQUINIX INC|NASDAQ
CME|CME GROUP INC|NASDAQ
ITW|ILLINOIS TOOL WORKS|NYSE
MCK|MCKESSON CORP|NYSE
PYPL|PAYPAL HOLDINGS INC|NASDAQ
CSX|CSX CORP|NASDAQ
TGT|TARGET CORP|NYSE
NOC|NORTHROP GRUMMAN CORP|NYSE
WM|WASTE MANAGEMENT INC|NYSE
EOG|EOG RESOURCES INC|NYSE
FDX|FEDEX CORP|NYSE
APD|AIR PRODUCTS & CHEMICALS INC|NYSE
HUM|HUMANA INC|NYSE
MMM|3M CO|NYSE
ORLY|O'REILLY AUTOMOTIVE INC|NASDAQ
PGR|PROGRESSIVE CORP|NYSE
MPC|MARATHON PETROLEUM CORP|NYSE
SLB|SCHLUMBERGER LTD|NYSE
FCX|FREEPORT-MCMORAN INC|NYSE
GD|GENERAL DYNAMICS CORP|NYSE
NSC|NORFOLK SOUTHERN CORP|NYSE
EMR|EMERSON ELECTRIC CO|NYSE
USB|US BANCORP|NYSE
PSX|PHILLIPS 66|NYSE
MAR|MARRIOTT INTERNATIONAL -CL A|NASDAQ
ROP|ROPER TECHNOLOGIES INC|NASDAQ
PNC|PNC FINANCIAL SERVICES GROUP|NYSE
ANET|ARISTA NETWORKS INC|NYSE
NXPI|NXP SEMICONDUCTORS NV|NASDAQ
HCA|HCA HEALTHCARE INC|NYSE
AJG|ARTHUR J GALLAGHER & CO|NYSE
APH|AMPHENOL CORP-CL A|NYSE
MCO|MOODY'S CORP|NYSE
ECL|ECOLAB INC|NYSE
MSI|MOTOROLA SOLUTIONS INC|NYSE
AON|AON PLC-CLASS A|NYSE
CTAS|CINTAS CORP|NASDAQ
WELL|WELLTOWER INC|NYSE
TT|TRANE TECHNOLOGIES PLC|NYSE
PCAR|PACCAR INC|NASDAQ
CARR|CARRIER GLOBAL CORP|NYSE
NKE|NIKE INC -CL B|NYSE
AZO|AUTOZONE INC|NYSE
ADSK|AUTODESK INC|NASDAQ
MET|METLIFE INC|NYSE
SRE|SEMPRA|NYSE
OXY|OCCIDENTAL PETROLEUM CORP|NYSE
TFC|TRUIST FINANCIAL CORP|NYSE
AIG|AMERICAN INTERNATIONAL GROUP|NYSE
KMB|KIMBERLY-CLARK CORP|NYSE
ROST|ROSS STORES INC|NASDAQ
PSA|PUBLIC STORAGE|NYSE
DXCM|DEXCOM INC|NASDAQ
F|FORD MOTOR CO|NYSE
GM|GENERAL MOTORS CO|NYSE
COF|CAPITAL ONE FINANCIAL CORP|NYSE
MNST|MONSTER BEVERAGE CORP|NASDAQ
KDP|KEURIG DR PEPPER INC|NASDAQ
HLT|HILTON WORLDWIDE HOLDINGS IN|NYSE
O|REALTY INCOME CORP|NYSE
PAYX|PAYCHEX INC|NASDAQ
CHTR|CHARTER COMMUNICATIONS INC-A|NASDAQ
D|DOMINION ENERGY INC|NYSE
AEP|AMERICAN ELECTRIC POWER|NASDAQ
MRNA|MODERNA INC|NASDAQ
KHC|KRAFT HEINZ CO/THE|NASDAQ
IDXX|IDEXX LABORATORIES INC|NASDAQ
FTNT|FORTINET INC|NASDAQ
ODFL|OLD DOMINION FREIGHT LINE|NASDAQ
EXC|EXELON CORP|NASDAQ
CPRT|COPART INC|NASDAQ
DLTR|DOLLAR TREE INC|NASDAQ
EA|ELECTRONIC ARTS INC|NASDAQ
BIIB|BIOGEN INC|NASDAQ
ILMN|ILLUMINA INC|NASDAQ
WBA|WALGREENS BOOTS ALLIANCE INC|NASDAQ
ZM|ZOOM VIDEO COMMUNICATIONS-A|NASDAQ
DDOG|DATADOG INC - CLASS A|NASDAQ
CRWD|CROWDSTRIKE HOLDINGS INC - A|NASDAQ
TEAM|ATLASSIAN CORP-CL A|NASDAQ
MRVL|MARVELL TECHNOLOGY INC|NASDAQ
ABNB|AIRBNB INC-CLASS A|NASDAQ
SHOP|SHOPIFY INC - CLASS A|NYSE
SQ|BLOCK INC|NYSE
PLTR|PALANTIR TECHNOLOGIES INC-A|NASDAQ
SNOW|SNOWFLAKE INC-CLASS A|NYSE
COIN|COINBASE GLOBAL INC -CLASS A|NASDAQ
RIVN|RIVIAN AUTOMOTIVE INC-A|NASDAQ
LCID|LUCID GROUP INC|NASDAQ
SOFI|SOFI TECHNOLOGIES INC|NASDAQ
HOOD|ROBINHOOD MARKETS INC - A|NASDAQ
ROKU|ROKU INC|NASDAQ
SPOT|SPOTIFY TECHNOLOGY SA|NYSE
QQQ|INVESCO QQQ TRUST SERIES 1|NASDAQ
IWM|ISHARES RUSSELL 2000 ETF|ARCA
DIA|SPDR DJIA TRUST|ARCA
VTI|VANGUARD TOTAL STOCK MKT ETF|ARCA
VOO|VANGUARD S&P 500 ETF|ARCA
GLD|SPDR GOLD SHARES|ARCA
SLV|ISHARES SILVER TRUST|ARCA
TLT|ISHARES 20+ YEAR TREASURY BD|NASDAQ
XLF|FINANCIAL SELECT SECTOR SPDR|ARCA
XLE|ENERGY SELECT SECTOR SPDR|ARCA
XLK|TECHNOLOGY SELECT SECT SPDR|ARCA
EEM|ISHARES MSCI EMERGING MARKET|ARCA
EFA|ISHARES MSCI EAFE ETF|ARCA
HYG|ISHARES IBOXX HIGH YLD CORP|ARCA
LQD|ISHARES IBOXX INVESTMENT GRA|ARCA
ARKK|ARK INNOVATION ETF|ARCA
SMH|VANECK SEMICONDUCTOR ETF|NASDAQ
"""

# IBKR's real conids where the reference shows them; the rest are derived.
KNOWN_CONIDS = {"MSFT": 272093, "IBM": 8314}
ETF_EXCHANGES = {"ARCA"}
ETFS = {"QQQ", "TLT", "SMH"}
MAX_SECDEF = 200
MAX_POINTS = 1000
NEW_YORK = "America/New_York"

PERIOD_RE = re.compile(r"([1-9][0-9]*)(min|h|d|w|m|y)")
BAR_SECONDS = {
    "1min": 60,
    "2min": 120,
    "3min": 180,
    "5min": 300,
    "10min": 600,
    "15min": 900,
    "30min": 1800,
    "1h": 3600,
    "2h": 7200,
    "3h": 10800,
    "4h": 14400,
    "8h": 28800,
    "1d": 86400,
    "1w": 604800,
    "1m": 2592000,
}
PERIOD_MAX = {"min": 30, "h": 8, "d": 1000, "w": 792, "m": 182, "y": 15}

_universe: dict[str, dict] | None = None
_by_conid: dict[int, dict] = {}


def _hash(text: str) -> int:
    import hashlib  # lazily: imported by an entry point module

    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16)


def universe() -> dict[str, dict]:
    """ticker -> stock: conid, company, exchange, spot, prior_close, volume, type."""
    global _universe
    if _universe is not None:
        return _universe
    from . import market

    out: dict[str, dict] = {}
    used = {u["conid"] for u in market.UNDERLYINGS.values()} | set(market.FX_PAIRS)
    for symbol, und in market.UNDERLYINGS.items():
        out[symbol] = {
            "symbol": symbol,
            "conid": und["conid"],
            "company": und["company"],
            "exchange": und["listing"],
            "spot": und["spot"],
            "prior_close": und["prior_close"],
            "volume": und["volume"][0],
            "type": "ETF" if symbol == "SPY" else "COMMON",
            "sec_type": und.get("sec_type", "STK"),  # an index (SPX) is IND
            "market": True,  # the option market prices it
        }
    for line in _TABLE.strip().splitlines():
        symbol, company, exchange = line.split("|")
        h = _hash(symbol)
        conid = KNOWN_CONIDS.get(symbol) or 1_000_000 + h % 89_000_000
        while conid in used:
            conid += 1
        used.add(conid)
        spot = round(20 + (h % 48_000) / 100.0, 2)  # 20.00 .. 499.99
        drift = ((h >> 20) % 801 - 400) / 10_000.0  # -4 % .. +4 %
        out[symbol] = {
            "symbol": symbol,
            "conid": conid,
            "company": company,
            "exchange": exchange,
            "spot": spot,
            "prior_close": round(spot / (1 + drift), 2),
            "volume": 200_000 + (h >> 32) % 60_000_000,
            "type": "ETF" if exchange in ETF_EXCHANGES or symbol in ETFS else "COMMON",
            "sec_type": "STK",
            "market": False,
        }
    _by_conid.update((s["conid"], s) for s in out.values())
    _universe = out
    return out


def stock(conid) -> dict | None:
    """The modelled stock with ``conid``, or ``None``."""
    universe()
    try:
        return _by_conid.get(int(conid))
    except (TypeError, ValueError):
        return None


def _short(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.2f}K"
    return str(int(n))


def fields_for(conid) -> dict[str, str] | None:
    """Snapshot fields (strings, as IBKR sends them) of a modelled stock the option
    market does not price itself, or ``None``."""
    s = stock(conid)
    if s is None or s["market"]:
        return None
    spot, prior = s["spot"], s["prior_close"]
    change = spot - prior
    open_ = round(prior + change * 0.3, 2)
    return {
        "31": f"{spot:.2f}",
        "84": f"{spot - 0.01:.2f}",
        "86": f"{spot + 0.01:.2f}",
        "88": f"{100 * (1 + s['conid'] % 37):,}",
        "85": f"{100 * (1 + s['conid'] % 23):,}",
        "7059": "100",
        "87": _short(s["volume"]),
        "7762": str(s["volume"]),
        "7635": f"{spot:.2f}",
        "7741": f"{prior:.2f}",
        "7295": f"{open_:.2f}",
        "7296": f"{spot:.2f}",
        "70": f"{max(spot, open_, prior) * 1.006:.2f}",
        "71": f"{min(spot, open_, prior) * 0.994:.2f}",
        "82": f"{change:.2f}",
        "83": f"{change / prior * 100:.2f}%",
        "55": s["symbol"],
        "6070": "STK",
        "6457": "0",
        "7219": s["symbol"],
        "7220": s["company"],
        "7221": s["exchange"],
        "7051": s["company"],
        "6509": "RpB",
    }


# --------------------------------------------------------------------------- search


def search_entry(s: dict) -> dict:
    return {
        "conid": str(s["conid"]),
        "companyHeader": f"{s['company']} - {s['exchange']}",
        "companyName": s["company"],
        "symbol": s["symbol"],
        "description": s["exchange"],
        "restricted": None,
        "sections": [{"secType": "STK"}, {"secType": "BAG"}],
    }


def _name_key(company: str) -> str:
    word = re.split(r"[^A-Z0-9]+", company.upper().strip())[0]
    return word


def search_fixture() -> dict:
    """Static search routes (the core fixture's catch-all answers ``[]`` for the rest)."""
    from . import market

    routes = []
    names: dict[str, list[dict]] = {}
    for s in universe().values():
        if s["symbol"] not in market.UNDERLYINGS:
            routes.append(
                {
                    "method": "GET",
                    "path": "/iserver/secdef/search",
                    "query": {"symbol": s["symbol"], "secType": "STK"},
                    "response": [search_entry(s)],
                }
            )
        names.setdefault(_name_key(s["company"]), []).append(s)
    for key, stocks in sorted(names.items()):
        if key in ("",):
            continue
        routes.append(
            {
                "method": "GET",
                "path": "/iserver/secdef/search",
                "query": {"symbol": key, "name": "true"},
                "response": [_name_entry(s) for s in stocks],
            }
        )
    return {
        "description": "Searches of the simulated stock market (ibgw_fake.stocks).",
        "routes": routes,
    }


def _name_entry(s: dict) -> dict:
    entry = search_entry(s)
    if s["market"]:
        from . import market

        months = ";".join(market.UNDERLYINGS[s["symbol"]]["months"])
        entry["sections"] = [
            {"secType": "STK"},
            {"secType": "OPT", "months": months, "exchange": "SMART;AMEX;CBOE"},
            {"secType": "BAG"},
        ]
    return entry


# --------------------------------------------------------------------------- definitions


def _bad(message: str):
    return 400, {"error": message, "statusCode": 400}


def _industry(s: dict) -> tuple[str, str]:
    """(industry, category) of a modelled stock."""
    from . import market

    und = market.UNDERLYINGS.get(s["symbol"])
    if und is not None:
        return und["industry"], und["category"]
    return ("Funds", "Equity Fund") if s["type"] == "ETF" else ("Simulated", "Simulated")


def contract_info(conid) -> dict | None:
    """What ``/iserver/contract/{conid}/info`` answers, or ``None``."""
    from . import market

    s = stock(conid)
    if s is not None:
        return {
            "cfi_code": "",
            "symbol": s["symbol"],
            "cusip": None,
            "expiry_full": None,
            "con_id": s["conid"],
            "maturity_date": None,
            "industry": _industry(s)[0],
            "instrument_type": s["sec_type"],
            "trading_class": s["symbol"].replace(".", " "),
            "valid_exchanges": f"SMART,{s['exchange']},NYSE,ARCA,BATS,IEX",
            "allow_sell_long": False,
            "is_zero_commission_security": False,
            "local_symbol": s["symbol"].replace(".", " "),
            "contract_clarification_type": None,
            "classifier": None,
            "currency": "USD",
            "text": None,
            "underlying_con_id": 0,
            "r_t_h": True,
            "multiplier": None,
            "underlying_issuer": None,
            "contract_month": None,
            "company_name": s["company"],
            "smart_available": True,
            "exchange": "SMART",
            "category": _industry(s)[1],
        }
    opt = market.option(conid)
    if opt is not None:
        rec = market.info_record(opt)
        expiry = opt["expiry"]
        return {
            "cfi_code": "OCXXXS",
            "symbol": opt["symbol"],
            "cusip": None,
            "expiry_full": expiry.strftime("%Y%m%d"),
            "con_id": opt["conid"],
            "maturity_date": expiry.strftime("%Y%m%d"),
            "instrument_type": "OPT",
            "trading_class": opt["symbol"],
            "valid_exchanges": rec["validExchanges"],
            "allow_sell_long": False,
            "is_zero_commission_security": False,
            "local_symbol": f"{opt['symbol']:<6}{expiry:%y%m%d}{opt['right']}"
            f"{int(round(opt['strike'] * 1000)):08d}",
            "contract_clarification_type": None,
            "classifier": None,
            "currency": "USD",
            "text": rec["desc2"],
            "underlying_con_id": market.UNDERLYINGS[opt["symbol"]]["conid"],
            "r_t_h": False,
            "multiplier": "100",
            "underlying_issuer": None,
            "contract_month": expiry.strftime("%Y%m"),
            "company_name": market.UNDERLYINGS[opt["symbol"]]["company"],
            "smart_available": True,
            "exchange": "SMART",
            "right": "CALL" if opt["right"] == "C" else "PUT",
            "strike": market._strike_text(opt["strike"]),
        }
    try:
        pair = market.FX_PAIRS.get(int(conid))
    except (TypeError, ValueError):
        pair = None
    if pair is not None:
        symbol, _rate, name = pair
        base, quote = symbol.split(".")
        return {
            "cfi_code": "",
            "symbol": base,
            "cusip": None,
            "con_id": int(conid),
            "instrument_type": "CASH",
            "trading_class": symbol,
            "valid_exchanges": "IDEALPRO",
            "local_symbol": symbol,
            "currency": quote,
            "text": None,
            "underlying_con_id": 0,
            "r_t_h": False,
            "multiplier": None,
            "company_name": name,
            "smart_available": False,
            "exchange": "IDEALPRO",
        }
    return None


def secdef(conid) -> dict | None:
    """One ``/trsrv/secdef`` entry, or ``None``."""
    s = stock(conid)
    if s is not None:
        return {
            "conid": s["conid"],
            "currency": "USD",
            "name": s["company"],
            "assetClass": s["sec_type"],
            "expiry": None,
            "lastTradingDay": None,
            "group": _industry(s)[0],
            "putOrCall": None,
            "sector": _industry(s)[0],
            "sectorGroup": _industry(s)[1],
            "strike": "0",
            "ticker": s["symbol"],
            "undConid": 0,
            "multiplier": 0.0,
            "type": s["type"],
            "hasOptions": s["market"],
            "fullName": s["symbol"],
            "isUS": True,
            "isEventContract": False,
            "listingExchange": s["exchange"],
            "countryCode": "US",
        }
    info = contract_info(conid)
    if info is None:
        return None
    return {
        "conid": info["con_id"],
        "currency": info["currency"],
        "name": info["company_name"],
        "assetClass": info["instrument_type"],
        "expiry": info.get("expiry_full"),
        "putOrCall": (info.get("right") or "")[:1] or None,
        "strike": info.get("strike") or "0",
        "ticker": info["symbol"],
        "undConid": info["underlying_con_id"],
        "multiplier": float(info["multiplier"] or 0),
        "fullName": info.get("text") or info["local_symbol"],
        "isUS": info["currency"] == "USD",
        "listingExchange": info["exchange"],
        "countryCode": "US",
    }


def contract_info_route(request):
    conid = request.params.get("conid", "")
    info = contract_info(conid) if conid.isdigit() else None
    if info is None:
        return _bad("Invalid conid")
    return 200, info


def secdef_route(request):
    raw = [c.strip() for c in str(request.query.get("conids") or "").split(",") if c.strip()]
    if not raw or len(raw) > MAX_SECDEF or not all(c.isdigit() for c in raw):
        return _bad(f"conids: 1 to {MAX_SECDEF} contract ids")
    found = [d for d in (secdef(c) for c in raw) if d is not None]
    if not found:
        return 204, b""
    return 200, {"secdef": found}


# --------------------------------------------------------------------------- history


def _sessions(day: datetime.date, outside_rth: bool, tz) -> tuple[datetime.datetime, ...]:
    start = (4, 0) if outside_rth else (9, 30)
    end = (20, 0) if outside_rth else (16, 0)
    return (
        datetime.datetime(day.year, day.month, day.day, *start, tzinfo=tz),
        datetime.datetime(day.year, day.month, day.day, *end, tzinfo=tz),
    )


def period_delta(period: str) -> datetime.timedelta | None:
    m = PERIOD_RE.fullmatch(period or "")
    if m is None:
        return None
    n, unit = int(m.group(1)), m.group(2)
    if n > PERIOD_MAX[unit]:
        return None
    minutes = {"min": 1, "h": 60, "d": 1440, "w": 10080, "m": 43200, "y": 525600}[unit]
    return datetime.timedelta(minutes=n * minutes)


def bar_times(period: str, bar: str, outside_rth: bool) -> list[datetime.datetime]:
    """Bar start times (aware, New York) ending at the close of MARKET_DATE."""
    from zoneinfo import ZoneInfo

    from . import market

    tz = ZoneInfo(NEW_YORK)
    end_day = market.MARKET_DATE
    close = _sessions(end_day, outside_rth, tz)[1]
    span = period_delta(period)
    if span is None or bar not in BAR_SECONDS:
        return []
    start = close - span
    step = BAR_SECONDS[bar]
    out: list[datetime.datetime] = []
    day = start.date()
    while day <= end_day:
        if day.weekday() < 5:
            open_, shut = _sessions(day, outside_rth, tz)
            if step >= 86400:
                if open_ >= start:
                    out.append(open_)
            else:
                t = max(open_, start)
                # on the bar grid from the session open
                offset = (t - open_).total_seconds()
                t = open_ + datetime.timedelta(seconds=math.ceil(offset / step) * step)
                while t < shut:
                    out.append(t)
                    t += datetime.timedelta(seconds=step)
        day += datetime.timedelta(days=1)
    if step == 604800:  # weekly bars: the first session of each week
        weeks: dict = {}
        for t in out:
            weeks.setdefault(t.isocalendar()[:2], t)
        out = list(weeks.values())
    elif step == 2592000:  # monthly bars: the first session of each month
        months: dict = {}
        for t in out:
            months.setdefault((t.year, t.month), t)
        out = list(months.values())
    return out[-MAX_POINTS:]


def bars(s: dict, period: str, bar: str, outside_rth: bool) -> list[dict]:
    import random

    times = bar_times(period, bar, outside_rth)
    rng = random.Random(_hash(f"{s['symbol']}|{period}|{bar}|{outside_rth}"))
    n = len(times)
    # walk backwards from the last price so the newest close is the quote's last
    closes = [s["spot"]]
    vol = 0.012 * math.sqrt(min(BAR_SECONDS[bar], 86400) / 86400.0) if n else 0.0
    for _ in range(n - 1):
        closes.append(max(0.5, closes[-1] * math.exp(-rng.gauss(0, vol))))
    closes.reverse()
    out = []
    per_bar = max(1, int(s["volume"] * min(BAR_SECONDS[bar], 86400) / 23400 / 100))
    prev = closes[0] * (1 + rng.gauss(0, vol / 2))
    for t, c in zip(times, closes, strict=True):
        o = prev
        h = max(o, c) * (1 + abs(rng.gauss(0, vol / 3)))
        low = min(o, c) * (1 - abs(rng.gauss(0, vol / 3)))
        out.append(
            {
                "o": round(o, 2),
                "c": round(c, 2),
                "h": round(h, 2),
                "l": round(low, 2),
                "v": round(per_bar * (0.5 + rng.random()), 2),
                "t": int(t.timestamp() * 1000),
            }
        )
        prev = c
    return out


def history_route(request):
    q = request.query
    conid = str(q.get("conid") or "").strip()
    period = str(q.get("period") or "1w").strip()
    bar = str(q.get("bar") or "").strip()
    outside = str(q.get("outsideRth") or "false").lower() == "true"
    if bar not in BAR_SECONDS:
        return _bad(f"Bar size {bar!r} is not valid")
    if period_delta(period) is None:
        return _bad(f"Period {period!r} is not valid")
    s = stock(conid) if conid.isdigit() else None
    if s is None:
        return _bad("Chart data unavailable")
    data = bars(s, period, bar, outside)
    if not data:
        return 200, {"symbol": s["symbol"], "text": s["company"], "data": [], "points": 0}
    start = datetime.datetime.fromtimestamp(data[0]["t"] / 1000, datetime.UTC)
    hi = max(data, key=lambda b: b["h"])
    lo = min(data, key=lambda b: b["l"])
    return 200, {
        "serverId": "20477",
        "symbol": s["symbol"],
        "text": s["company"],
        "priceFactor": 100,
        "startTime": start.strftime("%Y%m%d-%H:%M:%S"),
        "high": f"{round(hi['h'] * 100)}/{hi['v']:.2f}/0",
        "low": f"{round(lo['l'] * 100)}/{lo['v']:.2f}/0",
        "timePeriod": period,
        "barLength": BAR_SECONDS[bar],
        "mdAvailability": "S",
        "mktDataDelay": 0,
        "outsideRth": outside,
        "volumeFactor": 1,
        "priceDisplayRule": 1,
        "priceDisplayValue": "2",
        "negativeCapable": False,
        "messageVersion": 2,
        "data": data,
        "points": len(data) - 1,
        "travelTime": 1,
    }


def register_routes(register) -> None:
    """Register the stock market's routes (called from the market's fixture hook)."""
    from ibgw import FakeRoute

    register(search_fixture())
    register(FakeRoute("GET", "/iserver/contract/{conid}/info", contract_info_route, "stocks"))
    from . import market

    if not hasattr(market.MarketRoutes, "secdef"):  # the option market may serve it itself
        register(FakeRoute("GET", "/trsrv/secdef", secdef_route, "stocks"))
    register(FakeRoute("GET", "/iserver/marketdata/history", history_route, "stocks"))
