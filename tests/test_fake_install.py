"""The fake backend's fixtures ship in the distributions, not just in the source tree.

Builds a fresh virtual environment, installs the core and ``ibgw-fake`` from
copies of the source (regular, NOT editable installs), and loads the fixtures
from a neutral working directory.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "plugins" / "ibgw-fake"
IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".hypothesis", ".bench-venv*", "plugins", "tests", "benchmarks",
)  # fmt: skip

CHECK = textwrap.dedent(
    """
    import json, os, sys, sysconfig
    from importlib.resources import files

    import ibgw.fixtures, ibgw_fake
    from ibgw_fake.router import FakeRequest, FakeRouter

    site = os.path.realpath(sysconfig.get_paths()["purelib"])
    for module in (ibgw.fixtures, ibgw_fake):
        assert os.path.realpath(module.__file__).startswith(site), module.__file__
    router = FakeRouter(None)
    assert router.errors == [], router.errors
    sources = {r.source.split(":")[0] for r in router.routes}
    assert sources == {"ibgw-fake", "ibgw.default_plugins.core_fixtures"}, sources
    pages = [len(json.loads(router.handle(FakeRequest("GET", f"/portfolio/DU1234567/positions/{n}")).body))
             for n in range(4)]
    assert pages == [100, 100, 37, 0], pages
    competing = router.handle(FakeRequest("GET", "/iserver/accounts", scenario="competing-session"))
    assert json.loads(competing.body) == {}
    print("fixtures ok", len(router.routes))
    """
)


def _pip_env():
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "IBGW_"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.mark.slow
def test_non_editable_install_ships_the_fixtures(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src / "core", ignore=IGNORE)
    readme = src / "core" / "README.md"
    if not readme.exists():  # setup.cfg reads it for the long description
        readme.write_text("ibgw\n")
    shutil.copytree(
        FAKE,
        src / "fake",
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "tests"),
    )

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(src / "core"), str(src / "fake")],
        capture_output=True, text=True, timeout=900, env=_pip_env(),
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    shutil.rmtree(src)  # nothing may be read from the copies any more

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    check = subprocess.run(
        [str(python), "-I", "-c", CHECK], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "fixtures ok" in check.stdout
