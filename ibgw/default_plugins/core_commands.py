"""Built-in commands that are not reads: plugins, config, probe, doctor, mcp."""

import click

from ibgw.hookspecs import hookimpl

PROBE_COLUMNS = ("read", "result", "provenance", "variant", "detail")


def _app():
    from ibgw.app import current_app

    return current_app()


def _emit(records, columns, single=False):
    from ibgw import redact
    from ibgw.output import emit, render

    # value by value before rendering (reads get this in the runner): plugin load
    # errors and probe details are foreign text, and a pattern run over rendered JSON
    # could not tell a value's end from the JSON after it
    emit(render(redact.safe_data(records), columns, _app().output, single=single))


def _config_rows(app) -> list[dict]:
    return [
        {"field": k, "value": v.get("value"), "source": v.get("source")}
        for k, v in app.config.public_dict().items()
    ]


@click.command()
def plugins():
    """Installed plugins: name, version, hooks, load errors."""
    app = _app()
    rows = []
    for info in sorted(app.pm.infos.values(), key=lambda i: (i.builtin, i.name)):
        d = info.as_dict()
        if app.output == "table":
            d["hooks"] = ", ".join(h.removeprefix("ibgw_") for h in info.hooks)
        rows.append(d)
    _emit(rows, ("name", "distribution", "version", "hooks", "error"))


@click.group()
def config():
    """Show, check and locate the configuration."""


@config.command("show")
def config_show():
    """The effective configuration and where each value came from (no secrets)."""
    _emit(_config_rows(_app()), ("field", "value", "source"))


@config.command("check")
@click.option("--gateway-url", default=None, metavar="URL", help="Check this gateway URL.")
@click.option("--verify-tls/--no-verify-tls", "verify_tls", default=None)
@click.option("--ca-bundle", default=None, metavar="PEM")
@click.option("--tls-fingerprint", default=None, metavar="SHA256")
def config_check(**overrides):
    """Validate the configuration: exit 0 when valid, 2 with one line when not.

    Options given here override the global ones, so a URL can be checked on its own:
    ibgw config check --gateway-url https://localhost:5000/v1/api --no-verify-tls
    """
    app = _app()
    app.flags.update({k: v for k, v in overrides.items() if v is not None})
    app._config = None
    cfg = app.config
    from ibgw.output import emit

    emit(f"ok: gateway_url {cfg.gateway_url} (verify_tls={'on' if cfg.verify_tls else 'off'})\n")


@config.command("path")
def config_path():
    """Print the configuration file path."""
    from ibgw.config import default_config_path
    from ibgw.output import emit

    app = _app()
    path = app.flags.get("config") or default_config_path()
    emit(f"{path}\n")


@click.command()
@click.argument("categories", nargs=-1)
def probe(categories):
    """Validate every contextual read against this gateway: which variant works,
    documented or undocumented, or not served / not entitled."""
    from ibgw.probe import run_probe

    app = _app()
    known = {r.category for r in app.reads}
    bad = [c for c in categories if c not in known]
    if bad:
        from ibgw.errors import UsageError

        raise UsageError(f"unknown category {bad[0]!r}; installed: {', '.join(sorted(known))}")
    from ibgw.output import clean_text, emit

    status, rows = run_probe(app, categories)
    if app.output == "table":
        # the build string is gateway text: redacted by emit, controls removed here
        emit(
            clean_text(
                f"session: {status['state']} ({status['reason']})"
                + (f", {status['build']}" if status.get("build") else "")
            )
            + "\n",
            err=True,
        )
    _emit(rows, PROBE_COLUMNS)


@click.command()
@click.pass_context
def doctor(ctx):
    """One report: configuration, session state, plugins, and the last probe table."""
    from ibgw.errors import STATE_EXIT
    from ibgw.output import emit, render
    from ibgw.probe import last_probe
    from ibgw.status import check_status

    app = _app()
    fmt = app.output
    cfg = _config_rows(app)
    st = check_status(app, actor="doctor").as_dict()
    plugin_rows = [
        {"name": i.name, "version": i.version, "error": i.error}
        for i in sorted(app.pm.infos.values(), key=lambda i: i.name)
        if not i.builtin
    ]
    probe_entry = last_probe(app)
    probe_rows = list((probe_entry or {}).get("reads", {}).values())
    if fmt == "json":
        import json

        from ibgw import redact

        report = {
            "config": cfg,
            "session": st,
            "plugins": plugin_rows,
            "probe": {"build": (probe_entry or {}).get("build"), "reads": probe_rows},
        }
        emit(json.dumps(redact.safe_data(report), indent=2) + "\n")
    else:
        emit("== configuration\n" + render(cfg, ("field", "value", "source"), "table"))
        emit(
            "\n== session\n"
            + render([st], ("state", "reason", "message", "hint", "build"), "table", single=True)
        )
        emit("\n== plugins\n" + render(plugin_rows, ("name", "version", "error"), "table"))
        emit(
            "\n== probe\n"
            + (
                render(probe_rows, PROBE_COLUMNS, "table")
                if probe_rows
                else "(no probe yet: run 'ibgw probe')\n"
            )
        )
    ctx.exit(STATE_EXIT[st["state"]])


@click.command()
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio: the client starts ibgw; http: serve MCP Streamable HTTP on a loopback address.",
)
@click.option(
    "--host",
    default=None,
    metavar="HOST",
    help="HTTP only: 127.0.0.1, localhost or ::1 (loopback only) [default: 127.0.0.1].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="N",
    help="HTTP only: port to listen on; 0 picks a free one (printed) [default: 8931].",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    metavar="ORIGIN",
    help="HTTP only: also accept requests carrying this Origin (e.g. http://localhost:3000).",
)
def mcp(transport, host, port, allow_origins):
    """Serve every read as a read-only MCP tool, over stdio or loopback HTTP
    (needs: pip install "ibgw[mcp]").

    Over HTTP every request needs 'Authorization: Bearer <token>': the token is
    IBGW_MCP_TOKEN, or one generated on first start into the state directory and
    printed once.
    """
    from ibgw.errors import ConfigError, UsageError

    if transport == "stdio" and (host is not None or port is not None or allow_origins):
        raise UsageError(
            "mcp: --host, --port and --allow-origin apply to --transport http",
            reason="invalid-parameter",
        )
    try:
        from ibgw.mcp_server import DEFAULT_PORT, serve, serve_http
    except ImportError:
        raise ConfigError(
            'mcp: the MCP SDK is not installed (pip install "ibgw[mcp]")', reason="mcp-missing"
        ) from None
    if transport == "http":
        serve_http(
            _app(),
            "127.0.0.1" if host is None else host,
            DEFAULT_PORT if port is None else port,
            allow_origins,
        )
    else:
        serve(_app())


@hookimpl
def ibgw_register_commands(cli):
    for command in (plugins, config, probe, doctor, mcp):
        cli.add_command(command)
