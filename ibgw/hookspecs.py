"""The whole ibgw plugin contract.

Every hook a plugin may implement is declared here. ``firstresult`` hooks stop at
the first implementation that returns something other than ``None``; the others
call every implementation. Registration hooks receive a ``register`` callback so
the host owns the registry: it rejects duplicates and records which plugin
registered what. Implementations are marked with ``ibgw.hookimpl``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("ibgw")
hookimpl = pluggy.HookimplMarker("ibgw")


@hookspec(firstresult=True)
def ibgw_backend(config, pm):
    """Return the transport for this run (first result wins).

    ``config`` is the resolved :class:`ibgw.config.Config`; ``pm`` is the plugin
    manager (the fake backend uses it to gather every plugin's fixtures). Return an object with the
    :class:`ibgw.transport.Transport` interface, or ``None`` to let another plugin
    decide. The live gateway transport is the ``trylast`` default.
    """


@hookspec(firstresult=True)
def ibgw_session_status(gateway):
    """Classify the broker session (first result wins).

    ``gateway`` is the :class:`ibgw.gateway.Gateway` facade. Return an
    :class:`ibgw.session.SessionStatus`. The built-in implementation asks
    ``/iserver/auth/status`` and is ``trylast``.
    """


@hookspec(firstresult=True)
def ibgw_keepalive(gateway):
    """Send one keepalive (tickle) and return its :class:`ibgw.session.KeepaliveResult`
    (first result wins). The built-in implementation is ``trylast``."""


@hookspec
def ibgw_redaction_rules(register):
    """Declare secrets this plugin knows about (every implementation is called).

    ``register(keys=(), patterns=())``: ``keys`` are JSON key names whose values are
    always secret (matched case-insensitively); ``patterns`` are regular expressions
    whose matches are secret wherever they appear in text.
    """


@hookspec
def ibgw_audit_sinks(config, register):
    """Add audit sinks (every implementation is called).

    ``register(sink)`` where ``sink`` has ``name`` and ``write(record: dict)``; a
    sink raises to say it could not write. The read runs only if at least one sink
    wrote the intent record.
    """


@hookspec
def ibgw_register_reads(register):
    """Declare reads (every implementation is called).

    ``register(read)`` with an :class:`ibgw.Read`. Each read becomes the CLI command
    ``ibgw <category> <name>`` and the MCP tool ``<category>_<name>``. A duplicate
    (category, name) is an error naming both plugins.
    """


@hookspec
def ibgw_register_commands(cli):
    """Add click commands that are not reads (every implementation is called).

    ``cli`` is the root click group being built. A command whose name is already
    taken is an error naming both plugins, never a silent replacement.
    """


@hookspec
def ibgw_fake_fixtures(register):
    """Contribute canned gateway responses to the fake backend (every implementation
    is called).

    ``register(fixture)`` where ``fixture`` is a path to a JSON fixture file, a
    fixture ``dict`` (``{"routes": [...]}``), or an :class:`ibgw.declarations.FakeRoute`
    whose handler computes the answer. See ``docs/plugins.md`` for the format.
    """
