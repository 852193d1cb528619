"""ibgw-hello: the example plugin built in docs/writing-a-plugin.md.

``ibgw hello contract --conid 756733`` shows what IBKR knows about a contract id.
This module holds declarations and hook implementations only: ``ibgw --help``
imports it, so it imports nothing heavy. The fetch function and the schema live
in :mod:`ibgw_hello.reads` and are imported when the read runs.
"""

from ibgw import Category, Endpoint, Param, Read, hookimpl

# GET /trsrv/secdef?conids=265598,756733 (in IBKR's OpenAPI spec: "documented").
SECDEF = Endpoint(
    "GET",
    "/trsrv/secdef",
    params={"conids": r"[0-9]{1,10}(,[0-9]{1,10}){0,199}"},
    pacing="global",
    provenance="documented",
)


@hookimpl
def ibgw_register_reads(register):
    register(Category("hello", "What IBKR knows about contract ids."))
    register(
        Read(
            category="hello",
            name="contract",
            default=True,
            summary="What IBKR knows about contract ids: symbol, name, type, currency.",
            params=[
                Param(
                    "conid",
                    help="Contract id, e.g. 756733 (SPY). Repeat for several, up to 200.",
                    type="int",
                    required=True,
                    multiple=True,
                    pattern=r"[1-9][0-9]{0,9}",
                    metavar="CONID",
                ),
            ],
            endpoints=[SECDEF],
            fetch="ibgw_hello.reads:fetch_contracts",
            schema="ibgw_hello.reads:ContractSchema",
            columns=["conid", "ticker", "name", "asset_class", "type", "currency", "exchange"],
            probe={"conid": [756733]},
        )
    )


@hookimpl
def ibgw_fake_fixtures(register):
    from importlib.resources import files

    register(files("ibgw_hello") / "fixtures" / "contracts.json")
