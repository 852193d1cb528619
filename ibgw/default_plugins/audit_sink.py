"""The default audit sink (hash-chained JSONL in the state dir) and ``ibgw audit``.

``ibgw audit verify`` checks the chain (exit 0, or exit 7 naming the first broken line),
``ibgw audit tail [-n N]`` shows the last records, ``ibgw audit path`` prints where the
log is. Heavy imports happen inside the functions.
"""

import click

from ibgw.hookspecs import hookimpl


@hookimpl(trylast=True)
def ibgw_audit_sinks(config, register):
    from ibgw.audit import JsonlSink

    register(JsonlSink(config.state_dir))


# -- the commands' logic, callable without click ---------------------------------------


def verify_text(state_dir: str, fmt: str = "table") -> str:
    """The report of ``audit verify`` when the log is intact; raises
    ``AuditUnavailable`` naming the first broken line otherwise."""
    import json

    from ibgw.audit import verify
    from ibgw.errors import AuditUnavailable

    report = verify(state_dir)
    if not report.ok:
        where = f"line {report.first_bad_line}" if report.first_bad_line else "the log"
        raise AuditUnavailable(
            f"audit log check failed at {where}: {report.problem}",
            reason="audit-chain-broken",
            hint="The audit log was edited, truncated or damaged; keep a copy for review.",
        )
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2) + "\n"
    text = f"ok: {report.records} records, chain intact"
    if report.recovered_lines:
        lines = ", ".join(str(n) for n in report.recovered_lines)
        text += f" (torn line(s) {lines} from an interrupted write, recovered)"
    return text + "\n"


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


def tail_text(state_dir: str, n: int = 10, fmt: str = "table") -> str:
    from ibgw.audit import tail

    records = tail(state_dir, n)
    if fmt == "json":
        import json

        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    rows = []
    for rec in records:
        row = {c: rec.get(c) for c in TAIL_COLUMNS}
        detail = rec.get("params")
        if rec.get("kind") == "denied":
            detail = f"{rec.get('method', '')} {rec.get('path_template', '')}".strip()
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


@click.group("audit")
def audit_group():
    """Check and read the local audit log of every gateway call."""


@audit_group.command("verify")
def verify_cmd():
    """Check every record's hash and the chain; exit 7 if the log was changed."""
    state_dir, fmt = _context()
    _emit(verify_text(state_dir, fmt))


@audit_group.command("tail")
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=1, max=100000),
    default=10,
    show_default=True,
    help="How many records.",
)
def tail_cmd(count):
    """Show the last audit records."""
    state_dir, fmt = _context()
    _emit(tail_text(state_dir, count, fmt))


@audit_group.command("path")
def path_cmd():
    """Print where the audit log is."""
    state_dir, _fmt = _context()
    _emit(path_text(state_dir))


@hookimpl
def ibgw_register_commands(cli):
    cli.add_command(audit_group)
