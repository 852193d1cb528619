"""Fresh virtual environments with NON-editable installs, as a user would have them:
the core alone; the core with the fake backend; the core, the fake backend and one
read plugin (whose commands must then appear and work offline, and no other's).

Wheels are built once per session; environments are made with uv (fast, cached)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(
    p.name
    for p in (ROOT / "plugins").iterdir()
    if (p / "pyproject.toml").exists() and p.name != "ibgw-fake"
)
pytestmark = pytest.mark.slow


def _uv() -> str:
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        pytest.fail("uv is a test dependency (pip install -e '.[test]')")
    return str(uv)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheels")
    projects = [ROOT] + [ROOT / "plugins" / p for p in ["ibgw-fake", *PLUGINS]]
    for project in projects:
        subprocess.run(
            [_uv(), "build", "-q", "--wheel", "-o", str(out), str(project)],
            check=True,
            capture_output=True,
        )
    return out


def make_env(tmp_path: Path, wheelhouse: Path, names: list[str]) -> dict:
    venv = tmp_path / "venv"
    subprocess.run([_uv(), "venv", "-q", str(venv)], check=True, capture_output=True)
    subprocess.run(
        [
            _uv(),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "--find-links",
            str(wheelhouse),
            *names,
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "empty.toml").write_text("")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IBGW_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        IBGW_STATE_DIR=str(tmp_path / "state"),
        IBGW_CONFIG=str(tmp_path / "empty.toml"),
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
    )
    env["_bin"] = str(venv / "bin" / "ibgw")
    return env


def ibgw(env, *args):
    return subprocess.run(
        [env["_bin"], *args], capture_output=True, text=True, env=env, cwd="/", timeout=120
    )


def test_core_alone(tmp_path, wheelhouse):
    env = make_env(tmp_path, wheelhouse, ["ibgw"])
    assert ibgw(env, "--help").returncode == 0
    plugins = json.loads(ibgw(env, "plugins", "-o", "json").stdout)
    assert {p["distribution"] for p in plugins} == {"ibgw"}
    assert all(p["error"] is None for p in plugins)
    assert ibgw(env, "config", "check").returncode == 0
    fake = ibgw(env, "--backend", "fake", "status")
    assert fake.returncode == 2 and "needs the ibgw-fake plugin" in fake.stderr


def test_core_and_fake_run_offline_from_installed_fixtures(tmp_path, wheelhouse):
    env = make_env(tmp_path, wheelhouse, ["ibgw", "ibgw-fake"])
    status = ibgw(env, "--backend", "fake", "-o", "json", "status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "usable"
    accounts = ibgw(env, "--backend", "fake", "-o", "json", "accounts")
    assert accounts.returncode == 0 and json.loads(accounts.stdout)


@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_plugin_alone(tmp_path, wheelhouse, plugin):
    env = make_env(tmp_path, wheelhouse, ["ibgw", "ibgw-fake", plugin])
    listed = {p["distribution"] for p in json.loads(ibgw(env, "plugins", "-o", "json").stdout)}
    assert plugin in listed
    code = (
        "import json; from ibgw.plugins import get_plugin_manager, collect_reads; "
        "print(json.dumps([[r.category, r.name, r.probe] for r in collect_reads(get_plugin_manager())]))"
    )
    py = str(Path(env["_bin"]).with_name("python"))
    reads = json.loads(
        subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    )
    own = [r for r in reads if r[0] != "accounts"]
    assert own, f"{plugin} registered no reads"
    help_text = ibgw(env, "--help").stdout
    categories = {r[0] for r in own}
    for category in categories:
        assert f"  {category} " in help_text
    others = {
        "options",
        "greeks",
        "depth",
        "scanners",
        "news",
        "fundamentals",
        "calendar",
        "fx",
        "transfers",
        "portfolio",
        "trades",
        "quote",
        "history",
        "contracts",
    } - categories
    for category in others:
        assert f"  {category} " not in help_text, f"{category} appears without its plugin"
    probe = ibgw(env, "--backend", "fake", "probe", *sorted(categories))
    assert probe.returncode == 0, probe.stderr
    rows = json.loads(
        ibgw(env, "--backend", "fake", "-o", "json", "probe", *sorted(categories)).stdout
    )
    assert rows and all(r["result"] in ("works", "skipped") for r in rows), rows
