"""The audited session operations every front end shares: ``check_status`` (what
``ibgw status``, ``ibgw doctor``, ``ibgw probe`` and the MCP ``session_status`` tool
report) and ``keepalive_once`` (``ibgw keepalive``).

Both ask the plugin hooks (``ibgw_session_status``, ``ibgw_keepalive``) through the
gateway facade, so a plugin can replace the classification; the built-in
implementations are in :mod:`ibgw.default_plugins.session`.
"""

from __future__ import annotations

from .runner import run_audited


def check_status(app, actor="cli"):
    """Audited session status; a usable session lifts the keepalive guard."""

    def go(auditor):
        status = app.gateway(auditor=auditor, command="status").session_status()
        if status.usable:
            app.guard.clear()
        return status

    return run_audited(app, "status", {}, actor, go)


def keepalive_once(app, actor="cli"):
    """One audited keepalive; an expired session blocks further calls until a
    usable status lifts the guard."""

    def go(auditor):
        gateway = app.gateway(auditor=auditor, command="keepalive")
        result = app.pm.hook.ibgw_keepalive(gateway=gateway)
        if result.outcome == "keepalive-expired":
            app.guard.block("keepalive-expired")
        elif result.outcome == "keepalive-success":
            app.guard.clear()
        return result

    return run_audited(app, "keepalive", {}, actor, go)
