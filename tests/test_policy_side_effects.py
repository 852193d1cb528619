"""Reads that IBKR lets a query or a path turn into side effects (issue 17):
``GET /iserver/account/orders?force=true`` clears the gateway's order cache and
``/hmds/auth/init`` initialises a historical-data session. Each is refused before a
byte is sent, with a ``denied`` audit record; the plain read stays allowed."""

from __future__ import annotations

import json
import os

import pytest

from ibgw.errors import PolicyRefused
from ibgw.policy import check_request, is_denied

ORDERS = "/iserver/account/orders"


@pytest.mark.parametrize(
    "query",
    [
        (("force", "true"),),
        (("force", "TRUE"),),
        (("force", "1"),),
        (("force", "yes"),),
        (("force", " true "),),
        (("Force", "true"),),
        (("force[]", "true"),),
        (("filters", "filled"), ("force", "true")),
        {"force": "true"},
    ],
)
def test_orders_listing_with_force_is_refused(query):
    with pytest.raises(PolicyRefused) as info:
        check_request("GET", ORDERS, query)
    assert info.value.exit_code == 6 and "order cache" in info.value.message
    # however the path is spelt for a loose router
    with pytest.raises(PolicyRefused):
        check_request("GET", "/iserver/account/orders.json", query)
    with pytest.raises(PolicyRefused):
        check_request("GET", "/ISERVER/Account/Orders", query)


@pytest.mark.parametrize(
    "query", [(), (("force", "false"),), (("filters", "filled,cancelled"),), None]
)
def test_orders_listing_without_force_is_allowed(query):
    check_request("GET", ORDERS, query)
    assert is_denied("GET", ORDERS) is None


def test_force_on_other_reads_is_not_this_rule():
    # the rule is about the orders listing only: another read's 'force' is not refused
    check_request("GET", "/iserver/account/trades", (("force", "true"),))


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/hmds/auth/init"),
        ("POST", "/hmds/auth/init"),
        ("GET", "/HMDS/auth/init.json"),
        ("GET", "/v1/hmds/auth/init"),
    ],
)
def test_hmds_auth_init_is_refused(method, path):
    with pytest.raises(PolicyRefused) as info:
        check_request(method, path)
    assert info.value.exit_code == 6
    assert is_denied(method, path) is not None


@pytest.mark.parametrize("path", ["/hmds/history", "/hmds/scanner/params", "/iserver/auth/status"])
def test_other_hmds_and_auth_reads_stay_allowed(path):
    method = "POST" if path == "/iserver/auth/status" else "GET"
    check_request(method, path)


# -- end to end: a plugin that asks for them gets exit 6, no request, a denied record


def _records(env):
    path = os.path.join(env, "state", "audit.jsonl")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture
def side_effect_plugin(ibgw_pm):
    from ibgw import Endpoint, Param, Read, hookimpl

    orders = Endpoint("GET", ORDERS, params={"force": r"true|false", "filters": r"[a-z,]{1,40}"})
    hmds_init = Endpoint("GET", "/hmds/auth/init", provenance="undocumented", evidence="test")

    class P:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="sidefx",
                    name="orders",
                    summary="x",
                    default=True,
                    params=[Param("force", "force", type="bool", default=False)],
                    endpoints=[orders],
                    fetch=lambda ctx, force=False: (
                        ctx.call(orders, query={"force": "true"} if force else {}) or []
                    ),
                )
            )
            # A read that declares /hmds/auth/init is refused at registration
            # (tests/test_containment.py); this one calls it without declaring it,
            # so the facade's own check is what stops it.
            register(
                Read(
                    category="sidefx",
                    name="hmds",
                    summary="x",
                    endpoints=[orders],
                    fetch=lambda ctx: ctx.call(hmds_init) or [],
                )
            )

    ibgw_pm.register(P)
    return P


def test_force_true_is_refused_before_a_byte_with_a_denied_record(
    side_effect_plugin, ibgw_fake_gateway, ibgw_cli, ibgw_env
):
    url = ibgw_fake_gateway.url
    refused = ibgw_cli("--backend", "live", "--gateway-url", url, "sidefx", "orders", "--force")
    assert refused.exit_code == 6, refused.output + refused.stderr
    assert "order cache" in refused.stderr and "Traceback" not in refused.stderr
    assert not [r for r in ibgw_fake_gateway.requests if r[1].endswith("/account/orders")]
    denied = [r for r in _records(ibgw_env) if r.get("kind") == "denied"]
    assert denied and denied[-1]["path_template"] == ORDERS
    outcomes = [r for r in _records(ibgw_env) if r.get("outcome") == "denied"]
    assert outcomes and outcomes[-1]["command"] == "sidefx orders"

    # the plain listing is a read and is sent
    allowed = ibgw_cli("--backend", "live", "--gateway-url", url, "sidefx", "orders")
    assert allowed.exit_code != 6, allowed.stderr
    assert [r for r in ibgw_fake_gateway.requests if r[1].endswith("/account/orders")]


def test_hmds_auth_init_is_refused_before_a_byte_with_a_denied_record(
    side_effect_plugin, ibgw_fake_gateway, ibgw_cli, ibgw_env
):
    url = ibgw_fake_gateway.url
    refused = ibgw_cli("--backend", "live", "--gateway-url", url, "sidefx", "hmds")
    assert refused.exit_code == 6, refused.output + refused.stderr
    assert not [r for r in ibgw_fake_gateway.requests if "/hmds/" in r[1]]
    denied = [r for r in _records(ibgw_env) if r.get("kind") == "denied"]
    assert denied and denied[-1]["path_template"] == "/hmds/auth/init"


def test_a_read_declaring_hmds_auth_init_never_registers(ibgw_pm, ibgw_cli):
    from ibgw import Endpoint, Read, hookimpl

    hmds_init = Endpoint("GET", "/hmds/auth/init", provenance="undocumented", evidence="test")

    class Declares:
        @hookimpl
        def ibgw_register_reads(register):
            register(
                Read(
                    category="sidefx2",
                    name="hmds",
                    summary="x",
                    endpoints=[hmds_init],
                    fetch=lambda ctx: [],
                )
            )

    ibgw_pm.register(Declares)
    from ibgw.plugins import collect_reads

    registry = collect_reads(ibgw_pm)
    assert registry.get("sidefx2", "hmds") is None
    assert any("/hmds/auth/init" in e for e in registry.errors)
    result = ibgw_cli("--backend", "fake", "sidefx2", "hmds")
    assert result.exit_code == 2 and "No such command" in result.stderr
