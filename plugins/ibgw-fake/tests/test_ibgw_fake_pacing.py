"""The server's pacing windows, on a fake clock."""

import pytest
from ibgw_fake.pacing import ServerPacer


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def admit_many(pacer, method, path, n):
    return [pacer.admit(method, path) is not None for _ in range(n)]


def test_global_window_is_ten_per_second_sliding(clock):
    pacer = ServerPacer(clock)
    assert admit_many(pacer, "GET", "/iserver/accounts", 12) == [True] * 10 + [False] * 2
    clock.now += 0.5
    assert pacer.admit("GET", "/trsrv/stocks") is None  # the window still holds 10
    clock.now += 0.5001
    assert admit_many(pacer, "GET", "/trsrv/stocks", 11) == [True] * 10 + [False]


def test_rejected_requests_do_not_count(clock):
    pacer = ServerPacer(clock)
    admit_many(pacer, "GET", "/a", 10)
    for _ in range(50):
        assert pacer.admit("GET", "/a") is None
    clock.now += 1.0001
    assert pacer.admit("GET", "/a") is not None


@pytest.mark.parametrize(
    "method, path, window",
    [
        ("GET", "/portfolio/accounts", 5.0),
        ("GET", "/portfolio/subaccounts", 5.0),
        ("GET", "/iserver/scanner/params", 900.0),
        ("POST", "/iserver/scanner/run", 1.0),
        ("POST", "/pa/performance", 900.0),
        ("POST", "/pa/transactions", 900.0),
        ("GET", "/fyi/unreadnumber", 1.0),
        ("POST", "/tickle", 1.0),
        ("GET", "/tickle", 1.0),
        ("GET", "/sso/validate", 60.0),
        ("GET", "/iserver/account/orders", 5.0),
        ("GET", "/iserver/account/trades", 5.0),
        ("GET", "/iserver/account/pnl/partitioned", 5.0),
    ],
)
def test_one_per_window_endpoints(clock, method, path, window):
    pacer = ServerPacer(clock)
    assert pacer.admit(method, path) is not None
    assert pacer.admit(method, path) is None
    clock.now += window - 0.01
    assert pacer.admit(method, path) is None
    clock.now += 0.02
    assert pacer.admit(method, path) is not None


def test_endpoint_limits_are_per_path(clock):
    pacer = ServerPacer(clock)
    assert pacer.admit("POST", "/pa/performance") is not None
    assert pacer.admit("POST", "/pa/transactions") is not None
    assert pacer.admit("POST", "/pa/performance") is None


def test_snapshot_ten_per_second(clock):
    pacer = ServerPacer(clock)
    assert admit_many(pacer, "GET", "/iserver/marketdata/snapshot", 11) == [True] * 10 + [False]


def test_an_endpoint_rejection_leaves_the_global_window_alone(clock):
    pacer = ServerPacer(clock)
    pacer.admit("GET", "/portfolio/accounts")
    for _ in range(20):
        assert pacer.admit("GET", "/portfolio/accounts") is None
    assert admit_many(pacer, "GET", "/iserver/accounts", 10) == [True] * 9 + [False]


def test_history_allows_five_in_flight(clock):
    pacer = ServerPacer(clock)
    tickets = [pacer.admit("GET", "/iserver/marketdata/history") for _ in range(5)]
    assert all(tickets)
    assert pacer.admit("GET", "/iserver/marketdata/history") is None
    tickets[0].release()
    tickets[0].release()  # releasing twice is harmless
    assert pacer.admit("GET", "/iserver/marketdata/history") is not None
    assert pacer.admit("GET", "/iserver/marketdata/history") is None


def test_reset(clock):
    pacer = ServerPacer(clock)
    pacer.admit("POST", "/tickle")
    pacer.reset()
    assert pacer.admit("POST", "/tickle") is not None
