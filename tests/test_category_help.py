"""``ibgw --help`` reads like a manual: each category's one line comes from the plugin
that owns it (its ``Category(name, summary)``, else its default read's summary)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ibgw import Category, Param, Read, hookimpl

IBGW = str(Path(sys.executable).with_name("ibgw"))


def installed_registry():
    from ibgw.plugins import collect_reads, get_plugin_manager

    return collect_reads(get_plugin_manager(load_entrypoints=True))


def help_lines(stdout: str) -> dict[str, str]:
    """``{command: its one-line help}`` from the Commands section of ``--help``."""
    body = stdout.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^  (\S+) +(.+)$", body, re.M))


def test_the_installed_help_shows_every_categorys_own_summary(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBGW_")}
    env.update(COLUMNS="200", IBGW_STATE_DIR=str(tmp_path))
    out = subprocess.run(
        [IBGW, "--help"], capture_output=True, text=True, env=env, timeout=60, check=True
    ).stdout
    lines = help_lines(out)
    registry = installed_registry()
    categories = registry.categories()
    assert {"accounts", "fx", "options", "calendar"} <= set(categories)
    for category in categories:
        assert lines[category] == registry.summary(category), category
        assert not re.fullmatch(r"\w+ reads\.", lines[category]), lines[category]
    assert lines["fx"] == "Exchange rates and currency pairs."


def test_every_plugin_in_this_repository_declares_its_categories():
    """Each category's owner registers ``Category(name, summary)``: a summary written
    for the category, not borrowed from one of its reads."""
    registry = installed_registry()
    missing = [
        f"{category} (owned by {registry.owner[items[0].key]})"
        for category, items in sorted(registry.categories().items())
        if registry.owner[items[0].key] not in registry.declared.get(category, {})
    ]
    assert not missing, "no Category(...) declared for: " + ", ".join(missing)


def fetch(ctx):
    return []


def read(name, summary, default=False, category="demo"):
    return Read(
        category=category,
        name=name,
        summary=summary,
        default=default,
        fetch=fetch,
        columns=["x"],
        params=[Param("x", help="x")],
    )


class Declared:
    @hookimpl
    def ibgw_register_reads(self, register):
        register(read("one", "The first read.", default=False))
        register(read("two", "The default read.", default=True))
        register(Category("demo", "Demo things, all of them."))


class DefaultOnly:
    @hookimpl
    def ibgw_register_reads(self, register):
        register(read("one", "The first read."))
        register(read("two", "The default read.", default=True))


class FirstOnly:
    @hookimpl
    def ibgw_register_reads(self, register):
        register(read("one", "The first read."))
        register(read("two", "The second read."))


class Intruder:
    """Adds a read to another plugin's category and tries to retitle it."""

    @hookimpl
    def ibgw_register_reads(self, register):
        register(Category("demo", "Retitled by someone else."))
        register(read("three", "An extra read."))


@pytest.mark.parametrize(
    "plugins, expected",
    [
        ([Declared()], "Demo things, all of them."),
        ([DefaultOnly()], "The default read."),
        ([FirstOnly()], "The first read."),
        ([DefaultOnly(), Intruder()], "The default read."),
        ([Declared(), Intruder()], "Demo things, all of them."),
    ],
    ids=["declared", "default-read", "first-read", "not-retitled", "owner-wins"],
)
def test_where_the_one_line_comes_from(ibgw_pm, ibgw_cli, plugins, expected):
    for i, plugin in enumerate(plugins):
        ibgw_pm.register(plugin, name=f"demo-{i}")
    top = ibgw_cli("--help")
    assert top.exit_code == 0, top.output
    assert help_lines(top.stdout)["demo"] == expected
    own = ibgw_cli("demo", "--help")
    assert own.exit_code == 0 and expected in own.stdout, own.output
