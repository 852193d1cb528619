"""Parsing the gateway's loosely typed values, and the positions schema built on it."""

from __future__ import annotations

import math

import pytest

from ibgw.default_plugins.accounts_reads import POSITION_KEYS, PositionSchema
from ibgw.parse import integer, number


@pytest.mark.parametrize(
    "value, expected",
    [
        (1.5, 1.5),
        (-0.0, -0.0),
        (3, 3.0),
        (10**20, 1e20),
        ("1,300", 1300.0),
        ("24.6%", 24.6),
        ("C168.42", 168.42),
        ("H12.5", 12.5),
        ("1.2M", 1.2e6),
        (" 7 ", 7.0),
        (None, None),
        (True, None),
        (False, None),
        ("", None),
        ("abc", None),
        ([], None),
        (float("nan"), None),
        (float("inf"), None),
        (-float("inf"), None),
        ("1e999", None),
        (10**400, None),  # an integer beyond the float range is no number, not a crash
        (-(10**400), None),
    ],
)
def test_number(value, expected):
    result = number(value)
    assert result == expected and type(result) is type(expected)
    if isinstance(expected, float):
        assert math.copysign(1, result) == math.copysign(1, expected)


def test_integer_rounds_and_survives_huge_values():
    assert integer("265598") == 265598
    assert integer(2.6) == 3
    assert integer(10**400) is None


AAPL = {
    "acctId": "DU1234567",
    "conid": 265598,
    "contractDesc": "AAPL",
    "fullName": "APPLE INC",
    "position": 25.0,
    "mktPrice": 295.7692,
    "mktValue": 7394.23,
    "currency": "USD",
    "avgCost": 274.023802,
    "realizedPnl": 0.0,
    "unrealizedPnl": 543.63,
    "expiry": None,
    "putOrCall": None,
    "strike": 0.0,
    "assetClass": "STK",
    "ticker": "AAPL",
}


def position_row(p: dict) -> dict:
    return PositionSchema().dump(p)


def test_positions_schema_maps_and_types_every_field():
    raw = {**AAPL, "avgPrice": 274.02, "undConid": 0, "name": "APPLE INC", "isUS": True}
    assert PositionSchema(many=True).dump([raw]) == [
        {
            "account": "DU1234567",
            "conid": 265598,
            "description": "AAPL",
            "ticker": "AAPL",
            "asset_class": "STK",
            "position": 25.0,
            "mkt_price": 295.7692,
            "mkt_value": 7394.23,
            "currency": "USD",
            "avg_cost": 274.023802,
            "unrealized_pnl": 543.63,
            "realized_pnl": 0.0,
            "expiry": None,
            "strike": None,  # 0 means "not an option"
            "right": None,
        }
    ]


@pytest.mark.parametrize("desc", [None, "", 7, ["AAPL"]])
def test_position_description_falls_back_to_the_full_name(desc):
    assert position_row({**AAPL, "contractDesc": desc})["description"] == "APPLE INC"
    assert position_row({**AAPL, "contractDesc": desc, "fullName": ""})["description"] is None


def test_positions_keep_only_what_the_schema_reads():
    assert set(POSITION_KEYS) == set(AAPL)
    assert position_row({k: AAPL[k] for k in POSITION_KEYS}) == position_row(AAPL)


def test_missing_gateway_fields_are_none():
    assert position_row({}) == dict.fromkeys(position_row(AAPL))


def test_position_row_of_wrong_types_gives_nones_not_errors():
    row = position_row(
        {
            "acctId": 5,
            "conid": 10**400,
            "position": "lots",
            "mktPrice": float("nan"),
            "strike": "95",
            "putOrCall": "C",
            "currency": {"x": 1},
        }
    )
    assert row["account"] is None and row["conid"] is None and row["currency"] is None
    assert row["position"] is None and row["mkt_price"] is None
    assert row["strike"] == 95.0 and row["right"] == "C"
