"""The plugin system and the CLI as a user meets them: the real console script in a
subprocess, broken plugins isolated, no heavy imports at start-up."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from ibgw import Param, Read, hookimpl
from ibgw.cli import create_cli

IBGW = str(Path(sys.executable).with_name("ibgw"))
HEAVY = ("requests", "marshmallow", "mcp", "urllib3", "tabulate")


def run(args, env=None, **kw):
    full = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    full.update(env or {})
    return subprocess.run([IBGW, *args], capture_output=True, text=True, env=full, timeout=60, **kw)


def make_dist(root: Path, dist: str, module: str, source: str, ep_name: str | None = None):
    """An installed-looking distribution on a PYTHONPATH directory: a module and a
    dist-info with an ``ibgw`` entry point, which importlib.metadata discovers."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ibgw]\n{ep_name or module} = {module}\n")


@pytest.fixture
def broken_plugins(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "ibgw-explodes", "ibgw_explodes", "raise RuntimeError('boom at import')\n")
    make_dist(
        site,
        "ibgw-nospec",
        "ibgw_nospec",
        """
        from ibgw import hookimpl

        @hookimpl
        def ibgw_not_a_hook(register):
            pass
    """,
    )
    (tmp_path / "empty.toml").write_text("")
    return {
        "PYTHONPATH": str(site),
        "IBGW_STATE_DIR": str(tmp_path / "state"),
        "IBGW_CONFIG": str(tmp_path / "empty.toml"),
    }


def test_help_lists_core_commands_and_exit_codes():
    result = run(["--help"])
    assert result.returncode == 0, result.stderr
    for command in (
        "status",
        "keepalive",
        "accounts",
        "plugins",
        "config",
        "probe",
        "doctor",
        "mcp",
    ):
        assert f"  {command} " in result.stdout
    assert "7 audit unavailable" in result.stdout.replace("\n", " ").replace("  ", " ")


def test_python_dash_m_works():
    result = subprocess.run(
        [sys.executable, "-m", "ibgw", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "ibgw" in result.stdout


def test_broken_plugins_are_reported_and_skipped(broken_plugins):
    help_result = run(["--help"], env=broken_plugins)
    assert help_result.returncode == 0, help_result.stderr
    assert "Traceback" not in help_result.stderr
    listed = run(["plugins", "-o", "json"], env=broken_plugins)
    assert listed.returncode == 0, listed.stderr
    by_name = {p["name"]: p for p in json.loads(listed.stdout)}
    assert "failed to import: RuntimeError: boom at import" in by_name["ibgw_explodes"]["error"]
    assert "ibgw_not_a_hook" in by_name["ibgw_nospec"]["error"]
    assert by_name["ibgw_nospec"]["distribution"] == "ibgw-nospec"
    # the rest of the CLI still works
    assert run(["config", "check"], env=broken_plugins).returncode == 0


def test_load_plugins_allow_list(broken_plugins):
    env = dict(broken_plugins, IBGW_LOAD_PLUGINS="")
    names = {p["name"] for p in json.loads(run(["plugins", "-o", "json"], env=env).stdout)}
    assert names and all(n.startswith("ibgw.default_plugins.") for n in names)
    env["IBGW_LOAD_PLUGINS"] = "ibgw-nospec"
    names = {p["name"] for p in json.loads(run(["plugins", "-o", "json"], env=env).stdout)}
    assert "ibgw_nospec" in names and "ibgw_explodes" not in names


def test_no_heavy_imports_when_building_the_whole_cli():
    """Every installed plugin's entry module is imported to build the CLI: none may
    pull in requests, marshmallow, the MCP SDK, urllib3 or tabulate."""
    code = (
        "import sys; from ibgw.cli import create_cli; create_cli(); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    ["ibgw.cli"]
    + sorted(
        ep.value for ep in __import__("importlib.metadata").metadata.entry_points(group="ibgw")
    ),
)
def test_importtime_of_entry_modules(module):
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not imported & {"requests", "marshmallow", "mcp"}, module


def test_duplicate_command_is_reported_naming_both_plugins(ibgw_pm):
    class First:
        @hookimpl
        def ibgw_register_commands(cli):
            cli.add_command(click.Command("twin", callback=lambda: click.echo("first")))

    class Second:
        @hookimpl
        def ibgw_register_commands(cli):
            cli.add_command(click.Command("twin", callback=lambda: click.echo("second")))

    ibgw_pm.register(First, name="first-plugin")
    ibgw_pm.register(Second, name="second-plugin")
    cli = create_cli(ibgw_pm)
    assert any(
        "'twin' is registered by both first-plugin and second-plugin" in c for c in cli.conflicts
    )
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["twin"])
    assert result.stdout.strip() == "first"
    assert "registered by both first-plugin and second-plugin" in result.stderr


def test_duplicate_read_is_reported(ibgw_pm):
    def make(name):
        class P:
            @hookimpl
            def ibgw_register_reads(register):
                register(Read(category="dup", name="one", summary="x", fetch=lambda ctx: []))

        ibgw_pm.register(P, name=name)

    make("plugin-a")
    make("plugin-b")
    from ibgw.plugins import DuplicateError, collect_reads

    with pytest.raises(DuplicateError, match="plugin-a and plugin-b|plugin-b and plugin-a"):
        collect_reads(ibgw_pm)


def test_category_default_read_answers_bare_category(ibgw_pm, ibgw_cli):
    seen = {}

    class P:
        @hookimpl
        def ibgw_register_reads(register):
            def fetch(ctx, symbol, limit=None):
                seen.update(symbol=symbol, limit=limit)
                return [{"symbol": symbol, "n": limit}]

            register(
                Read(
                    category="demo",
                    name="headlines",
                    summary="demo",
                    default=True,
                    session=False,
                    params=[
                        Param("symbol", "ticker", argument=True, required=True),
                        Param("limit", "how many", type="int", minimum=1),
                    ],
                    fetch=fetch,
                    columns=["symbol", "n"],
                )
            )
            register(
                Read(
                    category="demo",
                    name="other",
                    summary="other",
                    session=False,
                    fetch=lambda ctx: [{"x": 1}],
                    columns=["x"],
                )
            )

    ibgw_pm.register(P)
    result = ibgw_cli("demo", "AAPL", "--limit", "3", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"symbol": "AAPL", "n": 3}]
    assert ibgw_cli("demo", "other", "-o", "csv").stdout == "x\n1\n"
    bad = ibgw_cli("demo", "AAPL", "--limit", "0")
    assert bad.exit_code == 2 and bad.stderr.strip() == "ibgw: limit: must be at least 1"


def test_internal_error_is_one_line_without_traceback(ibgw_pm, ibgw_cli):
    class P:
        @hookimpl
        def ibgw_register_reads(register):
            def fetch(ctx):
                raise KeyError("secret-ish detail")

            register(
                Read(
                    category="oops",
                    name="now",
                    summary="x",
                    default=True,
                    session=False,
                    fetch=fetch,
                )
            )

    ibgw_pm.register(P)
    result = ibgw_cli("oops", "now")
    assert result.exit_code == 1
    assert result.stderr.strip() == "ibgw: internal error (KeyError); run with --debug for details"
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize(
    "url,code",
    [
        ("https://localhost:5000/v1/api", 0),
        ("http://127.0.0.1:5000", 0),
        ("https://[::1]:5000/v1/api", 0),
        ("https://127.0.0.2:5000/v1/api", 2),
        ("https://user:pw@localhost:5000", 2),
        ("https://localhost.:5000", 2),
        ("https://evil.example.com/v1/api", 2),
        ("https://localhost:5000/v1/api?x=1", 2),
    ],
)
def test_config_check_exit_codes(url, code, tmp_path):
    (tmp_path / "x.toml").write_text("")
    result = run(
        ["config", "check", "--gateway-url", url, "--no-verify-tls"],
        env={"IBGW_STATE_DIR": str(tmp_path), "IBGW_CONFIG": str(tmp_path / "x.toml")},
    )
    assert result.returncode == code, result.stderr
    if code == 2:
        assert (
            result.stderr.startswith("ibgw: gateway_url")
            and len(result.stderr.strip().splitlines()) == 1
        )
        assert "pw@" not in result.stderr and "evil" not in result.stderr


def test_entry_point_scan_agrees_with_importlib_metadata():
    """ibgw reads entry points from dist-info directories itself (importlib.metadata
    costs ~50 ms at start-up); it must find exactly what importlib.metadata finds."""
    from importlib.metadata import entry_points

    from ibgw.plugins import _scan_dist_info

    ours = sorted((e.name, e.value, e.distribution.lower(), e.version) for e in _scan_dist_info())
    theirs = sorted(
        (e.name, e.value, e.dist.name.replace("_", "-").lower(), e.dist.version)
        for e in entry_points(group="ibgw")
    )
    assert ours == theirs and ours


def test_category_help_lists_its_reads_and_each_read_has_its_own_help():
    """A read's click command is built only when it is looked up; its category's help
    and its own help still show everything."""
    category = run(["accounts", "--help"])
    assert category.returncode == 0, category.stderr
    for read in ("list", "summary", "ledger", "positions"):
        assert f"  {read} " in category.stdout
    read = run(["accounts", "summary", "--help"])
    assert read.returncode == 0, read.stderr
    assert "--account" in read.stdout and "Account balances" in read.stdout


def test_help_is_as_wide_as_the_terminal_says():
    """``$COLUMNS`` narrows the help as it does for any click program; without a
    terminal it is 80 columns wide."""
    narrow = run(["--help"], env={"COLUMNS": "60"})
    wide = run(["--help"], env={"COLUMNS": ""})
    assert narrow.returncode == wide.returncode == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 58
    assert 60 < max(len(line) for line in wide.stdout.splitlines()) <= 78
    assert "  status " in narrow.stdout and "  status " in wide.stdout


def test_hooks_of_a_module_plugin_are_found_among_everything_else_it_holds(ibgw_pm):
    """Only functions marked with ``hookimpl`` register, whatever else a plugin
    module holds (imports, classes, unmarked functions with hook names, a module
    ``__getattr__`` that must not run), and ``specname`` still names the hook."""
    import types

    source = textwrap.dedent(
        """
        import os
        from ibgw import Read, hookimpl

        LIMIT = 3

        class Helper:
            @hookimpl
            def ibgw_register_commands(cli):  # a class attribute, not a module hook
                raise AssertionError("registered from a class inside the module")

        def ibgw_register_commands(cli):  # no marker: not a hook
            raise AssertionError("an unmarked function was registered")

        @hookimpl(specname="ibgw_register_reads")
        def declare(register):
            register(Read(category="modplug", name="one", summary="x", fetch=lambda ctx: []))

        def __getattr__(name):
            raise AssertionError(f"module __getattr__ ran for {name}")
        """
    )
    module = types.ModuleType("ibgw_modplug")
    exec(compile(source, "ibgw_modplug.py", "exec"), module.__dict__)
    from ibgw.plugins import PluginInfo, collect_reads

    info = PluginInfo("modplug")
    assert ibgw_pm.register_checked(module, "modplug", info), info.error
    assert info.hooks == ["ibgw_register_reads"]
    assert collect_reads(ibgw_pm).get("modplug", "one") is not None
    create_cli(ibgw_pm)  # the unmarked ibgw_register_commands is never called
