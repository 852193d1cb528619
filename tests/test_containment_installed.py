"""Plugin containment with the hostile plugin installed for real (issue 18, finding 1).

One fresh virtual environment (uv): ibgw and ``tests/hostile_plugin`` (a real
distribution whose ``ibgw`` entry point is loaded like any third-party plugin),
non-editable. The installed console script runs the plugin's read against the
hostile loopback gateway of ``test_containment.py``, which records every request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_containment import REFUSED_ATTACKS, RecordingGateway

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _uv() -> str:
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        pytest.fail("uv is a test dependency (pip install -e '.[test]')")
    return str(uv)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("containment")
    venv = base / "venv"
    subprocess.run([_uv(), "venv", "-q", str(venv)], check=True, capture_output=True)
    subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         f"{ROOT}[mcp]", str(ROOT / "tests" / "hostile_plugin")],
        check=True, capture_output=True,
    )  # fmt: skip
    return base, venv


def _env(base: Path, venv: Path, name: str) -> dict:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IBGW_", "PYTHON", "VIRTUAL_ENV"))
    }
    (base / "empty.toml").write_text("")
    env.update(
        IBGW_STATE_DIR=str(base / name / "state"),
        IBGW_CONFIG=str(base / "empty.toml"),
        IBGW_HOSTILE_OUT=str(base / name / "results.json"),
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
    )
    (base / name).mkdir()
    return env


def _ibgw(venv: Path, env: dict, *args):
    return subprocess.run(
        [str(venv / "bin" / "ibgw"), *args],
        capture_output=True, text=True, env=env, cwd="/", timeout=120,
    )  # fmt: skip


def test_installed_hostile_plugin_sends_no_write_and_its_order_read_never_registers(venv):
    base, venv = venv
    env = _env(base, venv, "run")
    gw = RecordingGateway()
    try:
        r = _ibgw(venv, env, "--backend", "live", "--gateway-url", gw.url, "hostile", "attack")
    finally:
        gw.close()
    assert gw.writes() == []  # zero order writes reached the gateway
    assert [(m, p) for m, p, _ in gw.seen] == [("GET", "/v1/api/iserver/accounts")]
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    results = {
        name: result for name, result, _ in json.loads((base / "run" / "results.json").read_text())
    }
    assert {a: results.get(a) for a in REFUSED_ATTACKS} == {a: "refused" for a in REFUSED_ATTACKS}
    assert results["ctx.gateway"] == "absent" and results["ctx.app"] == "absent"
    audit = [
        json.loads(x) for x in (base / "run" / "state" / "audit.jsonl").read_text().splitlines()
    ]
    assert len([d for d in audit if d["kind"] == "denied"]) >= 8
    assert [d["outcome"] for d in audit if d["kind"] == "outcome"] == ["denied"]

    # the read that declares POST /iserver/account/{accountId}/orders: a load error only
    listed = json.loads(_ibgw(venv, env, "plugins", "-o", "json").stdout)
    hostile = next(p for p in listed if p["distribution"] == "ibgw-hostile")
    assert "POST /iserver/account/{accountId}/orders" in hostile["error"]
    assert _ibgw(venv, env, "hostile", "order").returncode == 2
    code = (
        "import json; from ibgw.app import App; from ibgw.mcp_server import ToolTable; "
        "from ibgw.plugins import get_plugin_manager; "
        "print(json.dumps([t.name for t in ToolTable(App(get_plugin_manager()).reads).tools]))"
    )
    tools = json.loads(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", code],
            capture_output=True, text=True, env=env, check=True, cwd="/",
        ).stdout
    )  # fmt: skip
    assert [t for t in tools if "hostile" in t] == ["hostile_attack"]
