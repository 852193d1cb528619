"""The core's layering (docs/architecture.md, "Layers"): no module imports one above
it, no import cycle, no plugin package imported by the core.

Every import counts: at module top or inside a function, ``import x``, ``from x import
y``, relative imports, and ``importlib.import_module("literal")`` / ``__import__``.
The layer picture is read from docs/architecture.md, so the doc and the check agree.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "ibgw"
ARCH_MD = ROOT / "docs" / "architecture.md"


# -- reading the picture and the sources ---------------------------------------------


def layers(text: str | None = None) -> dict[str, int]:
    """``{module pattern: layer}`` from the "Layers" block of docs/architecture.md."""
    text = ARCH_MD.read_text(encoding="utf-8") if text is None else text
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^layer (\d+)  (.+?)  +(\S.*)$", line)
        if not m:
            continue
        for word in m.group(3).split():
            name = "ibgw" if word == "ibgw" else f"ibgw.{word}"
            assert name not in out, f"docs/architecture.md places {word} twice"
            out[name] = int(m.group(1))
    return out


def layer_of(module: str, picture: dict[str, int]) -> int | None:
    if module in picture:
        return picture[module]
    if f"{module}.*" in picture:  # the package of a "package.*" layer entry
        return picture[f"{module}.*"]
    parent = module.rpartition(".")[0]
    while parent:
        if f"{parent}.*" in picture:
            return picture[f"{parent}.*"]
        if parent in picture and parent != "ibgw":
            return picture[parent]
        parent = parent.rpartition(".")[0]
    return None


def core_sources() -> dict[str, str]:
    """``{module name: source}`` of ``ibgw/*.py`` and ``ibgw/default_plugins/*.py``."""
    return dict(_read_sources())


@functools.cache
def _read_sources() -> tuple[tuple[str, str], ...]:
    out = {}
    for path in sorted([*PKG.glob("*.py"), *PKG.glob("default_plugins/*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path.read_text(encoding="utf-8")
    return tuple(out.items())


def _is_package(module: str, modules: set[str]) -> bool:
    return any(m.startswith(module + ".") for m in modules) or module == "ibgw"


def imports(module: str, source: str, modules) -> list[tuple[str, int]]:
    return _imports(module, source, frozenset(modules))


@functools.cache
def _imports(module: str, source: str, modules: frozenset[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in ``source``. ``from P import x``
    counts as an import of ``P.x`` when that is a module, else of ``P``."""
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in modules else target, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.args[0].value, node.lineno))
    return found


def problems(sources: dict[str, str], picture: dict[str, int]) -> list[str]:
    """Every layering violation of ``sources`` against ``picture``."""
    modules = set(sources)
    out: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in sorted(sources.items()):
        mine = layer_of(module, picture)
        if mine is None:
            out.append(f"{module}: not placed in a layer (add it to docs/architecture.md)")
            continue
        for target, line in imports(module, source, modules):
            top = target.partition(".")[0]
            if top.startswith("ibgw_"):
                out.append(f"{module}:{line} imports the plugin package {target}")
                continue
            if top != "ibgw" or target == module:
                continue
            if target not in modules:
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
            graph[module].add(target)
            theirs = layer_of(target, picture)
            if theirs is not None and theirs > mine:
                out.append(
                    f"{module}:{line} (layer {mine}) imports {target} (layer {theirs}), a layer above"
                )
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_a_cycle(graph, set(c)) for c in components]


def _a_cycle(graph, component: set[str]) -> list[str]:
    start = min(component)
    path, seen = [start], {start}
    while True:  # walk inside the component until a module repeats
        nxt = sorted(w for w in graph[path[-1]] if w in component)
        back = [w for w in nxt if w in seen]
        if back:
            return path[path.index(back[0]) :] + [back[0]]
        path.append(nxt[0])
        seen.add(nxt[0])


# -- the checks ---------------------------------------------------------------------


def test_the_core_keeps_its_layers():
    found = problems(core_sources(), layers())
    assert not found, "layering violations (docs/architecture.md, Layers):\n" + "\n".join(found)


def test_every_layer_named_in_the_picture_exists():
    sources = core_sources()
    missing = [
        m
        for m in layers()
        if not (m in sources or m.endswith(".*") and any(s.startswith(m[:-1]) for s in sources))
    ]
    assert not missing, f"docs/architecture.md places modules that do not exist: {missing}"


# -- the check can fail: planted violations -----------------------------------------


def planted(module: str, code: str) -> list[str]:
    """The violations that planting ``code`` at the end of ``module`` adds."""
    sources = core_sources()
    before = set(problems(sources, layers()))
    sources[module] = sources[module] + "\n\n" + code + "\n"
    return [p for p in problems(sources, layers()) if p not in before]


def test_an_upward_import_inside_a_function_is_caught():
    found = planted("ibgw.gateway", "def f():\n    from .cli import main\n")
    assert any(
        "ibgw.gateway" in p and "imports ibgw.cli (layer 5), a layer above" in p for p in found
    ), found


def test_a_core_module_importing_a_builtin_plugin_is_caught():
    found = planted("ibgw.gateway", "def f():\n    from .default_plugins.session import x\n")
    assert any("imports ibgw.default_plugins.session (layer 6)" in p for p in found), found
    dynamic = planted("ibgw.runner", "import importlib\nimportlib.import_module('ibgw.probe')\n")
    assert any("ibgw.runner" in p and "imports ibgw.probe (layer 4)" in p for p in dynamic)


def test_an_import_cycle_within_a_layer_is_caught():
    assert planted("ibgw.runner", "def f():\n    from . import app\n") == []  # same layer, no cycle
    found = planted("ibgw.status", "def f():\n    from .probe import run_probe\n")
    assert "import cycle: ibgw.probe -> ibgw.status -> ibgw.probe" in found, found


def test_a_plugin_package_imported_by_the_core_is_caught():
    found = planted("ibgw.testing", "def f():\n    import ibgw_fake.server\n")
    assert any("imports the plugin package ibgw_fake.server" in p for p in found), found


def test_an_unplaced_module_is_caught():
    sources = core_sources()
    sources["ibgw.newthing"] = "from .errors import IbgwError\n"
    assert any(
        p.startswith("ibgw.newthing: not placed in a layer") for p in problems(sources, layers())
    )


@pytest.mark.parametrize(
    "module, target",
    [
        ("ibgw.gateway", "ibgw.default_plugins.session"),
        ("ibgw.runner", "ibgw.probe"),
        ("ibgw.testing", "ibgw_fake"),
    ],
)
def test_the_cycles_the_issue_named_are_gone(module, target):
    """gateway -> default_plugins.session -> app -> gateway, runner <-> probe, and the
    core's testing module reaching into ibgw-fake."""
    modules = set(core_sources())
    got = {t for t, _ in imports(module, core_sources()[module], modules)}
    assert not any(t == target or t.startswith(target + ".") for t in got)


# -- what the layering changed, seen from outside -------------------------------------


@pytest.mark.parametrize("scenario, state", [("connected", "usable"), ("no-bridge", "manual")])
def test_a_facade_without_a_plugin_manager_classifies_through_the_builtin_hook(
    ibgw_pm, scenario, state
):
    """``Gateway.session_status`` asks the ``ibgw_session_status`` hook; built without
    a plugin manager, it asks one holding the built-in plugins (no plugin import)."""
    from ibgw.app import App
    from ibgw.gateway import Gateway

    app = App(ibgw_pm, {"backend": "fake", "scenario": scenario})
    status = Gateway(app.transport, app.config, pm=None).session_status()
    assert status.state.startswith(state), status.as_dict()


def test_a_plugin_replaces_the_session_classification(ibgw_pm, ibgw_cli):
    from ibgw import hookimpl
    from ibgw.session import SessionStatus

    class Strict:
        @hookimpl
        def ibgw_session_status(self, gateway):
            return SessionStatus.of("no-bridge")

    assert ibgw_cli("status").exit_code == 0
    ibgw_pm.register(Strict(), name="strict")
    result = ibgw_cli("-o", "json", "status")
    assert result.exit_code == 3 and '"manual_action_required"' in result.stdout, result.output
