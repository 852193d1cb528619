"""Computed fake-backend answer for ``POST /iserver/scanner/run`` (standard library only).

Each scan type answers its own synthetic list, in the shape of IBKR's spec example
and the S3 recording: ``server_id`` strings, ``con_id`` numbers and ``conidex``
strings, ``column_name`` on the first contract, ``scan_data`` for some scans only.
A scan type, instrument or location the parameter fixture does not list answers
400, like the gateway rejecting a bad request.
"""

_ROWS = {
    # symbol, conid, company, listing exchange
    "AAPL": (265598, "APPLE INC", "NASDAQ.NMS"),
    "SPY": (756733, "SPDR S&P 500 ETF TRUST", "ARCA"),
    "TSLA": (76792991, "TESLA INC", "NASDAQ.NMS"),
    "NVDA": (4815747, "NVIDIA CORP", "NASDAQ.NMS"),
    "MSFT": (272093, "MICROSOFT CORP", "NASDAQ.NMS"),
    "AMD": (4391, "ADVANCED MICRO DEVICES", "NASDAQ.NMS"),
    "QQQ": (320227571, "INVESCO QQQ TRUST SERIES 1", "NASDAQ.NMS"),
    "IWM": (9579970, "ISHARES RUSSELL 2000 ETF", "ARCA"),
    "GV": (706149062, "VISIONARY HOLDINGS INC", "NASDAQ.SCM"),
    "SKYQ": (863831941, "SKY QUARRY INC", "NASDAQ.SCM"),
    "T": (37018770, "AT&T INC", "NYSE"),
    "VZ": (13824, "VERIZON COMMUNICATIONS INC", "NYSE"),
}

# scan type -> (scan data column name or None, [(symbol, scan_data or None)])
SCANS = {
    "TOP_PERC_GAIN": (
        "Chg%",
        [("GV", "41.20%"), ("SKYQ", "27.85%"), ("AMD", "6.10%"), ("NVDA", "4.02%")],
    ),
    "TOP_PERC_LOSE": ("Chg%", [("TSLA", "-7.45%"), ("MSFT", "-2.10%"), ("AAPL", "-1.05%")]),
    "MOST_ACTIVE": (
        None,
        [("SPY", None), ("TSLA", None), ("NVDA", None), ("AAPL", None), ("QQQ", None)],
    ),
    "MOST_ACTIVE_USD": ("Volume ($)", [("SPY", "31.2B"), ("NVDA", "18.4B"), ("TSLA", "12.9B")]),
    "HOT_BY_VOLUME": (
        "Volume",
        [("NVDA", "312.4M"), ("TSLA", "120.1M"), ("AMD", "64.8M"), ("AAPL", "52.3M")],
    ),
    "HOT_BY_PRICE": (None, [("AMD", None), ("NVDA", None)]),
    "TOP_TRADE_COUNT": ("Trades", [("TSLA", "221.521K"), ("SPY", "123.661K")]),
    "TOP_TRADE_RATE": ("Trades/min", [("TSLA", "1.2K"), ("NVDA", "980")]),
    "TOP_OPEN_PERC_GAIN": ("Chg% Open", [("SKYQ", "12.40%"), ("GV", "9.90%")]),
    "HIGH_OPT_IMP_VOLAT": ("Opt Imp Vol", [("GV", "310.5%"), ("TSLA", "62.4%")]),
    "HIGH_DIVIDEND_YIELD_IB": ("Div Yield", [("T", "6.30%"), ("VZ", "6.10%")]),
    "HALTED": (None, []),
}
ETF_SCANS = {"MOST_ACTIVE": ["SPY", "QQQ", "IWM"], "TOP_PERC_GAIN": ["IWM", "QQQ"]}
INSTRUMENTS = {
    "STK": {"STK", "STK.US", "STK.US.MAJOR"},
    "ETF.EQ.US": {"ETF.EQ.US", "ETF.EQ.US.MAJOR"},
}


def _bad(what: str):
    return 400, {"error": f"Bad Request: {what}", "statusCode": 400}


def scanner_run(request):
    body = request.body if isinstance(request.body, dict) else {}
    scan, instrument, location = body.get("type"), body.get("instrument"), body.get("location")
    if scan not in SCANS:
        return _bad("invalid scan type")
    if instrument not in INSTRUMENTS or location not in INSTRUMENTS[instrument]:
        return _bad("invalid instrument or location")
    column, items = SCANS[scan]
    if instrument == "ETF.EQ.US":
        items = [(s, None) for s in ETF_SCANS.get(scan, [])]
        column = None
    for f in body.get("filter") or []:
        if (
            isinstance(f, dict)
            and f.get("code") == "priceAbove"
            and float(f.get("value", 0)) > 1000
        ):
            items = []  # nothing trades that high in this fixture
    contracts = []
    for i, (symbol, data) in enumerate(items):
        conid, company, exchange = _ROWS[symbol]
        c = {
            "server_id": str(i),
            "symbol": symbol,
            "conidex": str(conid),
            "con_id": conid,
            "available_chart_periods": "#R|1",
            "company_name": company,
            "contract_description_1": symbol,
            "listing_exchange": exchange,
            "sec_type": "STK",
        }
        if i == 0 and column:
            c["column_name"] = column
        if data is not None:
            c["scan_data"] = data
        contracts.append(c)
    answer = {"contracts": contracts}
    if column:
        answer["scan_data_column_name"] = column
    return 200, answer
