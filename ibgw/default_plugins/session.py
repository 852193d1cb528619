"""Built-in: session status and keepalive (``ibgw status``, ``ibgw keepalive``)."""

import click

from ibgw.hookspecs import hookimpl

# ``check_status`` and ``keepalive_once`` (the audited operations behind these commands)
# are in the core, ibgw.status, so the MCP server and ``ibgw probe`` use them without
# importing a built-in plugin.

STATUS_COLUMNS = ("state", "reason", "message", "hint", "build")


@hookimpl(trylast=True)
def ibgw_session_status(gateway):
    from ibgw.endpoints import AUTH_STATUS
    from ibgw.errors import IbgwError, SessionError
    from ibgw.session import (
        SessionStatus,
        classify_auth_status,
        observe_session,
        status_from_error,
    )

    try:
        data = gateway.call(AUTH_STATUS)
    except SessionError as exc:
        status = status_from_error(exc)
        observe_session(gateway, status)
        return status
    except IbgwError:
        return SessionStatus.of("unexpected-status")
    status = classify_auth_status(data)
    observe_session(gateway, status)  # a new session (e.g. after IBKR's nightly reset)
    return status


@hookimpl(trylast=True)
def ibgw_keepalive(gateway):
    from ibgw.endpoints import TICKLE
    from ibgw.errors import MANUAL, IbgwError, SessionError
    from ibgw.session import (
        KeepaliveResult,
        SessionStatus,
        classify_tickle,
        observe_session,
        status_from_error,
    )

    try:
        data = gateway.call(TICKLE)
    except SessionError as exc:
        status = status_from_error(exc)
        observe_session(gateway, status)
        return KeepaliveResult(
            "keepalive-expired" if status.state == MANUAL else "keepalive-failed", status
        )
    except IbgwError:
        return KeepaliveResult("keepalive-failed", SessionStatus.of("unexpected-status"))
    result = classify_tickle(data)
    observe_session(gateway, result.status, data.get("session") if isinstance(data, dict) else None)
    return result


def _print(app, record: dict, columns):
    from ibgw import redact
    from ibgw.output import emit, render

    emit(render(redact.safe_data([record]), columns, app.output, single=True))


@click.command()
@click.pass_context
def status(ctx):
    """Is the broker session usable? Exit 0 usable, 3 manual action required, 4 unavailable."""
    from ibgw.app import current_app
    from ibgw.errors import STATE_EXIT
    from ibgw.status import check_status

    app = current_app()
    st = check_status(app)
    record = {k: v for k, v in st.as_dict().items() if k in STATUS_COLUMNS}
    record["backend"] = app.config.backend
    _print(app, record, STATUS_COLUMNS + ("backend",))
    ctx.exit(STATE_EXIT[st.state])


@click.command()
@click.option(
    "--watch", is_flag=True, help="Keep the session alive until Ctrl-C, printing each change."
)
@click.option(
    "--interval",
    type=click.IntRange(5, 3600),
    default=60,
    show_default=True,
    help="Seconds between keepalives with --watch.",
)
@click.pass_context
def keepalive(ctx, watch, interval):
    """Send one keepalive (tickle). Exit 0 keepalive-success, 3 keepalive-expired, 4 failed."""
    import time

    from ibgw.app import current_app
    from ibgw.errors import STATE_EXIT, IbgwError
    from ibgw.output import emit_error
    from ibgw.status import keepalive_once

    app = current_app()
    columns = ("outcome", "state", "reason", "hint")
    if not watch:
        result = keepalive_once(app)
        _print(app, {k: v for k, v in result.as_dict().items() if k in columns}, columns)
        ctx.exit(STATE_EXIT[result.status.state])
    last = None
    try:
        while True:
            try:
                result = keepalive_once(app)
                key = (result.outcome, result.status.reason)
                if key != last:
                    record = {"time": time.strftime("%H:%M:%S")}
                    record.update({k: v for k, v in result.as_dict().items() if k in columns})
                    _print(app, record, ("time",) + columns)
                    last = key
            except IbgwError as exc:
                emit_error(exc, app.output)
                if exc.exit_code == 7:
                    ctx.exit(7)
            time.sleep(interval)
    except KeyboardInterrupt:
        ctx.exit(0)


@hookimpl
def ibgw_register_commands(cli):
    cli.add_command(status)
    cli.add_command(keepalive)
