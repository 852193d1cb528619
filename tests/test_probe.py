"""``ibgw probe`` and ``ibgw doctor``: which reads this gateway serves, by variant."""

import json

import pytest


@pytest.fixture
def ibgw_cli(ibgw_env):
    """The CLI with every installed plugin (this test spans them all)."""
    from click.testing import CliRunner

    from ibgw.cli import create_cli
    from ibgw.plugins import get_plugin_manager

    cli = create_cli(get_plugin_manager(load_entrypoints=True))
    return lambda *args: CliRunner().invoke(cli, ["--backend", "fake", *args])


def probe(ibgw_cli, *args):
    result = ibgw_cli(*args, "-o", "json", "probe")
    assert result.exit_code == 0, result.stderr
    return {row["read"]: row for row in json.loads(result.stdout)}


def test_full_table_on_a_healthy_fake(ibgw_cli):
    rows = probe(ibgw_cli)
    assert rows, "no reads probed"
    for key, row in rows.items():
        assert row["result"] in ("works", "skipped"), (key, row)
        if row["result"] == "works":
            assert row["provenance"] in ("documented", "undocumented"), key
    assert rows["transfers transactions"]["result"] == "skipped"  # IBKR allows 1 call / 15 min


WORKING_ON_DOCUMENTED_ONLY = [
    "depth book",
    "fx rate",
    "fx pairs",
    "options expirations",
    "options strikes",
    "options chain",
    "greeks snapshot",
    "scanners params",
    "scanners run",
    "calendar schedule",
    "calendar hours",
    "accounts list",
]


def test_documented_only_gateway(ibgw_cli):
    rows = probe(ibgw_cli, "--scenario", "documented-only")
    news = rows["news headlines"]
    assert news["result"] == "not served"
    assert "GET /fundamentals/landing/{conid}" in news["detail"]
    fundamentals = rows["fundamentals show"]
    # its undocumented widget endpoints are not served; the documented snapshot answers instead
    assert fundamentals["result"] == "fallback" and fundamentals["provenance"] == "documented"
    assert "not served: GET /fundamentals/landing/{conid}" in fundamentals["detail"]
    assert rows["calendar events"]["result"] == "not served"
    for key in WORKING_ON_DOCUMENTED_ONLY:
        if key in rows:
            assert rows[key]["result"] == "works", (key, rows[key])
            assert rows[key]["provenance"] == "documented", key


@pytest.mark.parametrize(
    "scenario,state",
    [("missing-session", "manual_action_required"), ("gateway-down", "unavailable")],
)
def test_probe_without_a_session_reports_the_state(ibgw_cli, scenario, state):
    rows = probe(ibgw_cli, "--scenario", scenario)
    assert {r["result"] for r in rows.values()} <= {state, "skipped"}


def test_allow_undocumented_off_refuses_undocumented_variants(ibgw_cli, monkeypatch):
    monkeypatch.setenv("IBGW_ALLOW_UNDOCUMENTED", "false")
    news = ibgw_cli("-o", "json", "news", "AAPL")
    assert news.exit_code == 5
    error = json.loads(news.stderr.strip().splitlines()[-1])["error"]
    assert error["reason"] in ("not-served", "undocumented-disabled")
    assert error["tried"] and all("disabled" in t for t in error["tried"])
    fundamentals = ibgw_cli("-o", "json", "fundamentals", "AAPL")
    assert fundamentals.exit_code == 0, fundamentals.stderr
    assert {r["provenance"] for r in json.loads(fundamentals.stdout)} == {"documented"}


def test_doctor_shows_config_session_plugins_and_probe(ibgw_cli):
    probe(ibgw_cli)
    report = ibgw_cli("doctor")
    assert report.exit_code == 0, report.stderr
    for heading in ("== configuration", "== session", "== plugins", "== probe"):
        assert heading in report.stdout
    assert "news headlines" in report.stdout
    bad = ibgw_cli("--scenario", "missing-session", "doctor")
    assert bad.exit_code == 3
