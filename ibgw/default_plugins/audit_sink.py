"""The default audit sink (hash-chained JSONL segments in the state dir) and ``ibgw audit``.

``ibgw audit verify [--since TIME]`` checks the chain through every kept segment (exit 0,
or exit 7 naming the segment and line of the first break), ``ibgw audit tail [-n N]
[--follow]`` and ``ibgw audit show [--since TIME] [--command NAME]`` read the records back,
``ibgw audit acknowledge`` accepts (and records) a log end the writer refuses, ``ibgw audit
path`` prints where the live log is. Heavy imports happen inside the functions.
"""

import click

from ibgw.hookspecs import hookimpl


@hookimpl(trylast=True)
def ibgw_audit_sinks(config, register):
    from ibgw.audit import DEFAULT_KEEP, DEFAULT_MAX_BYTES, JsonlSink

    register(
        JsonlSink(
            config.state_dir,
            max_bytes=getattr(config, "audit_max_bytes", DEFAULT_MAX_BYTES),
            keep=getattr(config, "audit_keep", DEFAULT_KEEP),
        )
    )


# -- the commands' logic, callable without click ---------------------------------------


def verify_text(state_dir: str, fmt: str = "table", since: str | None = None) -> str:
    """The report of ``audit verify`` when the log is intact; raises
    ``AuditUnavailable`` naming the segment and line of the first break otherwise."""
    import json

    from ibgw.audit import verify
    from ibgw.errors import AuditUnavailable

    report = verify(state_dir, since=since)
    if not report.ok:
        where = report.segment or "the log"
        if report.first_bad_line:
            where = f"{where} line {report.first_bad_line}"
        raise AuditUnavailable(
            f"audit log check failed at {where}: {report.problem}",
            reason="audit-chain-broken",
            hint="The audit log was edited, truncated or damaged; keep a copy for review.",
        )
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2) + "\n"
    text = f"ok: {report.records} records in {report.segments} segment(s), chain intact"
    if report.pruned:
        text += f"; {report.pruned} older segment(s) pruned by the keep rule"
    if report.recovered_lines:
        lines = ", ".join(str(n) for n in report.recovered_lines)
        text += f" (torn line(s) {lines} from an interrupted write, recovered)"
    if report.acknowledged:
        text += "; acknowledged: " + "; ".join(report.acknowledged)
    if since is not None:
        text += f"\nchecked from {report.checked_from or 'the live segment'} on (--since "
        text += f"{since}); earlier segments and the link to them were not checked"
    return text + "\n"


def acknowledge_text(state_dir: str, max_bytes=None, keep=None, fmt: str = "table") -> str:
    import json

    from ibgw.audit import DEFAULT_KEEP, DEFAULT_MAX_BYTES, JsonlSink

    sink = JsonlSink(state_dir, max_bytes=max_bytes or DEFAULT_MAX_BYTES, keep=keep or DEFAULT_KEEP)
    try:
        rec = sink.acknowledge()
    finally:
        sink.close()
    if fmt == "json":
        return json.dumps({"acknowledged": rec}, indent=2) + "\n"
    if rec is None:
        return "nothing to acknowledge: the audit log's end matches its checkpoint and seal\n"
    return (
        f"acknowledged ({rec['acknowledged']}): recorded as seq {rec['seq']}; "
        "new records chain on from here\n"
    )


TAIL_COLUMNS = (
    "seq",
    "ts",
    "kind",
    "actor",
    "command",
    "outcome",
    "state",
    "reason",
    "rows",
    "duration_ms",
    "call_id",
)


def rows_text(records: list[dict], fmt: str = "table") -> str:
    """Audit records as ``-o json`` (the records themselves), csv or a table."""
    if fmt == "json":
        import json

        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    rows = []
    for rec in records:
        row = {c: rec.get(c) for c in TAIL_COLUMNS}
        detail = rec.get("params")
        if rec.get("kind") == "denied":
            detail = f"{rec.get('method', '')} {rec.get('path_template', '')}".strip()
        elif rec.get("kind") == "pruned":
            detail = f"{rec.get('segment')} (last seq {rec.get('last_seq')})"
        elif rec.get("kind") == "acknowledged":
            detail = rec.get("acknowledged")
        row["details"] = detail
        rows.append(row)
    if fmt == "csv":
        from ibgw.output import render

        return render(rows, columns=(*TAIL_COLUMNS, "details"), fmt="csv")
    if not rows:
        return "(no audit records)\n"
    import json

    from tabulate import tabulate

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, dict | list):
            return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        return v

    cols = (*TAIL_COLUMNS, "details")
    table = [[cell(r.get(c)) for c in cols] for r in rows]
    return tabulate(table, headers=cols, tablefmt="simple", disable_numparse=True) + "\n"


def tail_text(state_dir: str, n: int = 10, fmt: str = "table") -> str:
    from ibgw.audit import tail

    return rows_text(tail(state_dir, n), fmt)


def show_text(state_dir: str, since=None, command=None, fmt: str = "table") -> str:
    from ibgw.audit import records

    return rows_text(records(state_dir, since=since, command=command or None), fmt)


def follow_line(rec: dict, fmt: str) -> str:
    """One record as one line, for ``tail --follow``: JSON Lines with ``-o json``."""
    import json

    if fmt == "json":
        return json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"
    if fmt == "csv":
        return rows_text([rec], "csv").split("\n", 1)[1]
    cells = [rec.get(c) for c in TAIL_COLUMNS if c != "call_id"]
    return "  ".join("" if v is None else str(v) for v in cells) + "\n"


def path_text(state_dir: str) -> str:
    import os

    from ibgw import redact
    from ibgw.audit import LOG_NAME

    return redact.safe_text(os.path.join(os.path.abspath(state_dir), LOG_NAME)) + "\n"


# -- click ---------------------------------------------------------------------------


def _context():
    from ibgw.app import current_app

    app = current_app()
    fmt = getattr(app, "output", None) or app.config.output
    return app.config.state_dir, fmt


def _emit(text: str) -> None:
    from ibgw.output import emit

    emit(text)


def _since(ctx, param, value):
    if value is None:
        return None
    from ibgw.audit import parse_since

    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_SINCE = click.option(
    "--since",
    callback=_since,
    metavar="TIME",
    help="From this time on: an ISO date or date-time (UTC), or an age like 30m, 2h, 7d.",
)


@click.group("audit")
def audit_group():
    """Check and read the local audit log of every gateway call."""


@audit_group.command("verify")
@_SINCE
def verify_cmd(since):
    """Check every record's hash and the chain through every kept segment; exit 7 if
    the log was changed. With --since, only the segments from that time on."""
    state_dir, fmt = _context()
    _emit(verify_text(state_dir, fmt, since))


@audit_group.command("tail")
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=1, max=100000),
    default=10,
    show_default=True,
    help="How many records.",
)
@click.option("--follow", "-f", is_flag=True, help="Then print new records as they are written.")
def tail_cmd(count, follow):
    """Show the last audit records (and, with --follow, new ones as they come)."""
    state_dir, fmt = _context()
    if not follow:
        _emit(tail_text(state_dir, count, fmt))
        return
    from ibgw.audit import follow as follow_records
    from ibgw.audit import tail

    for rec in tail(state_dir, count):
        _emit(follow_line(rec, fmt))
    try:
        for rec in follow_records(state_dir):
            _emit(follow_line(rec, fmt))
    except KeyboardInterrupt:
        pass


@audit_group.command("show")
@_SINCE
@click.option("--command", "command", metavar="NAME", help="Only records of this command.")
def show_cmd(since, command):
    """Show the audit records of every kept segment, filtered by time and command."""
    state_dir, fmt = _context()
    _emit(show_text(state_dir, since, command, fmt))


@audit_group.command("acknowledge")
def acknowledge_cmd():
    """Accept an audit log end that ibgw refuses to write after (deleted, truncated or
    rolled back): writes an 'acknowledged' record saying what was found, so new records
    can follow. Run 'ibgw audit verify' first and keep a copy of the files."""
    from ibgw.app import current_app

    app = current_app()
    fmt = getattr(app, "output", None) or app.config.output
    cfg = app.config
    _emit(
        acknowledge_text(
            cfg.state_dir,
            getattr(cfg, "audit_max_bytes", None),
            getattr(cfg, "audit_keep", None),
            fmt,
        )
    )


@audit_group.command("path")
def path_cmd():
    """Print where the audit log is."""
    state_dir, _fmt = _context()
    _emit(path_text(state_dir))


@hookimpl
def ibgw_register_commands(cli):
    cli.add_command(audit_group)
