"""Helpers for the fake backend's own tests (imported by name: pytest puts this folder on sys.path).

``fake_pm`` is a plugin manager with only the core fixtures and the fake backend
(no entry points, no other built-ins), so these tests depend on nothing else.
"""

from ibgw.default_plugins import core_fixtures
from ibgw.hookspecs import hookimpl
from ibgw.plugins import PluginInfo, PluginManager


class FixturePlugin:
    """A test plugin whose ``ibgw_fake_fixtures`` registers ``fixtures`` (or raises)."""

    def __init__(self, *fixtures, raises=None):
        self.fixtures = fixtures
        self.raises = raises

    @hookimpl
    def ibgw_fake_fixtures(self, register):
        for fixture in self.fixtures:
            register(fixture)
        if self.raises is not None:
            raise self.raises


def make_pm(*plugins):
    import ibgw_fake

    pm = PluginManager()
    pm.register_checked(
        core_fixtures, "ibgw.default_plugins.core_fixtures", PluginInfo("core", builtin=True)
    )
    pm.register_checked(ibgw_fake, "fake", PluginInfo("fake", distribution="ibgw-fake"))
    for i, plugin in enumerate(plugins):
        name = f"plugin{i}"
        pm.register_checked(plugin, name, PluginInfo(name))
    return pm
