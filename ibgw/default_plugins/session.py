"""Built-in: session status and keepalive (``ibgw status``, ``ibgw keepalive``)."""

import click

from ibgw.hookspecs import hookimpl

STATUS_COLUMNS = ("state", "reason", "message", "hint", "build")


@hookimpl(trylast=True)
def ibgw_session_status(gateway):
    from ibgw.endpoints import AUTH_STATUS
    from ibgw.errors import IbgwError, SessionError
    from ibgw.session import SessionStatus, classify_auth_status, status_from_error

    try:
        data = gateway.call(AUTH_STATUS)
    except SessionError as exc:
        return status_from_error(exc)
    except IbgwError:
        return SessionStatus.of("unexpected-status")
    return classify_auth_status(data)


@hookimpl(trylast=True)
def ibgw_keepalive(gateway):
    from ibgw.endpoints import TICKLE
    from ibgw.errors import MANUAL, IbgwError, SessionError
    from ibgw.session import KeepaliveResult, SessionStatus, classify_tickle, status_from_error

    try:
        data = gateway.call(TICKLE)
    except SessionError as exc:
        status = status_from_error(exc)
        return KeepaliveResult(
            "keepalive-expired" if status.state == MANUAL else "keepalive-failed", status
        )
    except IbgwError:
        return KeepaliveResult("keepalive-failed", SessionStatus.of("unexpected-status"))
    return classify_tickle(data)


def check_status(app, actor="cli"):
    """Audited session status; a usable session lifts the keepalive guard."""
    from ibgw.runner import run_audited

    def go(auditor):
        status = app.gateway(auditor=auditor, command="status").session_status()
        if status.usable:
            app.guard.clear()
        return status

    return run_audited(app, "status", {}, actor, go)


def keepalive_once(app, actor="cli"):
    from ibgw.runner import run_audited

    def go(auditor):
        gateway = app.gateway(auditor=auditor, command="keepalive")
        result = app.pm.hook.ibgw_keepalive(gateway=gateway)
        if result.outcome == "keepalive-expired":
            app.guard.block("keepalive-expired")
        elif result.outcome == "keepalive-success":
            app.guard.clear()
        return result

    return run_audited(app, "keepalive", {}, actor, go)


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
