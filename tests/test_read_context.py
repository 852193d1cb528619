"""What a plugin's fetch function gets from the read context, and how a read's
declared choices are taken on the command line."""

from ibgw import Endpoint, Param, Read, hookimpl
from ibgw.endpoints import TICKLE


def test_a_plugin_calling_tickle_never_sees_the_websocket_credential(ibgw_pm, ibgw_cli):
    """The tickle's ``session`` opens the gateway's websocket; ctx.websocket() uses it
    inside the core, so a plugin that asks /tickle itself gets the answer without it."""
    seen = {}

    def fetch(ctx):
        answer = ctx.call(TICKLE)
        seen.update(answer)
        return [{"keys": ",".join(sorted(answer))}]

    class Tickler:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="tickler",
                    name="once",
                    summary="x",
                    default=True,
                    endpoints=[TICKLE],
                    fetch=fetch,
                    columns=["keys"],
                )
            )

    ibgw_pm.register(Tickler)
    result = ibgw_cli("tickler", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert seen, "the read ran and the gateway answered"
    assert "session" not in seen
    assert {"ssoExpires", "iserver"} <= set(seen)  # the rest of the answer is there


def _choice_plugin(seen):
    endpoint = Endpoint("GET", "/iserver/accounts")

    def fetch(ctx, kind="STK"):
        seen.append(kind)
        return [{"kind": kind}]

    class Chooser:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="chooser",
                    name="pick",
                    summary="x",
                    default=True,
                    params=[Param("kind", "A kind.", type="choice", choices=("STK", "IND"))],
                    endpoints=[endpoint],
                    fetch=fetch,
                    columns=["kind"],
                )
            )

    return Chooser


def test_a_choice_is_taken_in_any_case_and_reaches_the_read_as_declared(ibgw_pm, ibgw_cli):
    seen = []
    ibgw_pm.register(_choice_plugin(seen))
    result = ibgw_cli("chooser", "--kind", "ind", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert seen == ["IND"]


def test_a_wrong_choice_names_the_choices_as_declared(ibgw_pm, ibgw_cli):
    seen = []
    ibgw_pm.register(_choice_plugin(seen))
    result = ibgw_cli("chooser", "--kind", "fut")
    assert result.exit_code == 2
    assert "'STK', 'IND'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert seen == []
