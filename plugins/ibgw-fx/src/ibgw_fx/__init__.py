"""ibgw-fx: exchange rates (``ibgw fx rate USD EUR``) and currency pairs (``ibgw fx pairs USD``).

Both endpoints are in IBKR's OpenAPI spec and need the brokerage session (``/iserver``).
This module holds declarations and hook implementations only; the fetch functions and
schemas live in :mod:`ibgw_fx.reads` and are imported when a read runs.
"""

from ibgw import Category, Endpoint, FakeRoute, Param, Read, hookimpl

CCY = r"[A-Z]{3}"
CCY_INPUT = r"[A-Za-z]{3}"

EXCHANGE_RATE = Endpoint(
    "GET",
    "/iserver/exchangerate",
    params={"source": CCY, "target": CCY},
    pacing="global",
    provenance="documented",
)
CURRENCY_PAIRS = Endpoint(
    "GET",
    "/iserver/currency/pairs",
    params={"currency": CCY},
    pacing="global",
    provenance="documented",
)

R = "ibgw_fx.reads"


@hookimpl
def ibgw_register_reads(register):
    register(Category("fx", "Exchange rates and currency pairs."))
    register(
        Read(
            category="fx",
            name="rate",
            default=True,
            single=True,
            summary="Exchange rate between two currencies (target units per source unit).",
            description="SOURCE and TARGET are ISO 4217 codes such as USD, EUR, JPY (any case).",
            params=[
                Param(
                    "source",
                    help="Currency to convert from, e.g. USD.",
                    required=True,
                    argument=True,
                    pattern=CCY_INPUT,
                    metavar="SOURCE",
                ),
                Param(
                    "target",
                    help="Currency to convert to, e.g. EUR.",
                    required=True,
                    argument=True,
                    pattern=CCY_INPUT,
                    metavar="TARGET",
                ),
            ],
            endpoints=[EXCHANGE_RATE],
            fetch=f"{R}:fetch_rate",
            schema=f"{R}:RateSchema",
            columns=["source", "target", "rate", "inverse"],
            probe={"source": "USD", "target": "EUR"},
        )
    )
    register(
        Read(
            category="fx",
            name="pairs",
            summary="FX pairs IBKR lists for a currency (as base or quote), with their conids.",
            params=[
                Param(
                    "currency",
                    help="ISO currency code, e.g. USD.",
                    required=True,
                    argument=True,
                    pattern=CCY_INPUT,
                    metavar="CURRENCY",
                ),
            ],
            endpoints=[CURRENCY_PAIRS],
            fetch=f"{R}:fetch_pairs",
            schema=f"{R}:PairSchema",
            columns=["symbol", "conid", "currency", "base", "quote"],
            probe={"currency": "USD"},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files

    from . import fake

    register(files("ibgw_fx") / "fixtures" / "fx.json")
    register(FakeRoute("GET", "/iserver/exchangerate", fake.exchange_rate, source="ibgw-fx"))
