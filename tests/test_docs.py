"""Docs that cannot drift from the code.

- docs/plugins.md documents every hook with its exact signature and call semantics,
  every declaration field, the ReadContext API and the pytest fixtures; its
  examples register cleanly and run.
- docs/cli.md is exactly what scripts/gen_cli_docs.py generates.
- docs/writing-a-plugin.md quotes only real ibgw command lines, and its code
  blocks are excerpts of the files of examples/ibgw-hello.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import os
import re
import shlex
import sys
import types
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import click
import pytest

from ibgw import hookspecs

ROOT = Path(__file__).resolve().parent.parent
PLUGINS_MD = ROOT / "docs" / "plugins.md"
TUTORIAL = ROOT / "docs" / "writing-a-plugin.md"
EXAMPLE = "examples/ibgw-hello"

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE_SIGNATURE = re.compile(r"`(ibgw_[a-z0-9_]+)(\([^()`]*\))`")
DEF_SIGNATURE = re.compile(r"^[ \t]*def (ibgw_[a-z0-9_]+)(\([^()]*\)):", re.M)
PATH_COMMENT = re.compile(r"^(?:#|//) (" + re.escape(EXAMPLE) + r"/\S+)\s*$")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def section(text: str, heading: str) -> str:
    """The text from the heading line that contains ``heading`` to the next heading
    of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") and heading in line:
            level = len(line) - len(line.lstrip("#"))
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if re.match(rf"#{{1,{level}}} ", lines[j]) and not _in_fence(lines, j)
                ),
                len(lines),
            )
            return "\n".join(lines[i:end])
    raise AssertionError(f"no heading with {heading!r}")


def _in_fence(lines: list[str], index: int) -> bool:
    return sum(1 for line in lines[:index] if line.startswith("```")) % 2 == 1


def hook_specs() -> dict:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith("ibgw_") and hasattr(fn, "ibgw_spec")
    }


# -- docs/plugins.md: hooks ------------------------------------------------------------


def test_every_hook_is_documented_with_its_exact_signature():
    text = PLUGINS_MD.read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    documented: dict[str, set[str]] = {}
    for name, signature in INLINE_SIGNATURE.findall(text) + DEF_SIGNATURE.findall(text):
        documented.setdefault(name, set()).add(signature)
    specs = hook_specs()
    problems = []
    for name, fn in specs.items():
        expected = str(inspect.signature(fn))
        if not any(f"`{name}{expected}`" in h for h in headings):
            problems.append(f"{name}: no heading '### `{name}{expected}`'")
        for found in documented.get(name, set()) - {expected}:
            problems.append(f"{name}: documented as {name}{found}, the spec is {name}{expected}")
    fixtures = set(fixture_names())
    for name in sorted(set(documented) - set(specs) - fixtures):
        problems.append(f"{name}: documented but not a hook in ibgw.hookspecs")
    assert not problems, "docs/plugins.md:\n" + "\n".join(problems)


def test_every_hook_section_states_its_semantics():
    from ibgw.plugins import get_plugin_manager

    text = PLUGINS_MD.read_text(encoding="utf-8")
    pm = get_plugin_manager(load_entrypoints=False)
    problems = []
    for name, fn in hook_specs().items():
        body = section(text, f"`{name}{inspect.signature(fn)}`")
        if fn.ibgw_spec["firstresult"]:
            wanted = "First result wins"
        else:
            wanted = "Every implementation is called"
        if wanted not in body:
            problems.append(f"{name}: the section does not say {wanted!r}")
        builtin_trylast = any(
            impl.trylast and impl.plugin_name.startswith("ibgw.default_plugins")
            for impl in getattr(pm.hook, name).get_hookimpls()
        )
        if builtin_trylast and "trylast" not in body:
            problems.append(f"{name}: the built-in default is trylast; the section does not say so")
    assert not problems, "docs/plugins.md:\n" + "\n".join(problems)


def _examples(text: str) -> list[str]:
    return [body for lang, body in code_blocks(text) if lang == "python" and "@hookimpl" in body]


def _example_module(index: int, source: str) -> types.ModuleType:
    module = types.ModuleType(f"ibgw_docs_example_{index}")
    exec(compile(source, f"docs/plugins.md example {index}", "exec"), module.__dict__)
    return module


def test_plugin_examples_register_cleanly():
    from ibgw.plugins import PluginInfo, get_plugin_manager

    examples = _examples(PLUGINS_MD.read_text(encoding="utf-8"))
    implemented = set()
    for index, source in enumerate(examples):
        module = _example_module(index, source)
        pm = get_plugin_manager(load_entrypoints=False)
        info = PluginInfo(name=module.__name__)
        assert pm.register_checked(module, module.__name__, info), f"example {index}: {info.error}"
        implemented.update(info.hooks)
    assert implemented == set(hook_specs()), "every hook needs an example in docs/plugins.md"


def test_other_python_blocks_compile():
    text = PLUGINS_MD.read_text(encoding="utf-8") + TUTORIAL.read_text(encoding="utf-8")
    for index, (lang, body) in enumerate(code_blocks(text)):
        if lang == "python":
            compile(body, f"docs code block {index}", "exec")


def test_read_command_and_fixture_examples_run(ibgw_pm, ibgw_cli):
    for index, source in enumerate(_examples(PLUGINS_MD.read_text(encoding="utf-8"))):
        if any(
            f"def {hook}(" in source
            for hook in ("ibgw_register_reads", "ibgw_register_commands", "ibgw_fake_fixtures")
        ):
            module = _example_module(index, source)
            ibgw_pm.register(module, name=module.__name__)
    result = ibgw_cli("listings", "AAPL", "-o", "json")
    assert result.exit_code == 0, result.output
    assert [r["exchange"] for r in json.loads(result.stdout)] == ["NASDAQ", "MEXI", "EBS", "TSE"]
    result = ibgw_cli("-o", "json", "endpoints")
    assert result.exit_code == 0, result.output
    assert {
        "read": "listings stock",
        "endpoint": "GET /trsrv/stocks",
        "provenance": "documented",
    } in (json.loads(result.stdout))


# -- docs/plugins.md: declarations, ReadContext, fixtures -------------------------------


@pytest.mark.parametrize("name", ["Endpoint", "Param", "Read", "Category", "Result", "FakeRoute"])
def test_every_declaration_field_is_documented(name):
    import ibgw.declarations

    cls = getattr(ibgw.declarations, name)
    body = section(PLUGINS_MD.read_text(encoding="utf-8"), f"### {name}")
    missing = [f.name for f in dataclasses.fields(cls) if f"| `{f.name}` |" not in body]
    assert not missing, f"docs/plugins.md, {name}: fields not in the table: {missing}"
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            shown = json.dumps(f.default) if isinstance(f.default, str) else repr(f.default)
            assert f"| `{f.name}` | `{shown}` |" in body, f"{name}.{f.name}: default {shown}"


def test_read_context_api_is_documented():
    from ibgw.runner import ReadContext

    body = section(PLUGINS_MD.read_text(encoding="utf-8"), "## ReadContext")
    public = [n for n in vars(ReadContext) if not n.startswith("_")]
    missing = [n for n in public if f"ctx.{n}" not in body]
    assert not missing, f"docs/plugins.md, ReadContext: undocumented {missing}"


def fixture_names() -> list[str]:
    """The fixtures of ibgw's pytest plugin and of ibgw-fake's (when installed)."""
    import importlib

    names = []
    for module in ("ibgw.testing", "ibgw_fake.testing"):
        try:
            names += [n for n in vars(importlib.import_module(module)) if n.startswith("ibgw_")]
        except ImportError:
            continue
    return names


def test_pytest_fixtures_are_documented():
    body = section(PLUGINS_MD.read_text(encoding="utf-8"), "## Testing plugins")
    fixtures = fixture_names()
    assert "ibgw_pm" in fixtures and "ibgw_env" in fixtures
    missing = [n for n in fixtures if f"`{n}`" not in body]
    assert not missing, f"docs/plugins.md, Testing plugins: undocumented fixtures {missing}"


def test_builtin_scenarios_are_documented():
    scenarios = pytest.importorskip("ibgw_fake.scenarios")
    body = section(PLUGINS_MD.read_text(encoding="utf-8"), "## Fake backend fixtures")
    missing = [n for n in scenarios.SCENARIOS if f"`{n}`" not in body]
    assert not missing, f"docs/plugins.md: undocumented scenarios {missing}"


# -- CHANGELOG.md -------------------------------------------------------------------------


def test_changelog_covers_hooks_core_commands_and_plugins():
    from ibgw.cli import create_cli
    from ibgw.plugins import get_plugin_manager

    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    wanted = [f"`{name}{inspect.signature(fn)}`" for name, fn in hook_specs().items()]
    core = create_cli(get_plugin_manager(load_entrypoints=False))
    wanted += [f"`ibgw {name}" for name in core.list_commands(click.Context(core))]
    wanted += [f"`{name}`" for name in _repo_distributions()]
    missing = [w for w in wanted if w not in text]
    assert not missing, f"CHANGELOG.md does not mention {missing}"


# -- docs/cli.md --------------------------------------------------------------------------


def _gen_cli_docs():
    spec = importlib.util.spec_from_file_location(
        "gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _repo_distributions() -> list[str]:
    names = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")) + sorted(
        ROOT.glob("examples/*/pyproject.toml")
    ):
        import tomllib

        names.append(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"])
    return names


def test_cli_reference_is_current(monkeypatch):
    missing = []
    for name in _repo_distributions():
        try:
            distribution(name)
        except PackageNotFoundError:
            missing.append(name)
    assert not missing, (
        f"docs/cli.md covers every plugin of the repository; install {', '.join(missing)} "
        "first (make install)"
    )
    # generated in a fresh process, as a developer runs it: state other tests leave in
    # this worker (registered plugins, environment) must not change the reference
    import difflib
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    code = (
        "import importlib.util, sys; s = importlib.util.spec_from_file_location('g', sys.argv[1]); "
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); sys.stdout.write(m.generate())"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "scripts" / "gen_cli_docs.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    ).stdout
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    diff = "".join(
        list(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True)))[:40]
    )
    assert current == fresh, (
        "docs/cli.md is out of date with the installed commands; regenerate it with: "
        f".venv/bin/python scripts/gen_cli_docs.py\n{diff}"
    )


# -- docs/writing-a-plugin.md -------------------------------------------------------------


def _tutorial_command_lines() -> list[str]:
    text = TUTORIAL.read_text(encoding="utf-8")
    lines = []
    for lang, body in code_blocks(text):
        for line in body.splitlines():
            if lang == "console" and line.startswith("$ ibgw "):
                lines.append(line[2:])
            elif lang in ("bash", "sh", "shell") and line.startswith("ibgw "):
                lines.append(line)
    prose = FENCE.sub("", text)
    lines += [c for c in re.findall(r"`(ibgw [^`]+)`", prose) if "<" not in c]
    return lines


def _parse(cli: click.Group, argv: list[str]) -> None:
    """Parse ``argv`` down the click tree without running anything; raise
    click.UsageError if a command or option does not exist."""
    ctx = cli.make_context("ibgw", list(argv))
    command = cli
    while isinstance(command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


def test_tutorial_command_lines_parse(ibgw_pm, capsys):
    import ibgw_hello

    from ibgw.cli import create_cli

    ibgw_pm.register(ibgw_hello, name="hello")
    cli = create_cli(ibgw_pm)
    lines = _tutorial_command_lines()
    assert len(lines) >= 5
    problems = []
    for line in lines:
        argv = shlex.split(line, comments=True)[1:]
        try:
            _parse(cli, argv)
        except click.exceptions.Exit as exc:  # --help, --version
            if exc.exit_code != 0:
                problems.append(f"{line}: exit {exc.exit_code}")
        except click.UsageError as exc:
            problems.append(f"{line}: {exc.format_message()}")
    assert not problems, (
        "docs/writing-a-plugin.md quotes commands that do not parse:\n" + "\n".join(problems)
    )


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _is_excerpt(excerpt: list[str], lines: list[str]) -> bool:
    n = len(excerpt)
    return any(lines[i : i + n] == excerpt for i in range(len(lines) - n + 1))


def test_tutorial_code_is_the_example_plugin():
    shown, problems = set(), []
    for index, (lang, body) in enumerate(code_blocks(TUTORIAL.read_text(encoding="utf-8"))):
        lines = body.splitlines()
        match = PATH_COMMENT.match(lines[0]) if lines else None
        if match is None:
            if lang in ("python", "toml"):
                problems.append(f"block {index} ({lang}) does not start with '# {EXAMPLE}/...'")
            continue
        path = ROOT / match.group(1)
        if not path.is_file():
            problems.append(f"block {index}: {match.group(1)} does not exist")
            continue
        excerpt = _strip_blank(lines[1:])
        if not excerpt or not _is_excerpt(excerpt, path.read_text(encoding="utf-8").splitlines()):
            problems.append(f"block {index}: not an exact excerpt of {match.group(1)}")
        shown.add(match.group(1))
    wanted = {
        f"{EXAMPLE}/pyproject.toml",
        f"{EXAMPLE}/src/ibgw_hello/__init__.py",
        f"{EXAMPLE}/src/ibgw_hello/reads.py",
        f"{EXAMPLE}/src/ibgw_hello/fixtures/contracts.json",
        f"{EXAMPLE}/tests/test_hello.py",
    }
    problems += [f"the tutorial never shows {p}" for p in sorted(wanted - shown)]
    assert not problems, "docs/writing-a-plugin.md:\n" + "\n".join(problems)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
