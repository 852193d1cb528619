"""The ``ibgw`` command line, built by :func:`create_cli` from the plugin manager.

Imports nothing heavy at module top: ``ibgw --help`` stays fast. Every read
becomes ``ibgw <category> <read>``; a category's default read also answers
``ibgw <category> ARGS``.
"""

from __future__ import annotations

import gc
import os
import sys

import click

from .errors import EXIT_INTERNAL, IbgwError

EPILOG = """Exit codes: 0 ok, 1 internal error, 2 usage or configuration, 3 manual_action_required,
4 unavailable, 5 not served or not entitled, 6 refused by the read-only policy, 7 audit unavailable."""


def _handle(ctx: click.Context, exc: BaseException) -> int:
    from .app import App
    from .output import emit, emit_error, json_error

    app = ctx.find_object(App)
    fmt = app.output if app is not None else "table"
    if isinstance(exc, IbgwError):
        emit_error(exc, fmt)
        return exc.exit_code
    debug = bool(app and app.flags.get("debug"))
    if fmt == "json":
        emit(
            json_error(
                {
                    "state": None,
                    "reason": "internal-error",
                    "message": f"internal error ({type(exc).__name__})",
                    "hint": "Run with --debug for details.",
                }
            ),
            err=True,
        )
    else:
        emit(
            f"ibgw: internal error ({type(exc).__name__}); run with --debug for details\n", err=True
        )
    if debug:
        import traceback

        emit(
            "".join(
                # chain=False: never the chained exceptions of the HTTP stack, whose
                # text can hold URLs and headers; frames show code, not locals
                traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False)
            ),
            err=True,
        )
    return EXIT_INTERNAL


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing shutil (which pulls in
    bz2, lzma and zlib): ``$COLUMNS``, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class IbgwContext(click.Context):
    """click's context, whose help formatter learns the terminal width as click does
    (``FORCED_WIDTH``, else the terminal's columns, within ``max_content_width``)
    but without the import of shutil that costs ``ibgw --help`` a few ms."""

    def make_formatter(self) -> click.HelpFormatter:
        width = self.terminal_width
        if width is None:
            from click import formatting

            width = formatting.FORCED_WIDTH
            if width is None:
                width = max(min(_terminal_columns(), self.max_content_width or 80) - 2, 50)
        return self.formatter_class(width=width, max_width=self.max_content_width)


class IbgwGroup(click.Group):
    """A group that refuses duplicate command names and turns errors into exit codes."""

    context_class = IbgwContext

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owners: dict[str, str] = {}
        self.current_owner = "ibgw"
        self.conflicts: list[str] = []

    def add_command(self, cmd, name=None):
        name = name or cmd.name
        if name in self.commands:
            message = (
                f"command '{name}' is registered by both {self.owners.get(name, '?')} and "
                f"{self.current_owner}; the second was not added"
            )
            self.conflicts.append(message)
            return
        self.owners[name] = self.current_owner
        super().add_command(cmd, name)

    def parse_args(self, ctx, args):
        """Accept ``-o FORMAT`` anywhere (``ibgw plugins -o json``) as the global option."""
        rest, fmt, i = [], None, 0
        while i < len(args):
            a = args[i]
            if a == "--":
                rest += args[i:]
                break
            if a in ("-o", "--output") and i + 1 < len(args):
                fmt, i = args[i + 1], i + 2
                continue
            if a.startswith("--output="):
                fmt = a.split("=", 1)[1]
            elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
                fmt = a[2:]
            else:
                rest.append(a)
            i += 1
        if fmt is not None:
            rest = ["--output", fmt, *rest]
        return super().parse_args(ctx, rest)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Like click's, but usage errors are one line (a JSON error object with
        ``-o json``) and exit 2."""
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            _usage_error(exc, argv)
            rv = exc.exit_code
        except click.Abort:
            from .output import emit

            emit("ibgw: aborted\n", err=True)
            rv = 1
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            ctx.exit(130)
        except BrokenPipeError:  # stdout closed by its reader: stop quietly (see emit)
            from .output import _silence_stdout

            _silence_stdout()
            ctx.exit(0)
        except Exception as exc:
            ctx.exit(_handle(ctx, exc))


def _usage_error(exc: click.ClickException, argv: list[str]) -> None:
    from .output import clean_text, emit, json_error

    message = clean_text(exc.format_message()).strip()
    ctx = getattr(exc, "ctx", None)
    hint = f"see '{ctx.command_path} --help'" if ctx is not None else "see 'ibgw --help'"
    wants_json = (
        any(a in ("-o", "--output") and b == "json" for a, b in zip(argv, argv[1:], strict=False))
        or "--output=json" in argv
        or "-ojson" in argv
    )
    if wants_json:
        emit(
            json_error({"state": None, "reason": "usage", "message": message, "hint": hint}),
            err=True,
        )
    else:
        emit(f"ibgw: {message} ({hint})\n", err=True)


class CategoryGroup(click.Group):
    """A category of reads; ``default_read`` answers when the first argument is not
    one of the category's commands (``ibgw news AAPL``).

    A read's click command is built when it is first looked up (to run it or show its
    help), not when the CLI is built: ``ibgw --help`` needs only the category."""

    context_class = IbgwContext

    def __init__(self, *args, default_read: str | None = None, reads=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.default_read = default_read
        self.lazy_reads = {read.name: read for read in reads}

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in self.lazy_reads:
            self.add_command(read_command(self.lazy_reads[cmd_name]))
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        return sorted({*self.commands, *self.lazy_reads})

    def parse_args(self, ctx, args):
        if self.default_read and (
            not args
            or (
                args[0] not in self.commands
                and args[0] not in self.lazy_reads
                and args[0] not in ctx.help_option_names
            )
        ):
            args = [self.default_read, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx, formatter):
        if self.default_read:
            formatter.write_usage(
                ctx.command_path, f"[{self.default_read.upper()} ARGS] | COMMAND [ARGS]..."
            )
        else:
            super().format_usage(ctx, formatter)


class _AnyCaseChoice(click.Choice):
    """A read's choices in any case on the command line (``--sec-type ind``); the read
    gets the declared spelling, and help and errors show it."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value not in self.choices:
            folded = value.casefold()
            value = next((c for c in self.choices if str(c).casefold() == folded), value)
        return super().convert(value, param, ctx)


def read_command(read) -> click.Command:
    """Build the click command for a ``Read``; parameters are validated by the
    runner so CLI and MCP check input identically."""
    params: list[click.Parameter] = []
    for p in read.params:
        if p.argument:
            params.append(
                click.Argument(
                    [p.name],
                    required=p.required and not p.multiple,
                    nargs=-1 if p.multiple else 1,
                    metavar=p.metavar or p.name.upper(),
                )
            )
        elif p.type == "bool":
            params.append(
                click.Option(
                    [f"{p.option_name}/--no-{p.option_name[2:]}", p.name], default=None, help=p.help
                )
            )
        else:
            kind = _AnyCaseChoice(list(p.choices)) if p.type == "choice" else None
            params.append(
                click.Option(
                    [p.option_name, p.name],
                    type=kind,
                    multiple=p.multiple,
                    default=None,
                    metavar=p.metavar,
                    help=p.help
                    + (" (required)" if p.required else "")
                    + (f" [default: {p.default}]" if p.default not in (None, (), []) else ""),
                )
            )

    def callback(**values):
        from .app import current_app
        from .output import clean_text, emit, render
        from .runner import run_read

        app = current_app()
        values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
        outcome = run_read(app, read, values, actor="cli")
        fmt = app.output
        records = outcome.records
        if outcome.varied and fmt == "json":
            # which endpoint variant answered, and whether IBKR documents it
            records = [
                dict(r, provenance=outcome.provenance, endpoint=outcome.variant) for r in records
            ]
        emit(render(records, read.columns, fmt, single=read.single))
        notes = list(outcome.notes)
        if outcome.provenance == "undocumented" and fmt == "table":
            notes.append(f"served by an undocumented endpoint ({outcome.variant})")
        for note in notes:
            emit(f"note: {clean_text(note)}\n", err=True)

    command = click.Command(
        read.name, params=params, callback=callback, help=read.help, short_help=read.summary
    )
    command.context_class = IbgwContext
    return command


def _global_options(f):
    options = [
        click.option(
            "--backend",
            type=click.Choice(["live", "fake"]),
            default=None,
            help="live gateway (default) or the offline fake backend.",
        ),
        click.option("--scenario", default=None, metavar="NAME", help="Fake backend scenario."),
        click.option(
            "--gateway-url",
            default=None,
            metavar="URL",
            help="Gateway API root [default: https://localhost:5000/v1/api].",
        ),
        click.option(
            "--verify-tls/--no-verify-tls",
            "verify_tls",
            default=None,
            help="Verify the gateway's TLS certificate (off only for exact local hosts).",
        ),
        click.option(
            "--ca-bundle",
            default=None,
            metavar="PEM",
            help="CA bundle that signs the gateway's certificate.",
        ),
        click.option(
            "--tls-fingerprint",
            default=None,
            metavar="SHA256",
            help="Pinned SHA-256 certificate fingerprint.",
        ),
        click.option(
            "--config", "config", default=None, metavar="PATH", help="Configuration file (TOML)."
        ),
        click.option(
            "-o",
            "--output",
            type=click.Choice(["table", "json", "csv"]),
            default=None,
            help="Output format [default: table].",
        ),
        click.option(
            "--timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Deadline per gateway call.",
        ),
        click.option(
            "--account", default=None, metavar="ID", help="Account to use (default: the first)."
        ),
        click.option("--latency-ms", type=int, default=None, hidden=True),
        click.option("--debug", is_flag=True, default=None, help="Redacted diagnostics on stderr."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def create_cli(pm=None) -> click.Group:
    """A fresh ``ibgw`` click group built from ``pm`` (a new plugin manager with
    entry points loaded when ``None``). Duplicate command names are refused and
    reported, never silently replaced."""
    from .plugins import collect_reads, get_plugin_manager

    if pm is None:
        pm = get_plugin_manager()
    reads = collect_reads(pm)

    @click.group(
        cls=IbgwGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]}
    )
    @_global_options
    @click.version_option(package_name="ibgw", prog_name="ibgw")
    @click.pass_context
    def cli(ctx, **flags):
        """ibgw: read-only access to the IBKR Client Portal Gateway.

        Reports whether the broker session is usable, keeps it alive, and answers
        contextual reads. It never places, changes or cancels anything.
        """
        from .app import App

        app = App(pm, {k: v for k, v in flags.items() if v is not None}, reads=reads)
        ctx.obj = app
        ctx.call_on_close(app.close)
        from . import redact

        redact.load_plugin_rules(pm)
        from .logs import install_logging
        from .output import DEFERRED_WARNINGS, warn

        DEFERRED_WARNINGS.clear()
        install_logging(bool(flags.get("debug")), defer=app.output == "json")
        for conflict in cli.conflicts + reads.errors:
            warn(conflict, app.output)

    for impl in pm.hook.ibgw_register_commands.get_hookimpls():
        cli.current_owner = impl.plugin_name
        try:
            impl.function(cli=cli)
        except Exception as exc:
            info = pm.infos.get(impl.plugin_name)
            if info is not None:
                info.error = f"registering commands failed: {type(exc).__name__}"
    for category, items in sorted(reads.categories().items()):
        cli.current_owner = reads.owner[items[0].key]
        defaults = [r.name for r in items if r.default]
        summary = reads.summary(category)  # the owner's Category, else a read's summary
        group = CategoryGroup(
            category,
            default_read=defaults[0] if defaults else None,
            reads=items,
            help=summary,
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        cli.add_command(group)
    cli.current_owner = "ibgw"
    cli.reads = reads
    return cli


def main(argv=None) -> None:
    # Building the CLI allocates objects that live as long as the process (modules,
    # plugins, declarations, click commands): a garbage collection while they are
    # built frees nothing, and once frozen no later collection walks them again,
    # including the full one at interpreter exit. ~15 ms of 'ibgw --help'.
    collecting = gc.isenabled()
    gc.disable()
    try:
        cli = create_cli()
    except Exception as exc:  # plugin loading itself failed: still one line
        from .output import emit

        emit(f"ibgw: error: could not start ({type(exc).__name__})\n", err=True)
        sys.exit(EXIT_INTERNAL)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    cli.main(args=argv, prog_name="ibgw")
