"""ibgw-scanners: IBKR market scanners.

``ibgw scanners params|locations|filters`` read the scanner parameter tree
(``GET /iserver/scanner/params``, which IBKR allows once per 15 minutes): it is
cached on disk for a day and reused. ``ibgw scanners run`` runs one scan
(``POST /iserver/scanner/run``, a read IBKR defines as POST) after checking the
scan type and filters against that tree. This module holds declarations and hook
implementations only; fetch functions live in :mod:`ibgw_scanners.reads`.
"""

from ibgw import Category, Endpoint, FakeRoute, Param, Read, hookimpl

SCAN_CODE = r"[A-Za-z0-9_]{1,64}"
INSTRUMENT = r"[A-Za-z0-9_.]{1,32}"
LOCATION = r"[A-Za-z0-9_.]{1,64}"
FILTER_CODE = r"[A-Za-z][A-Za-z0-9_]{0,63}"
FILTER_VALUE = r"[A-Za-z0-9_.:,+\-]{1,64}"

SCANNER_PARAMS = Endpoint(
    "GET",
    "/iserver/scanner/params",
    pacing="scanner-params",
    provenance="documented",
)
# Body keys as the gateway facade names them: top-level scalars by their key, the
# list of filter objects by "filter.<key>" (ibgw.gateway.Gateway._check_body_value).
SCANNER_RUN = Endpoint(
    "POST",
    "/iserver/scanner/run",
    pacing="scanner-run",
    provenance="documented",
    body=True,
    params={
        "instrument": INSTRUMENT,
        "location": LOCATION,
        "type": SCAN_CODE,
        "filter.code": FILTER_CODE,
        "filter.value": FILTER_VALUE,
    },
)

R = "ibgw_scanners.reads"
INSTRUMENT_PARAM = Param(
    "instrument", help="Instrument type, e.g. STK or ETF.EQ.US.", pattern=INSTRUMENT, metavar="TYPE"
)
REFRESH = Param(
    "refresh",
    type="bool",
    help="Fetch the parameters again (IBKR allows one fetch per 15 min; "
    "falls back to the cached copy when paced).",
)


@hookimpl
def ibgw_register_reads(register):
    register(Category("scanners", "Market scanners and their parameters."))
    register(
        Read(
            category="scanners",
            name="params",
            default=True,
            summary="Scanner types (scan codes) available, from the cached parameter tree.",
            description="The parameter tree is fetched at most once a day (IBKR allows one fetch "
            "per 15 min) and cached; --refresh fetches it again.",
            params=[
                INSTRUMENT_PARAM,
                Param(
                    "search",
                    help="Case-insensitive text in the scan code or name.",
                    metavar="TEXT",
                    pattern=r"[^\x00-\x1f\x7f]{1,64}",
                ),
                REFRESH,
            ],
            endpoints=[SCANNER_PARAMS],
            fetch=f"{R}:fetch_params",
            schema=f"{R}:ScanTypeSchema",
            columns=["code", "name", "instruments"],
            probe={},
        )
    )
    register(
        Read(
            category="scanners",
            name="locations",
            summary="Scanner locations (e.g. STK.US.MAJOR), from the cached parameter tree.",
            params=[INSTRUMENT_PARAM, REFRESH],
            endpoints=[SCANNER_PARAMS],
            fetch=f"{R}:fetch_locations",
            schema=f"{R}:LocationSchema",
            columns=["location", "name", "group"],
            probe={},
        )
    )
    register(
        Read(
            category="scanners",
            name="filters",
            summary="Scanner filters (codes for --filter), from the cached parameter tree.",
            params=[INSTRUMENT_PARAM, REFRESH],
            endpoints=[SCANNER_PARAMS],
            fetch=f"{R}:fetch_filters",
            schema=f"{R}:FilterSchema",
            columns=["code", "name", "group", "kind"],
            probe={},
        )
    )
    register(
        Read(
            category="scanners",
            name="run",
            summary="Run a market scanner (at most 50 results).",
            description="--type, --instrument, --location and every --filter code are checked "
            "against the scanner parameters (see 'ibgw scanners params|locations|filters'). "
            "Example: ibgw scanners run --type TOP_PERC_GAIN --instrument STK "
            "--location STK.US.MAJOR --filter priceAbove=5",
            params=[
                Param(
                    "type",
                    help="Scan code, e.g. TOP_PERC_GAIN.",
                    required=True,
                    pattern=SCAN_CODE,
                    metavar="CODE",
                ),
                Param(
                    "instrument",
                    help="Instrument type, e.g. STK.",
                    required=True,
                    pattern=INSTRUMENT,
                    metavar="TYPE",
                ),
                Param(
                    "location",
                    help="Location, e.g. STK.US.MAJOR.",
                    required=True,
                    pattern=LOCATION,
                    metavar="LOCATION",
                ),
                Param(
                    "filter",
                    help="Filter as code=value, e.g. priceAbove=5 (repeatable).",
                    multiple=True,
                    metavar="CODE=VALUE",
                ),
            ],
            endpoints=[SCANNER_PARAMS, SCANNER_RUN],
            fetch=f"{R}:fetch_run",
            schema=f"{R}:ScanResultSchema",
            columns=["rank", "symbol", "conid", "company", "exchange", "sec_type", "scan_value"],
            # cheap once the parameter tree is cached: 'ibgw probe' runs the scanners'
            # filters/locations/params probes (which fetch or reuse the tree) before this one
            probe={"type": "MOST_ACTIVE", "instrument": "STK", "location": "STK.US.MAJOR"},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files

    from . import fake

    register(files("ibgw_scanners") / "fixtures" / "scanner_params.json")
    register(FakeRoute("POST", "/iserver/scanner/run", fake.scanner_run, source="ibgw-scanners"))
